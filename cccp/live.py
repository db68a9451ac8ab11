"""Moved to :mod:`cccp.devices.live`; the old name is the same module, for existing imports."""

import sys

from .devices import live

sys.modules[__name__] = live
