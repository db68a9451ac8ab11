"""Moved to :mod:`ptpip.wire.errors`; this name stays for existing imports."""

from .wire.errors import *  # noqa: F403
from .wire.errors import __all__  # noqa: F401
