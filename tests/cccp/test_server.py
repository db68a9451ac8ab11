"""Every CCCP command over a real socket on 127.0.0.1: reply codes and texts,
commands during transfers (STAT, ABOR, camera, tape), REIN, 530/501/502, and
the security checks (bounce PORT, foreign PASV connection, path escape, login flood)."""

from __future__ import annotations

import os
import socket
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from zope.interface import implementer

from cccp.client import CCCPClient, connect
from cccp.commands import Reply
from cccp.errors import CommandFailed

from .conftest import start_server, stop_server


async def ask(client: CCCPClient, line: str) -> Reply:
    """Send one raw line; the reply whatever its code."""
    try:
        return await client.sendCommand(line)
    except CommandFailed as e:
        return Reply(e.code, e.lines)


async def anon(reactor: Any, server: Any, **kw: Any) -> CCCPClient:
    return await connect(reactor, "127.0.0.1", server.port, **kw)


def sleep(reactor: Any, s: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(s, d.callback, None)
    return d


class Sink:
    """A consumer that pauses its producer after *pause_after* bytes."""

    def __init__(self, pause_after: int | None = None) -> None:
        self.data = bytearray()
        self.pause_after = pause_after
        self.producer: Any = None
        self.paused = False

    def registerProducer(self, p: Any, s: bool) -> None:
        self.producer = p

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.data += data
        if self.pause_after is not None and len(self.data) >= self.pause_after and not self.paused:
            self.paused = True
            self.producer.pauseProducing()


# -- greeting and login -------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_greeting_user_pass(reactor, server):
    c = await connect(reactor, "127.0.0.1", server.port, user=None)
    greeting = await c.greeting
    assert (greeting.code, greeting.text) == (220, "CCCP server ready")
    r = await ask(c, "USER alice")
    assert (r.code, r.text) == (331, "Password required for alice")
    r = await ask(c, "PASS wonderland")
    assert (r.code, r.text) == (230, "User alice logged in")
    r = await ask(c, "ACCT billing")
    assert (r.code, r.text) == (202, "ACCT not needed: superfluous at this site")
    await c.quit()


@pytest_twisted.ensureDeferred
async def test_anonymous_login(reactor, server):
    c = await connect(reactor, "127.0.0.1", server.port, user=None)
    await c.greeting
    r = await ask(c, "user ANONYMOUS")
    assert (r.code, r.text) == (331, "Guest login ok, send your e-mail address as password")
    r = await ask(c, "pass me@example.org")
    assert (r.code, r.text) == (230, "Guest login ok, access restrictions apply")
    await c.quit()


@pytest_twisted.ensureDeferred
async def test_anonymous_refused_when_disabled(reactor, media):
    s = start_server(reactor, media[0], anonymous=False)
    try:
        c = await connect(reactor, "127.0.0.1", s.port, user=None)
        await c.greeting
        assert (await ask(c, "USER anonymous")).text == "Password required for anonymous"
        r = await ask(c, "PASS x")
        assert (r.code, r.text) == (530, "Login incorrect")
    finally:
        await stop_server(s)


@pytest.mark.parametrize("line", ["CWD /", "CDUP", "PWD", "LIST", "NLST", "RETR x", "STOR x", "STAT", "PASV",
                                  "PORT 127,0,0,1,4,1", "TYPE I", "MODE S", "PLAY", "ZOOM +", "CSTA", "TSTA",
                                  "ABOR", "REIN", "SMNT /", "ACCT x"])
@pytest_twisted.ensureDeferred
async def test_commands_before_login_are_530(reactor, server, line):
    c = await connect(reactor, "127.0.0.1", server.port, user=None)
    await c.greeting
    r = await ask(c, line)
    assert (r.code, r.text) == (530, "Please login with USER and PASS")
    for ok in ("NOOP", "SYST", "HELP"):
        assert (await ask(c, ok)).code in (200, 215, 214)
    await c.quit()


@pytest_twisted.ensureDeferred
async def test_pass_without_user_is_503(reactor, server):
    c = await connect(reactor, "127.0.0.1", server.port, user=None)
    await c.greeting
    r = await ask(c, "PASS x")
    assert (r.code, r.text) == (503, "Login with USER first")


@pytest_twisted.ensureDeferred
async def test_login_flood_is_delayed_and_cut_off(reactor, server):
    """Each failure is answered after a delay; the third closes the connection with 421."""
    c = await connect(reactor, "127.0.0.1", server.port, user=None)
    await c.greeting
    start = reactor.seconds()
    for i in range(2):
        await ask(c, "USER alice")
        r = await ask(c, f"PASS guess{i}")
        assert (r.code, r.text) == (530, "Login incorrect")
    assert reactor.seconds() - start >= 0.1
    await ask(c, "USER alice")
    d = c.sendCommand("PASS guess3")
    with pytest.raises(CommandFailed) as e:
        await d
    assert e.value.code == 530
    await c.whenClosed
    # others are still served
    other = await anon(reactor, server)
    assert (await ask(other, "NOOP")).code == 200


@pytest_twisted.ensureDeferred
async def test_commands_pipelined_during_a_login_delay_wait_their_turn(reactor, server):
    c = await connect(reactor, "127.0.0.1", server.port, user=None)
    await c.greeting
    from cccp.client import _Pending
    got: list[Any] = []
    for _ in range(5):       # expect five replies, in order, through the client's queue
        d: defer.Deferred[Reply] = defer.Deferred()
        c._queue.append(_Pending("raw", d))
        d.addBoth(got.append)
    c.transport.write(b"USER alice\r\nPASS bad\r\nUSER alice\r\nPASS wonderland\r\nPWD\r\n")
    await sleep(reactor, 0.5)
    codes = [getattr(r, "code", None) or getattr(r.value, "code", None) for r in got]
    assert codes == [331, 530, 331, 230, 257]


# -- simple commands ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_pwd_cwd_cdup_smnt(reactor, server):
    c = await anon(reactor, server)
    r = await ask(c, "PWD")
    assert (r.code, r.text) == (257, '"/" is the current directory')
    r = await ask(c, "CWD clips/deep")
    assert (r.code, r.text) == (250, 'Directory changed to "/clips/deep"')
    assert await c.pwd() == "/clips/deep"
    r = await ask(c, "CDUP")
    assert (r.code, r.text) == (200, 'Directory changed to "/clips"')
    r = await ask(c, "CWD nowhere")
    assert (r.code, r.text) == (550, "nowhere: no such directory")
    r = await ask(c, "CWD")
    assert (r.code, r.text) == (501, "CWD needs a path")
    r = await ask(c, "SMNT /clips")
    assert (r.code, r.text) == (202, "SMNT superfluous: this device has a single file structure")
    await c.quit()


@pytest_twisted.ensureDeferred
async def test_syst_noop_help(reactor, server):
    c = await anon(reactor, server)
    assert (await ask(c, "SYST")).text == "UNIX Type: L8 (CCCP camcoder control)"
    assert (await ask(c, "NOOP")).text == "NOOP ok"
    r = await ask(c, "HELP")
    assert r.code == 214 and r.lines[0] == "The following commands are recognized (REC is RECO):"
    body = " ".join(r.lines)
    for verb in ("USER", "RETR", "TSTA", "CSTA", "DEPT", "FF"):
        assert verb in body
    assert r.lines[-1] == "Help OK"
    r = await ask(c, "HELP zoom")
    assert (r.code, r.text) == (214, "Syntax: ZOOM <number> (+ narrower view)")
    r = await ask(c, "HELP REC")
    assert r.text.startswith("Syntax: RECO")
    r = await ask(c, "HELP SIZE")
    assert (r.code, r.text) == (502, "Unknown command SIZE")


@pytest_twisted.ensureDeferred
async def test_quit(reactor, server):
    c = await anon(reactor, server)
    r = await ask(c, "QUIT")
    assert (r.code, r.text) == (221, "Goodbye")
    await c.whenClosed


@pytest_twisted.ensureDeferred
async def test_rein_logs_out_and_resets(reactor, server):
    c = await anon(reactor, server)
    await ask(c, "CWD clips")
    await ask(c, "TYPE I")
    r = await ask(c, "REIN")
    assert (r.code, r.text) == (220, "Service ready for new user")
    assert (await ask(c, "PWD")).code == 530
    await c.login("alice", "wonderland")
    assert await c.pwd() == "/"
    assert "TYPE: ASCII" in (await ask(c, "STAT")).text


@pytest.mark.parametrize("line,code,text", [
    ("SIZE hello.txt", 502, "SIZE does not exist in CCCP"),
    ("feat", 502, "FEAT does not exist in CCCP"),
    ("EPSV", 502, "EPSV does not exist in CCCP"),
    ("DELE hello.txt", 502, "DELE does not exist in CCCP"),
    ("AUTH TLS", 502, "AUTH does not exist in CCCP"),
    ("XYZZY", 500, "Syntax error, command unrecognized: XYZZY"),
])
@pytest_twisted.ensureDeferred
async def test_commands_that_do_not_exist(reactor, server, line, code, text):
    c = await anon(reactor, server)
    r = await ask(c, line)
    assert (r.code, r.text) == (code, text)
    assert (await ask(c, "NOOP")).code == 200      # and the session carries on


@pytest_twisted.ensureDeferred
async def test_overlong_line_is_refused_and_the_session_goes_on(reactor, server):
    c = await anon(reactor, server)
    d = defer.Deferred()
    from cccp.client import _Pending
    c._queue.append(_Pending("long", d))
    c.transport.write(b"NOOP " + b"x" * 5000 + b"\r\n")
    with pytest.raises(CommandFailed) as e:
        await d
    assert e.value.code == 500 and "too long" in e.value.lines[0]
    assert (await ask(c, "NOOP")).code == 200


@pytest_twisted.ensureDeferred
async def test_bare_lf_lines_are_accepted(reactor, server):
    c = await anon(reactor, server)
    d = defer.Deferred()
    from cccp.client import _Pending
    c._queue.append(_Pending("lf", d))
    c.transport.write(b"NOOP\n")
    assert (await d).code == 200


# -- TYPE / MODE / STAT ----------------------------------------------------------------

@pytest.mark.parametrize("line,code,text", [
    ("TYPE A", 200, "Type set to ASCII"), ("TYPE A N", 200, "Type set to ASCII"),
    ("TYPE I", 200, "Type set to BINARY"), ("TYPE I M MP@ML", 200, "Type set to MPEG2-TS MP@ML"),
    ("TYPE I R 33", 200, "Type set to RTP payload types 33"),
    ("TYPE E", 504, "TYPE E is not supported in CCCP: A or I"),
    ("TYPE A T", 504, "TYPE A T is not supported: only format N"),
    ("TYPE", 501, "TYPE needs an argument: A [N] or I [M profile | R pt,...]"),
    ("MODE S", 200, "Mode set to STREAM (TCP), best effort"),
    ("MODE S rsvp-tspec", 200, "Mode set to STREAM (TCP), QoS 'rsvp-tspec' recorded (best effort)"),
    ("MODE B", 504, "MODE B is not supported in CCCP: S or P"),
    ("MODE P 7", 200, "Mode set to PACKET (UDP, 7 per datagram), best effort"),
    ("MODE P 100", 504, "MODE P 100: at most 64 TS packets fit in a datagram"),
    ("MODE", 501, "MODE needs an argument: S [qos] or P n [qos]"),
])
@pytest_twisted.ensureDeferred
async def test_type_and_mode(reactor, server, line, code, text):
    c = await anon(reactor, server)
    r = await ask(c, line)
    assert (r.code, r.text) == (code, text)


@pytest_twisted.ensureDeferred
async def test_stat_without_and_with_argument(reactor, server):
    c = await anon(reactor, server)
    r = await ask(c, "STAT")
    assert r.code == 211 and r.lines[0] == "CCCP server status:"
    assert "Logged in as anonymous" in r.lines and "No data transfer in progress" in r.lines
    assert any("best effort" in line for line in r.lines)
    r = await ask(c, "STAT clips")
    assert r.code == 212 and r.lines[0] == "Status of /clips:"
    assert any(line.endswith(" a.ts") for line in r.lines) and any(line.endswith(" deep") for line in r.lines)
    r = await ask(c, "STAT hello.txt")
    assert r.code == 213 and r.lines[1].endswith(" hello.txt") and " 12 " in r.lines[1]
    r = await ask(c, "STAT nothing")
    assert r.code == 550


# -- transfers ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_list_nlst_retr_stor_passive(reactor, server):
    c = await connect(reactor, "127.0.0.1", server.port, user="alice", password="wonderland")
    names = await c.nlst()
    assert names == ["clips", "hello.txt"]
    assert await c.nlst("clips") == ["a.ts", "deep"]
    listing = await c.list("clips")
    assert listing.splitlines()[0].startswith("-rw") and listing.splitlines()[1].startswith("d")
    await c.type("I")
    sink = Sink()
    r = await c.retrieve("clips/a.ts", sink)
    assert (r.code, r.text) == (226, "Transfer complete (256000 bytes)")
    assert bytes(sink.data) == server.files["clips/a.ts"]
    from cccp.devices import FileMediaSource
    src = os.path.join(server.root, "clips", "a.ts")
    r = await c.store("/clips/copy.ts", FileMediaSource(src))
    assert r.code == 226 and r.text == "Transfer complete: 256000 bytes stored in /clips/copy.ts"
    assert open(os.path.join(server.root, "clips", "copy.ts"), "rb").read() == server.files["clips/a.ts"]
    await c.quit()


@pytest_twisted.ensureDeferred
async def test_active_mode_port(reactor, server):
    c = await connect(reactor, "127.0.0.1", server.port, passive=False)
    await c.type("I")
    sink = Sink()
    r = await c.retrieve("hello.txt", sink)
    assert r.code == 226 and bytes(sink.data) == b"hello world\n"
    assert await c.nlst() == ["clips", "hello.txt"]


@pytest_twisted.ensureDeferred
async def test_pasv_and_port_replies(reactor, server):
    c = await anon(reactor, server)
    r = await ask(c, "PASV")
    assert r.code == 227 and r.text.startswith("Entering Passive Mode (127,0,0,1,")
    r = await ask(c, "PORT 127,0,0,1,200,10")
    assert (r.code, r.text) == (200, "PORT command successful")
    r = await ask(c, "PORT 127,0,0,1,0,21")
    assert (r.code, r.text) == (501, "Rejected data connection to privileged port 21")
    r = await ask(c, "PORT 1,2,3")
    assert r.code == 501


@pytest_twisted.ensureDeferred
async def test_transfer_needs_a_data_port_and_type_i(reactor, server):
    c = await anon(reactor, server)
    r = await ask(c, "RETR hello.txt")
    assert (r.code, r.text) == (504, "RETR needs TYPE I: TYPE A is for LIST, NLST and /events only")
    await ask(c, "TYPE I")
    r = await ask(c, "RETR hello.txt")
    assert (r.code, r.text) == (425, "Use PORT or PASV first")
    r = await ask(c, "RETR missing.ts")
    assert (r.code, r.text) == (550, "/missing.ts: no such file")
    r = await ask(c, "RETR")
    assert (r.code, r.text) == (501, "RETR needs a path")


@pytest_twisted.ensureDeferred
async def test_anonymous_may_not_store(reactor, server):
    c = await anon(reactor, server)
    await ask(c, "TYPE I")
    r = await ask(c, "STOR x.ts")
    assert (r.code, r.text) == (550, "Permission denied: this user may not store")


@pytest_twisted.ensureDeferred
async def test_stat_abor_and_commands_during_a_running_retr(reactor, server, tmp_path):
    """The control channel is served while data flows: STAT reports progress, camera and
    tape commands work, ABOR answers 426 for the transfer then 226."""
    big = os.path.join(server.root, "big.ts")
    with open(big, "wb") as f:
        f.write(b"\x47" * (64 << 20))
    c = await anon(reactor, server)
    await c.type("I")
    sink = Sink(pause_after=1 << 20)
    transfer = c.retrieve("big.ts", sink)
    while not sink.paused:
        await sleep(reactor, 0.01)
    r = await ask(c, "STAT")
    progress = [line for line in r.lines if "in progress" in line]
    assert r.code == 211 and progress and progress[0].startswith("RETR /big.ts in progress:")
    assert (await ask(c, "ZOOM 2")).text == "Command okay: ZOOM 2"
    assert (await ask(c, "PAUS")).code == 200
    r = await ask(c, "ABOR")
    assert (r.code, r.text) == (226, "ABOR command successful")
    with pytest.raises(CommandFailed) as e:
        await transfer
    assert e.value.code == 426 and e.value.lines[0].startswith("Connection closed; RETR /big.ts aborted after")
    assert len(sink.data) < (64 << 20)
    assert (await ask(c, "NOOP")).code == 200
    r = await ask(c, "ABOR")
    assert (r.code, r.text) == (225, "No transfer to abort")


@implementer()
class StallingSource:
    def __init__(self, first: bytes) -> None:
        self.first = first
        self.length = None

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(self.first)
        return defer.Deferred()

    def stopProducing(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...


@pytest_twisted.ensureDeferred
async def test_abor_during_stor_leaves_nothing(reactor, server):
    c = await connect(reactor, "127.0.0.1", server.port, user="alice", password="wonderland")
    await c.type("I")
    before = sorted(os.listdir(server.root))
    transfer = c.store("half.ts", StallingSource(b"\x47" * 100000))
    await sleep(reactor, 0.2)
    r = await ask(c, "ABOR")
    assert r.code == 226
    with pytest.raises(CommandFailed) as e:
        await transfer
    assert e.value.code == 426
    assert sorted(os.listdir(server.root)) == before


@pytest_twisted.ensureDeferred
async def test_broken_stor_connection_leaves_nothing(reactor, server):
    """A data connection that breaks (RST) mid-STOR: 426, no file, no temporary file."""
    c = await connect(reactor, "127.0.0.1", server.port, user="alice", password="wonderland")
    await c.type("I")
    before = sorted(os.listdir(server.root))

    class Breaking(StallingSource):
        def startProducing(self, consumer: Any) -> defer.Deferred[None]:
            consumer.write(self.first)
            reactor.callLater(0.1, consumer.abortConnection)
            return defer.Deferred()

    with pytest.raises(CommandFailed) as e:
        await c.store("broken.ts", Breaking(b"\x47" * 50000))
    assert e.value.code == 426
    assert sorted(os.listdir(server.root)) == before


@pytest_twisted.ensureDeferred
async def test_second_transfer_while_one_runs_is_refused(reactor, server):
    big = os.path.join(server.root, "big2.ts")
    with open(big, "wb") as f:
        f.write(b"\x47" * (32 << 20))
    c = await anon(reactor, server)
    await c.type("I")
    sink = Sink(pause_after=1 << 20)
    transfer = c.retrieve("big2.ts", sink)
    while not sink.paused:
        await sleep(reactor, 0.01)
    r = await ask(c, "RETR hello.txt")
    assert (r.code, r.text) == (503, "Bad sequence: RETR is still in progress")
    await ask(c, "ABOR")
    with pytest.raises(CommandFailed):
        await transfer


# -- security -------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_bounce_port_is_refused(reactor, server):
    c = await anon(reactor, server)
    r = await ask(c, "PORT 10,0,0,1,19,137")
    assert (r.code, r.text) == (501, "Rejected data connection to foreign address 10.0.0.1:5001")
    r = await ask(c, "PORT 127,0,0,2,19,137")
    assert r.code == 501


@pytest_twisted.ensureDeferred
async def test_foreign_pasv_connection_is_refused(reactor, server):
    """A PASV port accepts only the control connection's host; another one is cut off."""
    c = await anon(reactor, server)
    await c.type("I")
    r = await ask(c, "PASV")
    text = r.text
    nums = [int(x) for x in text[text.index("(") + 1:text.index(")")].split(",")]
    port = nums[4] * 256 + nums[5]
    # connect from 127.0.0.2 (another loopback address): refused
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    await sleep(reactor, 0.1)
    s.setblocking(False)
    try:
        got = s.recv(1)
    except BlockingIOError:
        got = None
    except ConnectionResetError:
        got = b""
    s.close()
    assert got == b""                       # closed by the server
    # the rightful client still gets its data on the same PASV port
    from cccp.data import connect_active
    data = await connect_active(reactor, "127.0.0.1", port)
    sink = Sink()
    data.receiveInto(sink)
    r = await ask(c, "RETR hello.txt")
    await data.closed_d
    assert bytes(sink.data) == b"hello world\n"


@pytest.mark.parametrize("path", ["../../etc/passwd", "/../../etc/passwd", "clips/../../x", "escape/secret"])
@pytest_twisted.ensureDeferred
async def test_paths_cannot_escape_the_root(reactor, server, tmp_path, path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    os.symlink(str(outside), os.path.join(server.root, "escape"))
    c = await anon(reactor, server)
    await c.type("I")
    r = await ask(c, f"RETR {path}")
    assert r.code == 550
    r = await ask(c, f"CWD {os.path.dirname(path) or path}")
    assert r.code == 550 or (await c.pwd()).startswith("/")
    assert "escape" not in await c.nlst()


@pytest_twisted.ensureDeferred
async def test_connection_limits(reactor, media):
    s = start_server(reactor, media[0], max_per_address=2, max_connections=10)
    try:
        a = await connect(reactor, "127.0.0.1", s.port)
        b = await connect(reactor, "127.0.0.1", s.port)
        with pytest.raises(CommandFailed) as e:
            await connect(reactor, "127.0.0.1", s.port)
        assert e.value.code == 421 and "Too many connections from 127.0.0.1 (2)" in e.value.lines[0]
        assert (await ask(a, "NOOP")).code == 200
        await a.quit()
        await sleep(reactor, 0.05)
        c = await connect(reactor, "127.0.0.1", s.port)
        await c.quit()
        await b.quit()
    finally:
        await stop_server(s)


@pytest_twisted.ensureDeferred
async def test_idle_timeout(reactor, media):
    s = start_server(reactor, media[0], idle_timeout=0.2)
    try:
        c = await connect(reactor, "127.0.0.1", s.port)
        await c.whenClosed
    finally:
        await stop_server(s)


# -- tape ------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_tape_commands(reactor, server):
    c = await anon(reactor, server)
    r = await ask(c, "TSTA")
    assert r.code == 200 and r.lines == ["PAUS 0", "PLAY 0,3600", "PAUS", "RECO 0,3600", "FF 0,3600",
                                         "End of status"]
    r = await ask(c, "FF 100 50")
    assert r.code == 200 and r.text.startswith("Command okay: FF; now FF at 0")
    await sleep(reactor, 0.3)
    status = await c.tapeStatus()
    assert status.operation == "FF" and Decimal(5) < status.position < Decimal(50)
    r = await ask(c, "PAUS")
    assert r.code == 200 and r.text.startswith("Command okay: PAUS; now PAUS at ")
    pos = (await c.tapeStatus()).position
    r = await ask(c, "PLAY +10 2")
    assert r.text.startswith("Command okay: PLAY; now PLAY at ")
    r = await ask(c, "REC")
    assert r.text.startswith("Command okay: RECO; now RECO at ")
    r = await ask(c, "RECO 0")                  # a stop position behind: ends at once
    assert r.text.startswith("Command okay: RECO; now PAUS at ")
    assert (await c.tapeStatus()).position >= pos


@pytest_twisted.ensureDeferred
async def test_tape_replies_say_the_speed_used_and_when_it_was_clamped(reactor, server):
    """The deck clamps speeds to its range (8 for play, 64 for wind); the reply says so."""
    c = await anon(reactor, server)
    r = await ask(c, "PLAY 10 20")
    assert r.code == 200 and r.text.startswith("Command okay: PLAY; now PLAY at 0")
    assert r.text.endswith(", speed 8 (clamped from 20)"), r.text
    r = await ask(c, "PLAY 3000 2")
    assert r.code == 200 and r.text.endswith(", speed 2"), r.text
    r = await ask(c, "FF 3000 100")
    assert r.code == 200 and r.text.endswith(", speed 64 (clamped from 100)"), r.text
    r = await ask(c, "PLAY 0 -9.5")             # reverse play, from where the tape is
    assert r.code == 200 and r.text.endswith(", speed -8 (clamped from -9.5)"), r.text
    r = await ask(c, "FF")
    assert r.code == 200 and r.text.endswith(", speed 5"), r.text           # the deck's default
    r = await ask(c, "RECO 0")                  # a stop position behind: ends at once, no speed
    assert r.text.startswith("Command okay: RECO; now PAUS at ") and "speed" not in r.text


@pytest.mark.parametrize("line,code,text", [
    ("PLAY x", 501, "Bad number 'x': expected [+|-]digits[.digits]"),
    ("PLAY 1  2", 501, "PLAY takes [stop-position [speed]] separated by single spaces"),
    ("PLAY 1 2 3", 501, "PLAY takes [stop-position [speed]] separated by single spaces"),
    ("FF 10 0", 501, "FF speed 0 does not move: use PAUS"),
    ("PLAY 99999999999", 501, "Number '99999999999' is outside the 32-bit signed range"),
    ("PAUS 3", 501, "PAUS takes no argument"),
])
@pytest_twisted.ensureDeferred
async def test_tape_argument_errors(reactor, server, line, code, text):
    c = await anon(reactor, server)
    r = await ask(c, line)
    assert (r.code, r.text) == (code, text)


@pytest_twisted.ensureDeferred
async def test_devices_that_are_absent_answer_502(reactor, media):
    s = start_server(reactor, media[0], camera=None, deck=None)
    try:
        c = await connect(reactor, "127.0.0.1", s.port)
        for line, text in (("PLAY", "This device has no tape control"), ("PAUS", "This device has no tape control"),
                           ("ZOOM +", "This device has no camera controls")):
            r = await ask(c, line)
            assert (r.code, r.text) == (502, text)
        # TSTA and CSTA are always supported
        assert (await ask(c, "TSTA")).lines == ["PAUS 0", "End of status"]
        assert (await ask(c, "CSTA")).lines == ["OK", "End of status"]
    finally:
        await stop_server(s)


# -- camera --------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_camera_commands(reactor, server):
    c = await anon(reactor, server)
    for verb, arg, text in [("IRIS", "60", "IRIS 60"), ("IRIS", "+", "IRIS 65"), ("IRIS", "-10.5", "IRIS 54.5"),
                            ("SENS", "-", "SENS 45"), ("ROLL", "+15", "ROLL 15"), ("PAN", "-200", "PAN -170"),
                            ("TILT", "+", "TILT 1"), ("ZOOM", "4", "ZOOM 4"), ("HORI", "+", "HORI 10"),
                            ("VERT", "-25", "VERT -25"), ("DEPT", "100.25", "DEPT 100.25"),
                            ("FOCU", "+", "FOCU 10.5")]:
        r = await ask(c, f"{verb} {arg}")
        assert (r.code, r.text) == (200, f"Command okay: {text}")
    status = await c.cameraStatus()
    assert list(status.controls) == ["IRIS", "SENS", "ZOOM", "FOCU", "PAN", "TILT", "ROLL", "HORI", "VERT", "DEPT"]
    assert status.controls["PAN"] == (Decimal(-170), Decimal(-170), Decimal(170))
    r = await ask(c, "CSTA")
    assert r.lines[0] == "OK" and r.lines[-1] == "End of status"
    # rotations before translations, in the order applied
    order = [line.split()[0] for line in r.lines[1:-1]]
    assert order.index("ROLL") < order.index("HORI") and order.index("PAN") < order.index("DEPT")


@pytest.mark.parametrize("line,code,text", [
    ("ZOOM", 501, "ZOOM needs one number: [+|-]digits[.digits], + or -"),
    ("ZOOM 1 2", 501, "ZOOM needs one number: [+|-]digits[.digits], + or -"),
    ("ZOOM 1e3", 501, "Bad number '1e3': expected [+|-]digits[.digits]"),
    ("PAN 2147483648", 501, "Number '2147483648' is outside the 32-bit signed range"),
])
@pytest_twisted.ensureDeferred
async def test_camera_argument_errors(reactor, server, line, code, text):
    c = await anon(reactor, server)
    r = await ask(c, line)
    assert (r.code, r.text) == (code, text)


@pytest_twisted.ensureDeferred
async def test_camera_without_an_axis_answers_502(reactor, media):
    from cccp.devices import VirtualCamera
    cam = VirtualCamera({"ZOOM": (1, 10, 1, 1), "FOCU": (0, 10, 1, 5)})
    s = start_server(reactor, media[0], camera=cam)
    try:
        c = await connect(reactor, "127.0.0.1", s.port)
        r = await ask(c, "PAN +")
        assert (r.code, r.text) == (502, "PAN is not supported by this camera")
        assert (await ask(c, "CSTA")).lines == ["OK", "ZOOM 1,1,10", "FOCU 0,5,10", "End of status"]
    finally:
        await stop_server(s)


@pytest_twisted.ensureDeferred
async def test_passive_port_range_and_masquerade(reactor, media):
    s = start_server(reactor, media[0], passive_ports=(47000, 47010), masquerade="192.0.2.7")
    try:
        c = await connect(reactor, "127.0.0.1", s.port)
        r = await ask(c, "PASV")
        nums = [int(x) for x in r.text[r.text.index("(") + 1:r.text.index(")")].split(",")]
        assert nums[:4] == [192, 0, 2, 7]
        assert 47000 <= nums[4] * 256 + nums[5] <= 47010
        # clients connect to the control host whatever the 227 says
        assert await c.nlst() == ["clips", "hello.txt"]
    finally:
        await stop_server(s)
