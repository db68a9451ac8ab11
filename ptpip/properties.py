"""Moved to :mod:`ptpip.devices.properties`; the old name is the same module, for existing imports."""

import sys

from .devices import properties

sys.modules[__name__] = properties
