"""Moved to :mod:`cccp.wire.errors`; the old name is the same module, for existing imports."""

import sys

from .wire import errors

sys.modules[__name__] = errors
