"""One live source for many viewers, with real peers: a UDP TS viewer, GStreamer taking
RTP (``udpsrc ! rtpmp2tdepay ! tsdemux``), curl reading at 20 kB/s over TCP and a late
joiner all watch ``/live/testpattern`` at once from one ffmpeg; what each gets decodes
cleanly (ffprobe, ffmpeg, tshark's MP2T dissector); the late joiner starts at an I-frame;
curl misses whole GOPs without slowing the others; the encoder stops a while after the
last viewer, and a viewer that comes back within that finds it running."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import protocol

from cccp.client import connect
from cccp.devices import FileMediaStore
from cccp.errors import CommandFailed
from cccp.live import MediaLibrary
from cccp.media import sample_clip_path

from ..cccp.conftest import Server, stop_server
from .test_media_peers import FFPROBE, GST, codecs, sleep
from .test_rtcp import two_ports
from .test_tape_deck import Process
from .tsmedia import cut_at_last_picture, ffmpeg_errors, frames, tshark_findings

CURL = shutil.which("curl")


def encoders() -> list[int]:
    """Our ffmpeg children now."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if comm == "ffmpeg" and int(rest[1]) == os.getpid() and rest[0] != "Z":
            found.append(int(pid))
    return found


class Capture(protocol.DatagramProtocol):
    """A UDP viewer: every datagram, with when it came."""

    def __init__(self) -> None:
        self.got: list[tuple[float, bytes]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.got.append((time.monotonic(), data))

    def bytes_between(self, t0: float, t1: float, header: int = 0) -> int:
        return sum(len(d) - header for t, d in self.got if t0 <= t < t1)

    def save(self, path: Any, header: int = 0) -> str:
        with open(path, "wb") as f:
            for _, d in self.got:
                f.write(d[header:])
        return str(path)


class Counting(protocol.DatagramProtocol):
    """Between the server and GStreamer: passes the RTP on, noting each datagram's size and time."""

    def __init__(self, to: int) -> None:
        self.to = to
        self.got: list[tuple[float, int]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.got.append((time.monotonic(), len(data) - 12))
        self.transport.write(data, ("127.0.0.1", self.to))

    def bytes_between(self, t0: float, t1: float) -> int:
        return sum(n for t, n in self.got if t0 <= t < t1)


@pytest_twisted.async_yield_fixture
async def live(reactor: Any, tmp_path: Any) -> Any:
    from cccp.realm import CCCPRealm, make_portal
    from cccp.server import CCCPFactory
    root = str(tmp_path / "media")
    os.makedirs(root)
    shutil.copy(sample_clip_path(), os.path.join(root, "sample.ts"))
    store = MediaLibrary(FileMediaStore(root), reactor, None, close_after=1.5)
    portal = make_portal(CCCPRealm(store, None, None), [], True)
    factory = CCCPFactory(portal, reactor=reactor)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    s = Server(factory, port, root, None, None, store)
    yield s
    await stop_server(s)
    for _ in range(50):
        if not encoders():
            break
        await sleep(reactor, 0.1)


@pytest.fixture
def peers() -> Any:
    """Peer processes a test starts: killed at its end if a failure left them running."""
    started: list[Any] = []
    yield started
    for p in started:
        if not p.ended.called:
            p.transport.signalProcess("KILL")


async def viewer(reactor: Any, server: Any, type_: str, mode: str, port: int) -> tuple[Any, Any]:
    c = await connect(reactor, "127.0.0.1", server.port)
    await c.type(type_)
    await c.mode(mode)
    return c, c.streamTo("/live/testpattern", "127.0.0.1", port)


async def stop(c: Any, transfer: Any) -> None:
    await c.abort()
    with pytest.raises(CommandFailed):
        await transfer
    await c.quit()


def tee_of(server: Any) -> Any:
    tees = list(server.store.live.tees.values())
    assert len(tees) == 1, tees
    return tees[0]


@pytest_twisted.ensureDeferred
async def test_four_viewers_one_encoder_each_stream_clean(reactor, live, tmp_path, peers):
    assert GST and FFPROBE and CURL, "GStreamer, ffprobe and curl are needed (.ci/run installs them)"
    # 1. a UDP TS viewer (its capture goes to ffprobe, ffmpeg and tshark)
    a_port, a = reactor.listenUDP(0, Capture(), interface="127.0.0.1"), None
    a = a_port.protocol
    # 2. GStreamer taking RTP (payload type 33), through a relay that counts what it gets
    g = two_ports(reactor)
    gport = g[0].getHost().port
    for p in g[:2]:
        await p.stopListening()
    relay = Counting(gport)
    relay_port = reactor.listenUDP(0, relay, interface="127.0.0.1")
    caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=MP2T,payload=33"
    g_file = tmp_path / "gstreamer.ts"
    gst = Process(reactor, [GST, "-e", "-q", "udpsrc", "address=127.0.0.1", f"port={gport}", f"caps={caps}",
                            "!", "rtpmp2tdepay", "!", "tee", "name=t",
                            "t.", "!", "queue", "!", "filesink", f"location={g_file}",
                            "t.", "!", "queue", "!", "tsdemux", "name=d", "d.", "!", "queue", "!", "fakesink"])
    peers.append(gst)
    await sleep(reactor, 0.5)
    ca, ta = await viewer(reactor, live, "I M", "P 7", a_port.getHost().port)
    cb, tb = await viewer(reactor, live, "I R 33", "P 1", relay_port.getHost().port)
    # 3. curl over TCP, reading 20 kB/s
    c_file = tmp_path / "curl.ts"
    curl = Process(reactor, [CURL, "-s", "--limit-rate", "20k", "--max-time", "40", "-o", str(c_file),
                             f"ftp://127.0.0.1:{live.port}/live/testpattern"])
    peers.append(curl)
    await sleep(reactor, 2.5)
    # 4. a late joiner over UDP
    d_port = reactor.listenUDP(0, Capture(), interface="127.0.0.1")
    dv = d_port.protocol
    cd, td = await viewer(reactor, live, "I M", "P 7", d_port.getHost().port)
    await sleep(reactor, 1.0)                                   # (it starts at the next I-frame)
    tee = tee_of(live)
    samples = []
    t0, in0 = time.monotonic(), tee.bytes_in
    for _ in range(10):
        await sleep(reactor, 0.5)
        samples.append(len(encoders()))
    t1, in1 = time.monotonic(), tee.bytes_in
    assert samples == [1] * 10, samples                        # one encoder for all of them
    curl_viewer = [v for v in tee.viewers if v.consumer is not None and not v.consumer.udp]
    assert len(curl_viewer) == 1
    # memory stays bounded: what waits for curl is the kernel's buffer and Twisted's, not the stream
    transport = curl_viewer[0].consumer.output
    assert len(transport.dataBuffer) + sum(map(len, transport._tempDataBuffer)) < 1 << 20
    assert tee.starts == 1 and len(tee.viewers) == 4
    # the fast viewers' rates are the source's, curl or not
    source_rate = (in1 - in0) / (t1 - t0)
    for name, got in (("udp", a.bytes_between(t0, t1)), ("gstreamer", relay.bytes_between(t0, t1)),
                      ("late udp", dv.bytes_between(t0, t1))):
        assert abs(got / (t1 - t0) / source_rate - 1) < 0.02, (name, got / (t1 - t0), source_rate)
    for _ in range(100):                     # until what waits for curl fills its connection
        if curl_viewer[0].dropped:
            break
        await sleep(reactor, 0.25)
    assert curl_viewer[0].dropped > 0 and curl_viewer[0].gate.gaps > 0, "curl never fell behind"
    curl.transport.signalProcess("INT")
    await curl.ended
    for c, t in ((ca, ta), (cb, tb), (cd, td)):
        await stop(c, t)
    gst.transport.signalProcess("INT")                          # -e: EOS, the file is whole
    assert await gst.ended == 0, gst.err.decode()[-2000:]
    for p in (a_port, relay_port, d_port):
        p.stopListening()

    captures = {"udp": a.save(tmp_path / "udp.ts"), "gstreamer": str(g_file), "late": dv.save(tmp_path / "late.ts"),
                "curl": str(c_file)}
    for name, path in captures.items():
        cut_at_last_picture(path)                 # each was stopped in the middle of a picture
        probe = subprocess.run([FFPROBE, "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv", path],
                               capture_output=True, text=True, timeout=60)
        assert codecs(probe.stdout) == {"mpeg2video", "mp2"}, (name, probe.stderr)
        assert ffmpeg_errors(path) == "", (name, ffmpeg_errors(path)[:2000])
        first = frames(path)[0]
        assert first.kind == "I", (name, first)                # everyone starts at an I-frame
    for name in ("udp", "gstreamer", "late"):
        findings = tshark_findings(captures[name])
        assert "missing TS frames" not in findings and "Error" not in findings, (name, findings)
    assert os.path.getsize(captures["curl"]) < os.path.getsize(captures["udp"])    # it missed GOPs

    # the encoder runs on a while after the last viewer, then stops
    assert len(encoders()) == 1
    for _ in range(60):
        await sleep(reactor, 0.1)
        if not encoders():
            break
    assert encoders() == [] and live.store.live.tees == {}


@pytest_twisted.ensureDeferred
async def test_a_viewer_back_within_the_delay_finds_the_encoder_running(reactor, live):
    cap = reactor.listenUDP(0, Capture(), interface="127.0.0.1")
    c, t = await viewer(reactor, live, "I M", "P 7", cap.getHost().port)
    await sleep(reactor, 1.0)
    first = encoders()
    await stop(c, t)
    await sleep(reactor, 0.5)                                   # within the 1.5 s delay
    c, t = await viewer(reactor, live, "I M", "P 7", cap.getHost().port)
    got = len(cap.protocol.got)
    await sleep(reactor, 0.5)
    assert encoders() == first and len(first) == 1
    assert tee_of(live).starts == 1
    assert len(cap.protocol.got) > got                          # and it streams to the newcomer at once
    await stop(c, t)
    cap.stopListening()


@pytest_twisted.ensureDeferred
async def test_rtp_made_by_the_encoder_is_shared_too(reactor, live, tmp_path):
    """TYPE I R 32: ffmpeg packetises MPEG video itself; two viewers, one encoder, and a
    late one starts with a sequence header: ffprobe reads its RTP."""
    import struct

    from .test_media_peers import ffprobe, free_port
    one, one_rtcp, _, reports = two_ports(reactor, Capture(), Capture())
    c1, t1 = await viewer(reactor, live, "I R 32", "P 1", one.getHost().port)
    await sleep(reactor, 1.5)
    port = free_port("udp") & ~1
    probe = ffprobe(reactor, f"rtp://127.0.0.1:{port}?timeout=4000000")
    await sleep(reactor, 0.3)
    c2, t2 = await viewer(reactor, live, "I R 32", "P 1", port)
    out, err, code = await probe
    assert len(encoders()) == 1 and tee_of(live).starts == 1
    assert "mpeg2video" in codecs(out.decode()), err
    for c, t in ((c1, t1), (c2, t2)):
        await stop(c, t)
    one.stopListening()
    one_rtcp.stopListening()
    got = one.protocol.got
    assert got and all(d[1] & 0x7F == 32 for _, d in got)
    # RTCP for the encoder's RTP too: sender reports with its SSRC and its RTP clock
    srs = [(t, d) for t, d in reports.got if d[1] == 200]
    assert len(srs) >= 2, reports.got
    ssrc = struct.unpack("!I", got[-1][1][8:12])[0]
    for t, sr in srs[:-1]:
        assert struct.unpack("!I", sr[4:8])[0] == ssrc
        before = [d for at, d in got if at <= t][-1]            # the last RTP packet before it
        gap = (struct.unpack("!I", sr[16:20])[0] - struct.unpack("!I", before[4:8])[0]) & 0xFFFFFFFF
        assert gap < 90000 * 0.2, gap                          # within 0.2 s of the stream's clock
