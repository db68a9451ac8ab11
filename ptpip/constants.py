"""Moved to :mod:`ptpip.wire.constants`; this name stays for existing imports."""

from .wire.constants import *  # noqa: F403
from .wire.constants import __all__  # noqa: F401
