"""The status feed's backlog: a reader that does not read costs a bounded buffer, and is
told what it missed."""

from __future__ import annotations

from typing import Any

from twisted.internet import task

from cccp.devices import VirtualCamera, VirtualTapeDeck
from cccp.events import EventHub, EventsSource
from cccp.wire.commands import parse_number
from cccp.wire.events import Backlog


class Slow:
    def __init__(self) -> None:
        self.data = b""
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.data += data


def test_the_backlog_keeps_the_newest_lines_and_counts_the_rest():
    b = Backlog(3)
    for i in range(10):
        b.push(f"L{i}")
    assert len(b) == 3 and b.lost == 7
    assert b.take() == ["LOST 7", "L7", "L8", "L9"]
    assert b.take() == []


def test_a_paused_reader_gets_a_bounded_backlog_and_the_lines_it_missed_counted():
    clock = task.Clock()
    hub = EventHub(clock, interval=1.0)
    deck, camera = VirtualTapeDeck(100, clock=clock), VirtualCamera()
    reader = EventsSource(hub, deck, camera, limit=50)
    sink = Slow()
    reader.startProducing(sink)
    first = sink.data.decode().splitlines()
    assert first[0] == "TSTA PAUS 0 0" and len(first) == 1 + len(camera.controls())
    reader.pauseProducing()                          # the data connection is full
    for _ in range(250):
        camera.control("ZOOM", parse_number("+"))
        camera.control("ZOOM", parse_number("-"))
    camera.control("IRIS", parse_number("0"))
    camera.control("IRIS", parse_number("0"))          # no change: no line
    deck.play()
    for _ in range(3):
        clock.advance(1.0)                           # positions while the tape moves
    assert len(reader.backlog) == 50
    sink.data = b""
    reader.resumeProducing()
    lines = sink.data.decode().splitlines()
    assert lines[0] == f"LOST {500 + 1 + 1 + 3 - 50}"
    assert lines[-1] == "TSTA PLAY 3 1" and lines[-4] == "TSTA PLAY 0 1"
    reader.stopProducing()
    assert reader not in hub.readers
    camera.control("ZOOM", parse_number("-"))        # no one listens: nothing is kept
    assert len(reader.backlog) == 0
