"""Moved to :mod:`ptpip.devices.policy`; the old name is the same module, for existing imports."""

import sys

from .devices import policy

sys.modules[__name__] = policy
