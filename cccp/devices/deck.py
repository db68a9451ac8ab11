"""A virtual tape deck behind :class:`~cccp.interfaces.ITapeDeck` whose position
moves in real time."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from zope.interface import implementer

from ..interfaces import ITapeDeck
from ..wire.errors import SyntaxErrorInArguments


@implementer(ITapeDeck)
class VirtualTapeDeck:
    """A tape of *length* seconds whose position moves in real time.

    While playing, recording or fast-forwarding, the position advances at the
    requested speed and stops at the requested stop position or at either end.

    :param clock: an ``IReactorTime`` (``task.Clock`` in tests).
    """

    def __init__(self, length: float = 3600.0, clock: Any = None, max_play_speed: float = 8,
                 max_ff_speed: float = 64, position: float = 0.0) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.length = Decimal(str(length))
        self.max_play_speed = Decimal(str(max_play_speed))
        self.max_ff_speed = Decimal(str(max_ff_speed))
        self._op = "PAUS"
        self._pos = max(Decimal(0), min(self.length, Decimal(str(position))))
        self._t0 = self._now()
        self._speed = Decimal(0)
        self._stop: Decimal | None = None
        self.listeners: list[Callable[[str, Decimal], Any]] = []

    def _now(self) -> Decimal:
        return Decimal(str(self.clock.seconds()))

    def _limit(self) -> Decimal:
        if self._speed > 0:
            return min(self._stop, self.length) if self._stop is not None else self.length
        return max(self._stop, Decimal(0)) if self._stop is not None else Decimal(0)

    def _settle(self) -> None:
        if self._op == "PAUS":
            return
        now = self._now()
        pos = self._pos + self._speed * (now - self._t0)
        limit = self._limit()
        if (self._speed > 0 and pos >= limit) or (self._speed < 0 and pos <= limit):
            self._pos, self._op, self._speed, self._stop = limit, "PAUS", Decimal(0), None
            self._notify()
        else:
            self._pos = pos
        self._t0 = now

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener(self._op, self._pos)

    def commands(self) -> dict[str, tuple[Decimal, Decimal] | None]:
        return {"PLAY": (Decimal(0), self.length), "PAUS": None, "RECO": (Decimal(0), self.length),
                "FF": (Decimal(0), self.length)}

    def state(self) -> tuple[str, Decimal]:
        self._settle()
        return self._op, self._pos.quantize(Decimal("0.001"))

    def position(self) -> Decimal:
        return self.state()[1]

    def motion_at(self, seconds: float) -> tuple[str, float, float]:
        """``(operation, position, speed)`` at clock time *seconds* (now or later), as the
        deck will be if no command comes first: what a player sends ahead of time."""
        self._settle()
        if self._op == "PAUS":
            return "PAUS", float(self._pos), 0.0
        pos = self._pos + self._speed * (Decimal(str(seconds)) - self._t0)
        limit = self._limit()
        if (self._speed > 0 and pos >= limit) or (self._speed < 0 and pos <= limit):
            return "PAUS", float(limit), 0.0
        return self._op, float(pos), float(self._speed)

    def _move(self, op: str, stop: Decimal | None, speed: Decimal | None, default: Decimal,
              limit: Decimal) -> Decimal | None:
        """Start *op*; the speed used (clamped to ±*limit*), or None if it ended at once."""
        self._settle()
        speed = default if speed is None else speed
        if speed == 0:
            raise SyntaxErrorInArguments(f"{op} speed 0 does not move: use PAUS")
        speed = max(-limit, min(limit, speed))
        if stop is not None:
            stop = max(Decimal(0), min(self.length, stop))
            # A stop position already behind us (in the direction of travel): the command ends at once.
            if (speed > 0 and stop <= self._pos) or (speed < 0 and stop >= self._pos):
                self._op, self._speed, self._stop = "PAUS", Decimal(0), None
                self._notify()
                return None
        self._op, self._speed, self._stop, self._t0 = op, speed, stop, self._now()
        self._notify()
        self._settle()
        return speed

    def play(self, stop: Decimal | None = None, speed: Decimal | None = None) -> Decimal | None:
        return self._move("PLAY", stop, speed, Decimal(1), self.max_play_speed)

    def record(self, stop: Decimal | None = None, speed: Decimal | None = None) -> Decimal | None:
        return self._move("RECO", stop, speed, Decimal(1), self.max_play_speed)

    def fastForward(self, stop: Decimal | None = None, speed: Decimal | None = None) -> Decimal | None:
        return self._move("FF", stop, speed, Decimal(5), self.max_ff_speed)

    def pause(self) -> None:
        self._settle()
        if self._op != "PAUS":
            self._op, self._speed, self._stop = "PAUS", Decimal(0), None
            self._notify()
