"""Moved to :mod:`cccp.wire.commands`; the old name is the same module, for existing imports."""

import sys

from .wire import commands

sys.modules[__name__] = commands
