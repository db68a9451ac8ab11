"""Moved to :mod:`ptpip.wire.datasets`; this name stays for existing imports."""

from .wire.datasets import *  # noqa: F403
from .wire.datasets import __all__  # noqa: F401
