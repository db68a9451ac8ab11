"""Moved to :mod:`ptpip.wire.packets`; this name stays for existing imports."""

from .wire.framing import decode_packet  # noqa: F401 (it lived here before)
from .wire.packets import *  # noqa: F403
from .wire.packets import __all__  # noqa: F401
