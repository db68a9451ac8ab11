"""Hostile peers against the CCCP server, over real sockets on 127.0.0.1: brute force
across connections, peers that never read, reply injection through file names,
transfers that would outlive their session, pre-login slot exhaustion and crash
recovery. After each case the stored files are as they were (nothing added,
truncated or left as a temporary file), the server holds no connection of the case,
and a fresh client still lists and downloads byte-identically."""

from __future__ import annotations

import ftplib
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import globalLogPublisher

from cccp.client import connect
from cccp.commands import parse_host_port
from cccp.devices import RECORDING_PREFIX

from .conftest import fill, start_server, stop_server


def sleep(reactor: Any, s: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(s, d.callback, None)
    return d


async def until(reactor: Any, cond: Any, timeout: float) -> float:
    start = reactor.seconds()
    while not cond():
        if reactor.seconds() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        await sleep(reactor, 0.02)
    return reactor.seconds() - start


class Raw(protocol.Protocol):
    """A raw control connection: writes lines, keeps the reply lines it reads."""

    def __init__(self) -> None:
        self.buf = b""
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.buf += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)

    def lines(self) -> list[str]:
        return self.buf.decode("utf-8", "replace").split("\r\n")[:-1]

    def send(self, *lines: str) -> None:
        self.transport.write(b"".join(line.encode() + b"\r\n" for line in lines))

    async def reply(self, reactor: Any, code: int, timeout: float = 5) -> str:
        """The first line starting with *code* (and a space)."""
        await until(reactor, lambda: any(line.startswith(f"{code} ") for line in self.lines())
                    or self.closed.called, timeout)
        return next(line for line in self.lines() if line.startswith(f"{code} "))


PEERS: list[Raw] = []


async def raw(reactor: Any, port: int, bind: str | None = None) -> Raw:
    ep = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(bind, 0) if bind else None)
    p = await ep.connect(protocol.Factory.forProtocol(Raw))
    PEERS.append(p)
    await until(reactor, lambda: p.lines() or p.closed.called, 5)
    return p


