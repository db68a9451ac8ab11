"""Stopping ``cccp stream`` and ``cccp get`` as a user does: a real ``cccp`` process,
signalled with os.kill, against a server in this process on 127.0.0.1.

SIGINT (Ctrl-C) and SIGTERM stop a transfer with ABOR: the server answers 426 and
226, the client QUITs and exits 0 with one line. ``get --duration`` stops after that
long and keeps what arrived; Ctrl-C keeps what arrived of a stream of unknown size
(a recording) and removes a file of known size that did not arrive whole.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, task
from zope.interface import implementer

from cccp.interfaces import IMediaSource
from cccp.live import MediaLibrary
from cccp.stream import listen_udp

from .conftest import Server, stop_server

SLOW_SIZE = 50_000_000


def sleep(reactor: Any, s: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(s, d.callback, None)
    return d


@implementer(IMediaSource)
class Trickle:
    """A stored file of known size that arrives slowly (8 KiB every 20 ms)."""

    live = False

    def __init__(self, reactor: Any, length: int) -> None:
        self.reactor = reactor
        self.length = length
        self.sent = 0
        self.done: defer.Deferred[None] = defer.Deferred()
        self.loop: task.LoopingCall | None = None

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        self.consumer = consumer
        self.loop = task.LoopingCall(self._tick)
        self.loop.clock = self.reactor
        self.loop.start(0.02)
        return self.done

    def _tick(self) -> None:
        n = min(8192, self.length - self.sent)
        self.consumer.write(b"x" * n)
        self.sent += n
        if self.sent >= self.length:
            self.stopProducing()

    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        if not self.done.called:
            self.done.callback(None)


class Library(MediaLibrary):
    """The server's media library (the looped sample as /live/testpattern, no ffmpeg
    needed) plus /slow.bin, a file of known size that takes minutes."""

    def open(self, path: str, offset: int = 0, payload_type: int = 33) -> Any:
        if path == "/slow.bin":
            return Trickle(self.reactor, SLOW_SIZE)
        return super().open(path, offset, payload_type)


@pytest_twisted.async_yield_fixture
async def live(reactor: Any, media: Any) -> Any:
    from cccp.devices import FileMediaStore, VirtualTapeDeck
    from cccp.realm import CCCPRealm, make_portal
    from cccp.server import CCCPFactory
    deck = VirtualTapeDeck(3600, clock=reactor)
    store = Library(FileMediaStore(media[0]), reactor, deck, encoder=None)
    factory = CCCPFactory(make_portal(CCCPRealm(store, None, deck), [], True), reactor=reactor)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    s = Server(factory, port, media[0], None, deck)
    yield s
    await stop_server(s)


class CLI(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode)


def start(reactor: Any, *args: str) -> CLI:
    p = CLI()
    reactor.spawnProcess(p, sys.executable, [sys.executable, "-m", "cccp.cli", *args], env=dict(os.environ))
    return p


async def until(reactor: Any, condition: Any, what: str, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await sleep(reactor, 0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def connections_gone(reactor: Any, server: Any) -> None:
    await until(reactor, lambda: not server.factory.connections, "the control connection to close")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest_twisted.ensureDeferred
async def test_a_signal_stops_cccp_stream_with_abor_and_exit_status_0(reactor, live, sig):
    got = [0]
    ep = listen_udp(reactor, "127.0.0.1")
    ep.on_datagram = lambda data, addr: got.__setitem__(0, got[0] + len(data))
    udp = ep.port.getHost().port
    try:
        p = start(reactor, "stream", f"cccp://127.0.0.1:{live.port}/live/testpattern", "--udp", f"127.0.0.1:{udp}")
        await until(reactor, lambda: got[0] > 20 * 188 * 7, "datagrams")
        os.kill(p.transport.pid, sig)
        code = await p.ended
        out, err = p.out.decode(), p.err.decode()
        assert code == 0, err
        assert re.fullmatch(r"stopped after \d+\.\d s\n", out), out
        assert err == f"streaming /live/testpattern to udp://127.0.0.1:{udp} (Ctrl-C to stop)\n"
        await connections_gone(reactor, live)
        await sleep(reactor, 0.1)                        # (datagrams already on their way)
        stopped_at = got[0]
        await sleep(reactor, 0.3)
        assert got[0] == stopped_at                      # the server stopped sending
    finally:
        ep.close()


@pytest.mark.parametrize("udp", [False, True])
@pytest_twisted.ensureDeferred
async def test_get_duration_stops_a_live_stream_and_keeps_what_arrived(reactor, live, tmp_path, udp):
    out_file = tmp_path / "rec.ts"
    p = start(reactor, "get", f"cccp://127.0.0.1:{live.port}/live/testpattern", "-o", str(out_file),
              "--duration", "1", *(["--udp"] if udp else []))
    code = await p.ended
    out, err = p.out.decode(), p.err.decode()
    assert code == 0, err
    m = re.fullmatch(rf"/live/testpattern -> {re.escape(str(out_file))} \((\d+) bytes in \d+\.\d s, [\d.]+ MB/s\): "
                     r"stopped after (\d+\.\d) s \(--duration\)\n", out)
    assert m, out
    assert 1.0 <= float(m.group(2)) < 3.0
    assert err == ""
    assert out_file.stat().st_size == int(m.group(1)) > 0
    assert not os.path.exists(str(out_file) + ".part")
    await connections_gone(reactor, live)


@pytest_twisted.ensureDeferred
async def test_ctrl_c_during_get_of_a_stream_keeps_the_recording(reactor, live, tmp_path):
    out_file = tmp_path / "rec.ts"
    part = str(out_file) + ".part"
    p = start(reactor, "get", f"cccp://127.0.0.1:{live.port}/live/testpattern", "-o", str(out_file))
    await until(reactor, lambda: os.path.exists(part) and os.path.getsize(part) > 50_000, "data")
    os.kill(p.transport.pid, signal.SIGINT)
    code = await p.ended
    out, err = p.out.decode(), p.err.decode()
    assert code == 0, err
    m = re.fullmatch(rf"/live/testpattern -> {re.escape(str(out_file))} \((\d+) bytes in \d+\.\d s, [\d.]+ MB/s\): "
                     r"stopped after \d+\.\d s \(SIGINT\)\n", out)
    assert m, out
    assert out_file.stat().st_size == int(m.group(1)) >= 50_000
    assert not os.path.exists(part)
    await connections_gone(reactor, live)


@pytest_twisted.ensureDeferred
async def test_ctrl_c_during_get_of_a_file_of_known_size_removes_the_partial_file(reactor, live, tmp_path):
    out_file = tmp_path / "slow.bin"
    part = str(out_file) + ".part"
    p = start(reactor, "get", f"cccp://127.0.0.1:{live.port}/slow.bin", "-o", str(out_file))
    await until(reactor, lambda: os.path.exists(part) and os.path.getsize(part) > 20_000, "data")
    os.kill(p.transport.pid, signal.SIGINT)
    code = await p.ended
    err = p.err.decode()
    assert code == 1
    assert re.fullmatch(rf"cccp: interrupted \(SIGINT\): {re.escape(str(out_file))} not saved "
                        rf"\(\d+ of {SLOW_SIZE} bytes had arrived\)\n", err), err
    assert not os.path.exists(out_file) and not os.path.exists(part)
    await connections_gone(reactor, live)
