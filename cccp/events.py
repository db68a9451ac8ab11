"""The status feed: ``RETR /events`` streams one line per change, so that nobody has to
poll TSTA, CSTA and STAT.

An :class:`EventHub` (one per server, :attr:`~cccp.server.CCCPFactory.events`) listens to
the tape decks and cameras of the sessions that watch, and hears the transfers of every
session; each ``RETR /events`` is an :class:`EventsSource` that gets every line from
then on, after a snapshot of the tape and the camera. While a tape moves, its position
is sent every :attr:`EventHub.interval` seconds. A reader that does not keep up gets a
bounded backlog (``LOST n`` says how many lines it missed), never an unbounded buffer.
Line formats: :mod:`cccp.wire.events`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import IMediaSource
from .wire.events import Backlog, camera_line, tape_line

EVENTS_PATH = "/events"


def _tape_now(deck: Any) -> tuple[str, Decimal, Decimal]:
    """(operation, position, speed) of a deck now."""
    op, pos = deck.state()
    motion = getattr(deck, "motion_at", None)
    if motion is not None:
        _, _, speed = motion(deck.clock.seconds())
        return op, pos, Decimal(str(speed))
    return op, pos, Decimal(0 if op == "PAUS" else 1)


class EventHub:
    """Who listens, and what the devices and transfers say."""

    log = Logger()

    def __init__(self, reactor: Any, interval: float = 1.0) -> None:
        self.reactor = reactor
        self.interval = interval
        self.readers: set[EventsSource] = set()
        self._decks: dict[int, Any] = {}
        self._cameras: dict[int, Any] = {}
        self._moving: dict[int, task.LoopingCall] = {}
        self._last: dict[tuple[int, str], str] = {}
        self.published = 0

    def publish(self, line: str) -> None:
        self.published += 1
        for reader in list(self.readers):
            reader.line(line)

    # -- devices ----------------------------------------------------------------------
    def watch(self, deck: Any = None, camera: Any = None) -> None:
        """Listen to *deck* and *camera* (once each, however often asked)."""
        if deck is not None and id(deck) not in self._decks and hasattr(deck, "listeners"):
            self._decks[id(deck)] = deck
            deck.listeners.append(lambda op, pos, deck=deck: self._tape_changed(deck))
        if camera is not None and id(camera) not in self._cameras and hasattr(camera, "listeners"):
            self._cameras[id(camera)] = camera
            for name in camera.controls():
                self._last[(id(camera), name)] = camera_line(name, *camera.status(name))
            camera.listeners.append(lambda name, value, camera=camera: self._camera_changed(camera, name))

    def _tape_changed(self, deck: Any) -> None:
        op, pos, speed = _tape_now(deck)
        self.publish(tape_line(op, pos, speed))
        self._follow(deck, op)

    def _follow(self, deck: Any, op: str) -> None:
        """While the tape moves, its position every *interval* seconds."""
        loop = self._moving.get(id(deck))
        if op == "PAUS":
            if loop is not None and loop.running:
                loop.stop()
            self._moving.pop(id(deck), None)
            return
        if loop is None:
            loop = self._moving[id(deck)] = task.LoopingCall(self._position, deck)
            loop.clock = self.reactor
            loop.start(self.interval, now=False)

    def _position(self, deck: Any) -> None:
        if not self.readers:
            return
        op, pos, speed = _tape_now(deck)       # (the deck may stop at its end here, and say so)
        if op != "PAUS":
            self.publish(tape_line(op, pos, speed))

    def _camera_changed(self, camera: Any, name: str) -> None:
        lo, cur, hi = camera.status(name)
        line = camera_line(name, lo, cur, hi)
        key = (id(camera), name)
        if self._last.get(key) != line:               # a command that changed nothing is no change
            self._last[key] = line
            self.publish(line)

    def snapshot(self, deck: Any = None, camera: Any = None) -> list[str]:
        """The state now: the tape, then each camera control in CSTA order."""
        lines = []
        if deck is not None:
            lines.append(tape_line(*_tape_now(deck)))
        if camera is not None:
            for name in camera.controls():
                lines.append(camera_line(name, *camera.status(name)))
        return lines

    def stop(self) -> None:
        for loop in self._moving.values():
            if loop.running:
                loop.stop()
        self._moving.clear()


@implementer(IMediaSource)
class EventsSource:
    """``RETR /events``: the hub's lines, CRLF-terminated, from the snapshot on, until ABOR.
    A push producer: while the data connection is paused, lines wait in a
    :class:`~cccp.wire.events.Backlog` of *limit* lines."""

    live = True
    rtp_input = False
    length = None
    #: Sent as it is, in any TYPE (text, not media).
    text = True

    def __init__(self, hub: EventHub, deck: Any = None, camera: Any = None, limit: int = 1000) -> None:
        self.hub = hub
        self.deck = deck
        self.camera = camera
        self.backlog = Backlog(limit)
        self.consumer: IConsumer | None = None
        self._paused = False
        self._done: defer.Deferred[None] = defer.Deferred()

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        self.consumer = consumer
        consumer.registerProducer(self, True)
        self.hub.watch(self.deck, self.camera)
        self.hub.readers.add(self)
        for line in self.hub.snapshot(self.deck, self.camera):
            self.line(line)
        return self._done

    def line(self, text: str) -> None:
        if self.consumer is None:
            return
        self.backlog.push(text)
        if not self._paused:
            self._flush()

    def _flush(self) -> None:
        lines = self.backlog.take()
        if lines and self.consumer is not None:
            self.consumer.write("".join(line + "\r\n" for line in lines).encode())

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._flush()

    def stopProducing(self) -> None:
        self.hub.readers.discard(self)
        self.consumer = None
        if not self._done.called:
            self._done.callback(None)
