"""Moved to :mod:`cccp.wire.media`; the old name is the same module, for existing imports."""

import sys

from .wire import media

sys.modules[__name__] = media
