"""Moved to :mod:`ptpip.devices.filestore`; the old name is the same module, for existing imports."""

import sys

from .devices import filestore

sys.modules[__name__] = filestore
