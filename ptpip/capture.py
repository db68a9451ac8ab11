"""Moved to :mod:`ptpip.devices.capture`; the old name is the same module, for existing imports."""

import sys

from .devices import capture

sys.modules[__name__] = capture
