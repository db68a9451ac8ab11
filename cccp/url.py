"""Moved to :mod:`cccp.wire.url`; the old name is the same module, for existing imports."""

import sys

from .wire import url

sys.modules[__name__] = url
