"""The status feed's lines, pure: one line per change of the tape, the camera or a
transfer, as ``RETR /events`` sends them (draft section 1 allows dummy file names), and
the bounded backlog a slow reader gets.

Lines read like the status replies they stand for::

    TSTA PLAY 12.345 1            the tape: operation, position, speed
    CSTA ZOOM 1,4.5,20            a camera control: minimum, current, maximum
    XFER RETR /clip.ts started
    XFER RETR /clip.ts ended 457592 bytes 4.01 s 114.1 kB/s 226
    LOST 12                       lines a reader too slow to keep up did not get
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from .commands import format_number


def tape_line(op: str, position: Decimal | float, speed: Decimal | float) -> str:
    return f"TSTA {op} {format_number(Decimal(str(position)))} {format_number(Decimal(str(speed)))}"


def camera_line(name: str, minimum: Decimal, current: Decimal, maximum: Decimal) -> str:
    return f"CSTA {name} {format_number(minimum)},{format_number(current)},{format_number(maximum)}"


def transfer_started(verb: str, path: str) -> str:
    return f"XFER {verb} {path} started"


def transfer_ended(verb: str, path: str, size: int, seconds: float, code: int | None) -> str:
    rate = size / seconds / 1000 if seconds > 0 else 0.0
    return (f"XFER {verb} {path} ended {size} bytes {seconds:.2f} s {rate:.1f} kB/s "
            f"{code if code is not None else 'aborted'}")


class Backlog:
    """Lines waiting for a reader, *limit* at most: beyond it the oldest are dropped and
    counted, and the reader is told how many with a ``LOST n`` line before the rest."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._lines: deque[str] = deque()
        self.lost = 0
        self._untold = 0

    def __len__(self) -> int:
        return len(self._lines)

    def push(self, line: str) -> None:
        self._lines.append(line)
        while len(self._lines) > self.limit:
            self._lines.popleft()
            self.lost += 1
            self._untold += 1

    def take(self) -> list[str]:
        """Everything waiting, oldest first (a LOST line first when some were dropped)."""
        out = [f"LOST {self._untold}"] if self._untold else []
        self._untold = 0
        out.extend(self._lines)
        self._lines.clear()
        return out