def snapshot(root: str) -> dict[str, str]:
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                out[os.path.relpath(os.path.join(d, name), root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest_twisted.async_yield_fixture
async def server(reactor: Any, tmp_path: Any) -> Any:
    root = str(tmp_path / "media")
    os.makedirs(root)
    files = fill(root)
    s = start_server(reactor, root, login_delay=0.02, stall_timeout=0.5, login_timeout=2.0)
    s.files = files
    s.before = snapshot(root)
    yield s
    for p in PEERS:
        if not p.closed.called:
            p.transport.abortConnection()
    PEERS.clear()
    await until(reactor, lambda: not s.factory.connections, 3)
    assert snapshot(root) == s.before, "the store changed"
    c = await connect(reactor, "127.0.0.1", s.port)
    assert "hello.txt" in await c.nlst()
    await c.type("I")
    from .test_server import Sink
    sink = Sink()
    await c.retrieve("clips/a.ts", sink)
    assert bytes(sink.data) == files["clips/a.ts"]
    await c.quit()
    await stop_server(s)


def logged(events: list[dict[str, Any]], text: str) -> bool:
    from twisted.logger import formatEvent
    return any(text in formatEvent(e) for e in events)


# -- 13: brute force across connections --------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_13_failures_count_across_connections_and_lock_the_account_out(reactor, server):
    """Reconnecting does not reset the count: five failures of one account from three
    connections lock it out, and then even the right password is refused; other accounts
    and anonymous users are not affected. The log says so."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for guesses in (2, 2, 1):
            p = await raw(reactor, server.port)
            for i in range(guesses):
                p.send("USER alice", f"PASS guess{i}")
                await until(reactor, lambda p=p, n=i: sum(line.startswith("530 ") for line in p.lines()) > n, 5)
            p.transport.loseConnection()
        p = await raw(reactor, server.port)
        p.send("USER alice", "PASS wonderland")
        line = await p.reply(reactor, 530)
        assert "Login refused: account alice is locked out" in line
        other = await connect(reactor, "127.0.0.1", server.port)           # anonymous still works
        await other.quit()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert logged(events, "account alice locked out")
    assert logged(events, "login for alice refused: account alice is locked out")


@pytest_twisted.ensureDeferred
async def test_13_each_failure_in_the_window_waits_longer(reactor, server):
    p = await raw(reactor, server.port)
    times = []
    for i in range(3):
        start = reactor.seconds()
        p.send("USER bob", f"PASS x{i}")
        await until(reactor, lambda n=i: sum(line.startswith("530 ") for line in p.lines()) > n, 5)
        times.append(reactor.seconds() - start)
    assert times[0] >= 0.02 and times[1] >= 0.04 and times[2] >= 0.08        # 0.02 s doubling


# -- 14: a client that never reads -----------------------------------------------------------

@pytest.mark.parametrize("logged_in", [False, True])
@pytest_twisted.ensureDeferred
async def test_14_replies_do_not_pile_up_for_a_client_that_never_reads(reactor, server, logged_in):
    p = await raw(reactor, server.port)
    if logged_in:
        p.send("USER anonymous", "PASS x")
        await p.reply(reactor, 230)
    p.transport.pauseProducing()
    p.transport.write(b"HELP\r\n" * 100_000)            # each answered by 8 lines
    conn = next(iter(server.factory.connections))
    peak = 0
    for _ in range(40):
        t = conn.transport
        if t is None or t.disconnected:
            break
        peak = max(peak, len(t.dataBuffer) - t.offset + t._tempDataLen)
        await sleep(reactor, 0.05)
    assert peak < 1 << 20, peak                           # the answers would be ~50 MB
    await until(reactor, lambda: not server.factory.connections, 3)


# -- 15: reply injection through file names ------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_15_a_file_name_cannot_forge_replies(reactor, server, tmp_path):
    """A stored file named ``evil\\r\\n212 End of status\\r\\n500 injected``: STAT and LIST
    show it escaped, ftplib stays in step, and STOR of such a name is refused."""
    evil = "evil\r\n212 End of status\r\n500 injected"
    path = os.path.join(server.root, evil)
    with open(path, "wb") as f:
        f.write(b"x")
    try:
        def talk() -> tuple[str, list[str], str]:
            ftp = ftplib.FTP()
            ftp.connect("127.0.0.1", server.port, timeout=10)
            ftp.login("alice", "wonderland")
            status = ftp.sendcmd("STAT /")
            listing: list[str] = []
            ftp.retrlines("LIST", listing.append)
            after = ftp.sendcmd("NOOP")
            try:
                ftp.storbinary("STOR bad\x85name.ts", open(os.devnull, "rb"))    # NEL, a C1 control
                stored = "stored"
            except ftplib.error_perm as e:
                stored = str(e)
            ftp.quit()
            return status, listing, after + " / " + stored
        from twisted.internet import threads
        status, listing, after = await threads.deferToThread(talk)
        assert "evil\\x0d\\x0a212 End of status\\x0d\\x0a500 injected" in status
        assert status.rstrip().endswith("212 End of status")
        assert any(line.endswith("evil\\x0d\\x0a212 End of status\\x0d\\x0a500 injected") for line in listing)
        assert after.startswith("200 NOOP ok")
        assert "553" in after and "control characters" in after
    finally:
        os.unlink(path)


# -- 16: transfers end with their session -------------------------------------------------------

def pasv_port(line: str) -> int:
    return parse_host_port(line[line.index("(") + 1:line.index(")")])[1]


@pytest_twisted.ensureDeferred
async def test_16_a_pending_stor_never_lands_after_quit_and_its_port_is_free_at_once(reactor, server):
    p = await raw(reactor, server.port)
    p.send("USER alice", "PASS wonderland")
    await p.reply(reactor, 230)
    p.send("TYPE I", "PASV")
    port = pasv_port(await p.reply(reactor, 227))
    p.send("STOR ghost.ts", "QUIT")
    await p.reply(reactor, 221)
    await p.closed
    await sleep(reactor, 0.05)
    s = socket.socket()
    with pytest.raises(ConnectionRefusedError):            # the passive port is closed at once
        s.connect(("127.0.0.1", port))
    s.close()
    assert not [n for n in os.listdir(server.root) if n.startswith(RECORDING_PREFIX) or n == "ghost.ts"]


@pytest_twisted.ensureDeferred
async def test_16_a_second_transfer_while_one_waits_for_its_data_connection_is_refused(reactor, server):
    p = await raw(reactor, server.port)
    p.send("USER alice", "PASS wonderland")
    await p.reply(reactor, 230)
    p.send("TYPE I", "PASV")
    await p.reply(reactor, 227)
    p.send("STOR first.ts", "PASV")
    await p.reply(reactor, 227)
    p.send("STOR second.ts")
    assert "another transfer is waiting" in await p.reply(reactor, 425)
    p.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_16_a_udp_recording_ends_with_its_session_and_nothing_lands(reactor, server):
    p = await raw(reactor, server.port)
    p.send("USER alice", "PASS wonderland")
    await p.reply(reactor, 230)
    p.send("TYPE I M", "MODE P 7", "PASV")
    port = pasv_port(await p.reply(reactor, 227))
    p.send("STOR live.ts")
    await sleep(reactor, 0.1)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    packet = b"\x47\x1f\xff\x10" + b"\xff" * 184
    for _ in range(20):
        udp.sendto(packet * 7, ("127.0.0.1", port))
    await sleep(reactor, 0.1)
    assert [n for n in os.listdir(server.root) if n.startswith(RECORDING_PREFIX)]
    p.send("QUIT")
    await p.closed
    for _ in range(20):                                     # datagrams after the end go nowhere
        udp.sendto(packet * 7, ("127.0.0.1", port))
    udp.close()
    await sleep(reactor, 0.1)
    assert not [n for n in os.listdir(server.root) if n.startswith(RECORDING_PREFIX) or n == "live.ts"]


@pytest_twisted.ensureDeferred
async def test_16_the_tape_stops_streaming_when_its_session_ends(reactor, tmp_path):
    root = str(tmp_path / "tape")
    os.makedirs(root)
    server = start_server(reactor, root, library=True)
    server.deck.play()
    p = await raw(reactor, server.port)
    p.send("USER anonymous", "PASS x", "TYPE I M", "PASV")
    port = pasv_port(await p.reply(reactor, 227))
    data = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(protocol.Factory.forProtocol(Raw))
    p.send("RETR /tape")
    await p.reply(reactor, 150)
    await until(reactor, lambda: len(data.buf) > 188 * 10, 5)
    p.send("QUIT")
    await p.closed
    await data.closed.addTimeout(2, reactor)                # the server closed the data connection
    await until(reactor, lambda: not server.factory.connections, 2)
    await stop_server(server)


# -- 17: connections that never log in ---------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_17_connections_that_never_log_in_take_only_their_share(reactor, server):
    """From one address, connections that do not log in get their share of the slots
    (half of the per-address limit); the rest get 421 at once, and users from elsewhere,
    and those logged in, are served."""
    share = server.factory.max_unauthenticated_per_address
    idle = [await raw(reactor, server.port, bind="127.0.0.5") for _ in range(share)]
    extra = await raw(reactor, server.port, bind="127.0.0.5")
    assert extra.lines()[0].startswith("421 ") and "waiting to log in" in extra.lines()[0]
    user = await connect(reactor, "127.0.0.1", server.port, user="alice", password="wonderland")
    assert (await user.noop()).code == 200
    await user.quit()
    for p in idle:
        assert p.lines()[0].startswith("220 ")


@pytest_twisted.ensureDeferred
async def test_17_a_connection_must_log_in_in_time_whatever_it_sends(reactor, server):
    p = await raw(reactor, server.port)
    start = reactor.seconds()
    while not p.closed.called and reactor.seconds() - start < 5:
        p.send("NOOP")
        await sleep(reactor, 0.1)
    assert p.closed.called and 1.9 <= reactor.seconds() - start < 3       # login_timeout 2 s here
    assert any(line.startswith("421 Not logged in within 2 seconds") for line in p.lines())


# -- 18: crash recovery ------------------------------------------------------------------------------

def twistd(port: int, root: str) -> subprocess.Popen[bytes]:
    log = tempfile.TemporaryFile()
    return subprocess.Popen([sys.executable, "-m", "twisted", "cccp-server", "--root", root,
                             "--auth", "memory:alice:wonderland", "--listen", f"tcp:{port}:interface=127.0.0.1"],
                            stdout=log, stderr=subprocess.STDOUT)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


async def listening(reactor: Any, port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        assert proc.poll() is None, "the server exited"
        try:
            p = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(protocol.Factory.forProtocol(Raw))
            p.transport.abortConnection()
            return
        except Exception:
            await sleep(reactor, 0.05)
    raise AssertionError("the server did not start")


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_18_after_kill_9_mid_stor_the_recording_is_swept_and_the_old_file_is_intact(reactor, tmp_path):
    root = str(tmp_path / "media")
    os.makedirs(root)
    with open(os.path.join(root, "clip.ts"), "wb") as f:
        f.write(b"old contents")
    port = free_port()
    proc = twistd(port, root)
    try:
        await listening(reactor, port, proc)
        p = await raw(reactor, port)
        p.send("USER alice", "PASS wonderland", "TYPE I", "PASV")
        data_port = pasv_port(await p.reply(reactor, 227))
        p.send("STOR clip.ts")
        data = await TCP4ClientEndpoint(reactor, "127.0.0.1", data_port).connect(protocol.Factory.forProtocol(Raw))
        data.transport.write(os.urandom(500_000))
        await until(reactor, lambda: [n for n in os.listdir(root) if n.startswith(RECORDING_PREFIX)], 5)
        proc.kill()
        proc.wait(10)
        assert len([n for n in os.listdir(root) if n.startswith(RECORDING_PREFIX)]) == 1
        data.transport.abortConnection()
        p.transport.abortConnection()
        proc = twistd(port, root)
        await listening(reactor, port, proc)
        assert os.listdir(root) == ["clip.ts"]
        assert open(os.path.join(root, "clip.ts"), "rb").read() == b"old contents"
    finally:
        PEERS.clear()
        proc.kill()
        proc.wait(10)
