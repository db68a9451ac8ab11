"""CCCP media with independent peers: ffprobe reads what RETR sends over TCP, UDP
(n = 1 and 7) and RTP/UDP; GStreamer's rtpstreamdepay depacketises RTP framed on
TCP; paced UDP keeps the file's bitrate within 2 %; STOR records what ffprobe
reads; ABOR stops every mode; the live encoder and the tape deck stream.
ffmpeg/ffprobe and GStreamer are installed by .ci/run; missing, these tests fail."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, utils

from cccp.client import connect
from cccp.devices import FileMediaSource, FileMediaStore
from cccp.errors import CommandFailed
from cccp.live import MediaLibrary
from cccp.media import NULL_PID, TS_PACKET, file_bitrate, sample_clip_path, ts_pid
from cccp.stream import listen_udp

from ..cccp.conftest import Server, stop_server

FFPROBE = shutil.which("ffprobe")
FFMPEG = shutil.which("ffmpeg")
GST = shutil.which("gst-launch-1.0")


def test_media_peers_are_installed():
    assert FFPROBE and FFMPEG, "ffmpeg/ffprobe are not installed: .ci/run installs them"
    assert GST, "GStreamer (gst-launch-1.0) is not installed: .ci/run installs it"


def sleep(reactor: Any, s: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(s, d.callback, None)
    return d


def free_port(kind: str = "tcp") -> int:
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port: int) -> bool:
    for table in ("/proc/net/tcp",):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if int(parts[1].split(":")[1], 16) == port and parts[3] == "0A":
                    return True
    return False


async def wait_listening(reactor: Any, port: int) -> None:
    for _ in range(200):
        if listening(port):
            return
        await sleep(reactor, 0.02)
    raise AssertionError(f"nothing listens on {port}")


def codecs(text: str) -> set[str]:
    return {part for line in text.splitlines() for part in line.split(",") if part in
            ("mpeg2video", "mp2", "mjpeg", "h264")}


def ffprobe(reactor: Any, url: str) -> defer.Deferred[tuple[bytes, bytes, int]]:
    assert FFPROBE
    return utils.getProcessOutputAndValue(
        FFPROBE, ["-v", "error", "-probesize", "300000", "-analyzeduration", "2000000",
                  "-show_entries", "stream=codec_name", "-of", "csv", url], reactor=reactor)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: Any) -> str:
    """An 8 s constant-rate (2 Mbit/s) TS clip made with ffmpeg, for the pacing test."""
    assert FFMPEG, "ffmpeg is not installed"
    path = str(tmp_path_factory.mktemp("clips") / "long.ts")
    import subprocess
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-t", "8", "-c:v", "mpeg2video", "-b:v", "1500k", "-maxrate", "1500k", "-bufsize", "500k",
                    "-f", "mpegts", "-muxrate", "2000k", path], check=True, timeout=120)
    return path


@pytest_twisted.async_yield_fixture
async def media(reactor: Any, tmp_path: Any, long_clip: str) -> Any:
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

    from cccp.devices import VirtualTapeDeck
    from cccp.realm import CCCPRealm, make_portal
    from cccp.server import CCCPFactory
    root = str(tmp_path / "media")
    os.makedirs(root)
    shutil.copy(sample_clip_path(), os.path.join(root, "sample.ts"))
    shutil.copy(long_clip, os.path.join(root, "long.ts"))
    deck = VirtualTapeDeck(3600, clock=reactor)
    store = MediaLibrary(FileMediaStore(root), reactor, deck)
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"wonderland")
    portal = make_portal(CCCPRealm(store, None, deck), [checker], True)
    factory = CCCPFactory(portal, reactor=reactor, multicast_ok=True, multicast_interface="127.0.0.1")
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    s = Server(factory, port, root, None, deck, store)
    yield s
    await stop_server(s)


async def stream_to(reactor: Any, server: Any, path: str, type_: str, mode: str, port: int) -> Any:
    """PORT + RETR to a third party; the final reply (a 426 when the peer hung up early)."""
    c = await connect(reactor, "127.0.0.1", server.port)
    await c.type(type_)
    await c.mode(mode)
    try:
        reply = await c.streamTo(path, "127.0.0.1", port)
    except CommandFailed as e:
        from cccp.commands import Reply
        reply = Reply(e.code, e.lines)
    await c.quit()
    return reply


# -- ffprobe reads what RETR sends ------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_ffprobe_reads_ts_over_tcp(reactor, media):
    port = free_port()
    probe = ffprobe(reactor, f"tcp://127.0.0.1:{port}?listen=1")
    await wait_listening(reactor, port)
    reply = await stream_to(reactor, media, "/sample.ts", "I M", "S", port)
    out, err, code = await probe
    # ffprobe hangs up once it has probed enough: 226, or 426 for the rest of the clip.
    assert reply.code in (226, 426) and code == 0, err
    assert codecs(out.decode()) == {"mpeg2video", "mp2"}


@pytest.mark.parametrize("n", [1, 7])
@pytest_twisted.ensureDeferred
async def test_ffprobe_reads_ts_over_udp(reactor, media, n):
    port = free_port("udp")
    probe = ffprobe(reactor, f"udp://127.0.0.1:{port}?timeout=3000000")
    await sleep(reactor, 0.5)
    reply = await stream_to(reactor, media, "/sample.ts", "I M", f"P {n}", port)
    out, err, code = await probe
    assert reply.code == 226 and code == 0, err
    assert codecs(out.decode()) == {"mpeg2video", "mp2"}


@pytest_twisted.ensureDeferred
async def test_ffprobe_reads_rtp_over_udp(reactor, media):
    port = free_port("udp") & ~1                      # RTP uses an even port
    probe = ffprobe(reactor, f"rtp://127.0.0.1:{port}?timeout=3000000")
    await sleep(reactor, 0.5)
    reply = await stream_to(reactor, media, "/sample.ts", "I R 33", "P 1", port)
    out, err, code = await probe
    assert reply.code == 226 and code == 0, err
    assert codecs(out.decode()) == {"mpeg2video", "mp2"}


@pytest_twisted.ensureDeferred
async def test_gstreamer_depacketises_rtp_framed_on_tcp(reactor, media, tmp_path):
    """RFC 4571 framing on TCP: rtpstreamdepay ! rtpmp2tdepay gives back a TS ffprobe reads."""
    port = free_port()
    out_ts = str(tmp_path / "from-gst.ts")
    caps = "application/x-rtp-stream,media=video,clock-rate=90000,encoding-name=MP2T"
    gst = utils.getProcessOutputAndValue(GST, [
        "-e", "-q", "tcpserversrc", "host=127.0.0.1", f"port={port}", "!", caps, "!", "rtpstreamdepay", "!",
        "application/x-rtp,media=video,clock-rate=90000,encoding-name=MP2T,payload=33", "!",
        "rtpmp2tdepay", "!", "filesink", f"location={out_ts}"], reactor=reactor)
    await wait_listening(reactor, port)
    reply = await stream_to(reactor, media, "/sample.ts", "I R 33", "S", port)
    out, err, code = await gst
    assert reply.code == 226 and code == 0, err
    assert os.path.getsize(out_ts) > 0.9 * os.path.getsize(os.path.join(media.root, "sample.ts"))
    out, err, code = await ffprobe(reactor, out_ts)
    assert codecs(out.decode()) == {"mpeg2video", "mp2"}


# -- pacing --------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_paced_udp_keeps_the_files_bitrate(reactor, media):
    """UDP has no backpressure: datagrams leave at the rate the PCRs say, within 2 %."""
    clip = os.path.join(media.root, "long.ts")
    want = file_bitrate(clip)
    ep = listen_udp(reactor, "127.0.0.1")
    arrivals: list[tuple[float, int]] = []
    ep.on_datagram = lambda data, addr: arrivals.append((reactor.seconds(), len(data)))
    try:
        reply = await stream_to(reactor, media, "/long.ts", "I M", "P 7", ep.port.getHost().port)
    finally:
        ep.close()
    assert reply.code == 226
    assert sum(n for _, n in arrivals) == os.path.getsize(clip)       # nothing lost on loopback
    # Skip the first second (the stream's start-up burst before the second PCR).
    t0 = arrivals[0][0] + 1.0
    tail = [(t, n) for t, n in arrivals if t >= t0]
    measured = sum(n for _, n in tail[1:]) * 8 / (tail[-1][0] - tail[0][0])
    assert abs(measured - want) / want < 0.02, (measured, want)


# -- recording ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_stor_over_tcp_records_a_stream_ffprobe_reads(reactor, media):
    c = await connect(reactor, "127.0.0.1", media.port, user="alice", password="wonderland")
    await c.type("I M")
    r = await c.store("/rec-tcp.ts", FileMediaSource(os.path.join(media.root, "sample.ts")))
    assert r.code == 226
    out, err, code = await ffprobe(reactor, os.path.join(media.root, "rec-tcp.ts"))
    assert codecs(out.decode()) == {"mpeg2video", "mp2"}


@pytest_twisted.ensureDeferred
async def test_stor_over_udp_records_until_abor(reactor, media):
    c = await connect(reactor, "127.0.0.1", media.port, user="alice", password="wonderland")
    await c.type("I M")
    await c.mode("P 7")
    r = await c.store("/rec-udp.ts", FileMediaSource(os.path.join(media.root, "sample.ts")))
    assert r.code == 226 and r.text.startswith("Transfer complete: 457592 bytes stored in /rec-udp.ts")
    assert open(os.path.join(media.root, "rec-udp.ts"), "rb").read() == \
        open(os.path.join(media.root, "sample.ts"), "rb").read()
    out, err, code = await ffprobe(reactor, os.path.join(media.root, "rec-udp.ts"))
    assert codecs(out.decode()) == {"mpeg2video", "mp2"}


@pytest_twisted.ensureDeferred
async def test_stor_of_garbage_over_tcp_is_refused_and_leaves_nothing(reactor, media, tmp_path):
    junk = tmp_path / "junk.ts"
    junk.write_bytes(bytes(range(256)) * 400)
    before = sorted(os.listdir(media.root))
    c = await connect(reactor, "127.0.0.1", media.port, user="alice", password="wonderland")
    await c.type("I M")
    with pytest.raises(CommandFailed) as e:
        await c.store("/junk.ts", FileMediaSource(str(junk)))
    assert e.value.code == 451 and "not an MPEG2-TS stream" in e.value.lines[0]
    assert sorted(os.listdir(media.root)) == before


# -- ABOR in every mode ------------------------------------------------------------

@pytest.mark.parametrize("type_,mode", [("I M", "S"), ("I R 33", "S"), ("I M", "P 7"), ("I R 33", "P 1")])
@pytest_twisted.ensureDeferred
async def test_abor_mid_stream(reactor, media, type_, mode):
    """ABOR answers 426 for the stream then 226, and the stream stops at once."""
    got = [0]
    udp = mode.startswith("P")
    if udp:
        ep = listen_udp(reactor, "127.0.0.1")
        ep.on_datagram = lambda data, addr: got.__setitem__(0, got[0] + len(data))
        port = ep.port.getHost().port
    else:
        from twisted.internet import protocol

        class Count(protocol.Protocol):
            def dataReceived(self, data: bytes) -> None:
                got[0] += len(data)
        f = protocol.ServerFactory.forProtocol(Count)
        lp = reactor.listenTCP(0, f, interface="127.0.0.1")
        port = lp.getHost().port
    c = await connect(reactor, "127.0.0.1", media.port)
    await c.type(type_)
    await c.mode(mode)
    transfer = c.streamTo("/long.ts", "127.0.0.1", port)
    await sleep(reactor, 0.8)
    r = await c.abort()
    assert (r.code, r.text) == (226, "ABOR command successful")
    with pytest.raises(CommandFailed) as e:
        await transfer
    assert e.value.code == 426
    at_abort = got[0]
    await sleep(reactor, 0.3)
    assert 0 < at_abort < os.path.getsize(os.path.join(media.root, "long.ts")) / 2
    assert got[0] - at_abort < 64 * 1024          # nothing much after the ABOR
    if udp:
        ep.close()
    else:
        await lp.stopListening()
    await c.quit()


# -- live sources --------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_live_encoder_test_pattern(reactor, media):
    """/live/testpattern is ffmpeg (spawnProcess) encoding a test pattern to TS."""
    port = free_port("udp")
    probe = ffprobe(reactor, f"udp://127.0.0.1:{port}?timeout=3000000")
    await sleep(reactor, 0.3)
    c = await connect(reactor, "127.0.0.1", media.port)
    await c.type("I M")
    await c.mode("P 7")
    transfer = c.streamTo("/live/testpattern", "127.0.0.1", port)
    out, err, code = await probe
    await c.abort()
    with pytest.raises(CommandFailed):
        await transfer
    assert code == 0, err
    assert codecs(out.decode()) == {"mpeg2video", "mp2"}


@pytest_twisted.ensureDeferred
async def test_live_encoder_rtp_mpv(reactor, media):
    """TYPE I R 32 (MPV): the encoder packetises MPEG video itself; ffprobe reads the RTP."""
    port = free_port("udp") & ~1
    probe = ffprobe(reactor, f"rtp://127.0.0.1:{port}?timeout=3000000")
    await sleep(reactor, 0.3)
    c = await connect(reactor, "127.0.0.1", media.port)
    await c.type("I R 32")
    await c.mode("P 1")
    transfer = c.streamTo("/live/testpattern", "127.0.0.1", port)
    out, err, code = await probe
    await c.abort()
    with pytest.raises(CommandFailed):
        await transfer
    assert "mpeg2video" in codecs(out.decode()), err


@pytest_twisted.ensureDeferred
async def test_stored_file_cannot_be_sent_as_another_payload_type(reactor, media):
    c = await connect(reactor, "127.0.0.1", media.port)
    await c.type("I R 14")
    await c.mode("P 1")
    await c.sendCommand("PORT 127,0,0,1,200,1")
    with pytest.raises(CommandFailed) as e:
        await c.sendCommand("RETR /sample.ts")
    assert e.value.code == 504 and "/sample.ts cannot be sent as RTP payload types 14" in e.value.lines[0]


# -- the tape deck ---------------------------------------------------------------------

class PIDs:
    def __init__(self) -> None:
        self.buf = b""
        self.null = 0
        self.content = 0

    def registerProducer(self, p: Any, s: bool) -> None: ...
    def unregisterProducer(self) -> None: ...

    def write(self, data: bytes) -> None:
        self.buf += data
        whole = len(self.buf) // TS_PACKET * TS_PACKET
        for i in range(0, whole, TS_PACKET):
            if ts_pid(self.buf[i:i + TS_PACKET]) == NULL_PID:
                self.null += 1
            else:
                self.content += 1
        self.buf = self.buf[whole:]


@pytest_twisted.ensureDeferred
async def test_tape_holds_a_picture_while_paused_and_plays_its_programme(reactor, media):
    """Paused, the tape is a held picture (PCR kept running), not null packets; PLAY sends
    the programme (the details, with real peers: tests/interop/test_tape_deck.py)."""
    c = await connect(reactor, "127.0.0.1", media.port)
    await c.type("I M")
    sink = PIDs()
    transfer = c.retrieve("/tape", sink)
    await sleep(reactor, 0.5)
    assert sink.null == 0 and 0 < sink.content < 400        # paused: a picture, then only the clock
    held = sink.content
    await c.play(100)
    await sleep(reactor, 0.8)
    status = await c.tapeStatus()
    assert status.operation == "PLAY" and Decimal(0) <= status.position < Decimal(2)
    assert sink.content > held + 100 and sink.null == 0     # playing: the tape's programme
    await c.pause()
    await c.abort()
    with pytest.raises(CommandFailed):
        await transfer


# -- the client receives over UDP -------------------------------------------------------

@pytest.mark.parametrize("passive", [True, False])
@pytest_twisted.ensureDeferred
async def test_client_retrieves_over_udp(reactor, media, passive):
    c = await connect(reactor, "127.0.0.1", media.port, passive=passive)
    await c.type("I M")
    await c.mode("P 7")
    from cccp.client import _Collect
    sink = _Collect()
    r = await c.retrieve("/sample.ts", sink)
    assert r.code == 226
    assert sink.value() == open(os.path.join(media.root, "sample.ts"), "rb").read()


@pytest_twisted.ensureDeferred
async def test_client_retrieves_rtp_over_tcp_as_ts(reactor, media):
    c = await connect(reactor, "127.0.0.1", media.port)
    await c.type("I R 33")
    from cccp.client import _Collect
    sink = _Collect()
    r = await c.retrieve("/sample.ts", sink)
    assert r.code == 226
    assert sink.value() == open(os.path.join(media.root, "sample.ts"), "rb").read()


@pytest_twisted.ensureDeferred
async def test_multicast_stream_to_a_group(reactor, media):
    """PORT to a multicast group (policy permitting) with TTL 1; a member receives it."""
    from cccp.stream import multicast_receiver
    group, port = "239.255.42.42", free_port("udp")
    try:
        member = multicast_receiver(reactor, group, port, "127.0.0.1")
    except Exception as e:          # pragma: no cover - a kernel without multicast on lo
        pytest.fail(f"cannot join a multicast group on loopback: {e}")
    got = [0]
    member.on_datagram = lambda data, addr: got.__setitem__(0, got[0] + len(data))
    c = await connect(reactor, "127.0.0.1", media.port)
    await c.type("I M")
    await c.mode("P 7")
    reply = await c.streamTo("/sample.ts", group, port)
    member.close()
    assert reply.code == 226
    assert got[0] == os.path.getsize(os.path.join(media.root, "sample.ts"))


@pytest_twisted.ensureDeferred
async def test_a_multicast_group_and_port_carries_one_stream(reactor, media):
    """A second RETR to a group and port another transfer is sending to is refused (425):
    its members already get that stream, and two would interleave. Once the first ends,
    the group is free again."""
    group, port = "239.255.42.44", free_port("udp")
    first = await connect(reactor, "127.0.0.1", media.port)
    await first.type("I M")
    await first.mode("P 7")
    transfer = first.streamTo("/live/testpattern", group, port)
    await sleep(reactor, 0.5)
    second = await connect(reactor, "127.0.0.1", media.port)
    await second.type("I M")
    await second.mode("P 7")
    with pytest.raises(CommandFailed) as e:
        await second.streamTo("/live/testpattern", group, port)
    assert e.value.code == 425 and "another transfer is sending to" in str(e.value)
    await first.abort()
    with pytest.raises(CommandFailed):
        await transfer
    again = second.streamTo("/sample.ts", group, port)
    assert (await again).code == 226
    await first.quit()
    await second.quit()


@pytest_twisted.ensureDeferred
async def test_client_receives_from_a_multicast_group(reactor, media):
    c = await connect(reactor, "127.0.0.1", media.port)
    await c.type("I R 33")
    await c.mode("P 1")
    from cccp.client import _Collect
    sink = _Collect()
    r = await c.retrieve("/sample.ts", sink, multicast=("239.255.42.43", free_port("udp")))
    assert r.code == 226
    assert sink.value() == open(os.path.join(media.root, "sample.ts"), "rb").read()


@pytest_twisted.ensureDeferred
async def test_stor_of_rtp_over_udp_records_the_ts(reactor, media):
    c = await connect(reactor, "127.0.0.1", media.port, user="alice", password="wonderland")
    await c.type("I R 33")
    await c.mode("P 1")
    r = await c.store("/rec-rtp.ts", FileMediaSource(os.path.join(media.root, "sample.ts")))
    assert r.code == 226
    assert open(os.path.join(media.root, "rec-rtp.ts"), "rb").read() == \
        open(os.path.join(media.root, "sample.ts"), "rb").read()


@pytest_twisted.ensureDeferred
async def test_without_an_encoder_the_live_source_is_the_looped_sample(reactor, tmp_path):
    """The built-in default: no ffmpeg, /live/testpattern loops the shipped sample in real time."""
    from twisted.cred.checkers import AllowAnonymousAccess
    from twisted.cred.portal import Portal

    from cccp.realm import CCCPRealm
    from cccp.server import CCCPFactory
    os.makedirs(tmp_path / "m")
    store = MediaLibrary(FileMediaStore(str(tmp_path / "m")), reactor, None, encoder=None)
    factory = CCCPFactory(Portal(CCCPRealm(store), [AllowAnonymousAccess()]), reactor=reactor)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        c = await connect(reactor, "127.0.0.1", port.getHost().port)
        await c.type("I M")
        await c.mode("P 7")
        ep = listen_udp(reactor, "127.0.0.1")
        got = [0]
        ep.on_datagram = lambda data, addr: got.__setitem__(0, got[0] + len(data))
        transfer = c.streamTo("/live/testpattern", "127.0.0.1", ep.port.getHost().port)
        await sleep(reactor, 5.0)            # longer than the 4 s sample: it loops
        await c.abort()
        with pytest.raises(CommandFailed):
            await transfer
        ep.close()
        # Each loop is the sample's content (its null packets left out), spliced on.
        clip = open(sample_clip_path(), "rb").read()
        sample = sum(TS_PACKET for i in range(0, len(clip), TS_PACKET) if ts_pid(clip[i:i + TS_PACKET]) != NULL_PID)
        assert sample < got[0] < 2 * sample
    finally:
        for p in list(factory.connections):
            p.transport.abortConnection()
        await port.stopListening()
