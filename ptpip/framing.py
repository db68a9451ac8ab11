"""Moved to :mod:`ptpip.wire.framing`; this name stays for existing imports."""

from .wire.framing import *  # noqa: F403
from .wire.framing import __all__  # noqa: F401
