"""Moved to :mod:`ptpip.devices.camera`; the old name is the same module, for existing imports."""

import sys

from .devices import camera

sys.modules[__name__] = camera
