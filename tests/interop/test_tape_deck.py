"""The tape deck moves real media (issue: trick play with a valid TS at every speed).

RETR of the tape, and of a stored clip as a tape, is recorded while the deck plays,
fast-forwards, plays, pauses, plays, rewinds and plays again, over TCP, over UDP (MODE P
7) and as RTP (TYPE I R 33); tshark, ffmpeg and tstools read the recording, and every
picture in it is matched (by checksum) to the picture of the source clip it shows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, task

from cccp.client import CommandFailed, connect
from cccp.devices import FileMediaStore, VirtualTapeDeck
from cccp.devices.live import MediaLibrary
from cccp.devices.store import FileMediaSource
from tests.cccp.conftest import Server, stop_server

from .tsmedia import FFMPEG, Run, assert_one_valid_stream, cut_at_last_picture, frames, picture_map, runs

GST = shutil.which("gst-launch-1.0")
GOP = 12 / 25
#: What the test does with the deck, one command every HOLD seconds.
SCRIPT: list[tuple[Any, ...]] = [("play",), ("fastForward", 1000, 5), ("play",), ("pause",), ("play",),
                                 ("fastForward", 0, -5), ("play",)]
HOLD = 1.5


def _clip(path: str, seconds: int, source: str) -> str:
    assert FFMPEG, "ffmpeg is needed (.ci/run installs it)"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", f"{source}=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
                    "-c:v", "mpeg2video", "-g", "12", "-bf", "2", "-b:v", "800k", "-c:a", "mp2", "-b:a", "96k",
                    "-f", "mpegts", "-muxrate", "1500k", path], check=True, timeout=120)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: Any) -> tuple[str, dict[str, float]]:
    """20 s of MPEG-2 with B-frames (GOP 12) and MP2, every picture different, and the
    position of each picture by its checksum."""
    path = _clip(str(tmp_path_factory.mktemp("tape") / "clip.ts"), 20, "testsrc")
    return path, picture_map(path)


@pytest_twisted.async_yield_fixture
async def deck_server(reactor: Any, tmp_path: Any, clip: Any) -> Any:
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

    from cccp.realm import CCCPRealm, make_portal
    from cccp.server import CCCPFactory
    root = str(tmp_path / "media")
    os.makedirs(root)
    shutil.copy(clip[0], os.path.join(root, "clip.ts"))
    deck = VirtualTapeDeck(3600, clock=reactor)
    store = MediaLibrary(FileMediaStore(root), reactor, deck, tape_clip=clip[0])
    portal = make_portal(CCCPRealm(store, None, deck, anonymous_may_store=True),
                         [InMemoryUsernamePasswordDatabaseDontUse()], True)
    factory = CCCPFactory(portal, reactor=reactor, login_delay=0.05)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    s = Server(factory, port, root, None, deck, store)
    yield s
    await stop_server(s)


class Process(protocol.ProcessProtocol):
    """A peer started with spawnProcess; :attr:`ended` fires with its exit code."""

    def __init__(self, reactor: Any, argv: list[str]) -> None:
        self.err = b""
        self.ended: defer.Deferred[int] = defer.Deferred()
        reactor.spawnProcess(self, argv[0], argv, env=os.environ.copy())

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode)


def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


class FileSink:
    def __init__(self, path: str) -> None:
        self.file = open(path, "wb")

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.file.write(data)


async def drive(reactor: Any, c: Any, script: list[tuple[Any, ...]] = SCRIPT) -> list[tuple[str, str]]:
    """Send the tape commands, HOLD seconds apart; their replies."""
    replies = []
    for verb, *args in script:
        reply = await getattr(c, verb)(*args)
        replies.append((verb, reply.text))
        await sleep(reactor, HOLD)
    return replies


def reply_position(text: str) -> float:
    m = re.search(r"now \w+ at (-?[\d.]+)", text)
    assert m, text
    return float(m.group(1))


async def stop_recording(c: Any, transfer: Any, sink: FileSink, out: str) -> None:
    """ABOR the RETR (it ends with 426) and keep what arrived, up to its last whole picture."""
    await c.abort()
    with pytest.raises(CommandFailed):
        await transfer
    sink.file.close()
    cut_at_last_picture(out)


async def record(reactor: Any, server: Any, path: str, type_: str, mode: str, out: str) -> tuple[list, Any]:
    c = await connect(reactor, "127.0.0.1", server.port)
    await c.type(type_)
    await c.mode(mode)
    sink = FileSink(out)
    transfer = c.retrieve(path, sink)
    await sleep(reactor, 1.0)
    replies = await drive(reactor, c)
    status = await c.tapeStatus()
    await stop_recording(c, transfer, sink, out)
    await c.quit()
    return replies, status


def check_trick_play(out: str, pictures: dict[str, float], replies: list[tuple[str, str]],
                     as_stored: int = 0) -> list[Run]:
    """What a viewer of the recording sees: one valid stream, every picture one of the
    clip's, the programme at its real rate, I-frames only while shuttling at about 5x
    forward and back, a held picture while paused, and each PLAY starting within a GOP of
    where the deck was (and of what ``ffmpeg -ss`` decodes there)."""
    assert_one_valid_stream(out, as_stored)
    found = frames(out)
    for f in found:
        f.pos = pictures.get(f.checksum)
    unknown = [f for f in found if f.pos is None]
    assert not unknown, f"{len(unknown)} of {len(found)} pictures are not the clip's (damaged or from nowhere)"
    rs = runs(found)
    summary = [(r.kind, len(r.frames), r.frames[0].pos, r.frames[-1].pos) for r in rs]
    shuttles = [r for r in rs if r.kind == "shuttle" and len(r.frames) >= 5]
    assert len(shuttles) == 2, summary
    ff, rew = shuttles
    assert all(f.kind == "I" for r in shuttles for f in r.frames)
    assert ff.span > 0.9 and rew.span > 0.9, summary
    assert 3.5 < ff.slope < 6.5, (ff.slope, summary)         # FF 5: the picture moves 5 s a second
    assert -6.5 < rew.slope < -3.5, (rew.slope, summary)     # FF -5: back as fast
    held = [r for r in rs if r.kind == "still" and r.span >= 0.9 and rs.index(ff) < rs.index(r) < rs.index(rew)]
    assert len(held) == 1, summary                           # PAUS: one picture, held
    for r in rs:
        if r.kind == "normal":
            for a, b in zip(r.frames, r.frames[1:], strict=False):
                assert abs((b.pos - a.pos) - (b.pts - a.pts)) < 0.002, summary   # speed 1: the real rate
    plays = [reply_position(text) for verb, text in replies if verb == "play"][1:]
    starts = [rs[rs.index(marker) + 1] for marker in (ff, held[0], rew)]
    clip_path = out.replace(".rec.ts", ".src.ts")
    for at, run in zip(plays, starts, strict=True):
        first = run.frames[0]
        assert first.kind == "I" and first.pos is not None
        assert at - GOP - 0.05 <= first.pos <= at + 0.5, (at, first, summary)
        theirs = frames(clip_path, "-ss", f"{at:.3f}")[0]
        assert abs(pictures[theirs.checksum] - first.pos) <= GOP + 0.05, (at, first, theirs)
    return rs


TRANSPORTS = [("I M", "S"), ("I M", "P 7"), ("I R 33", "S")]


@pytest.mark.parametrize("type_,mode", TRANSPORTS, ids=["ts-tcp", "ts-udp", "rtp-tcp"])
@pytest.mark.parametrize("path", ["/tape", "/clip.ts"])
@pytest_twisted.ensureDeferred
async def test_trick_play_sends_one_valid_stream(reactor, deck_server, clip, tmp_path, path, type_, mode):
    out = str(tmp_path / "deck.rec.ts")
    shutil.copy(clip[0], str(tmp_path / "deck.src.ts"))
    replies, status = await record(reactor, deck_server, path, type_, mode, out)
    assert [verb for verb, _ in replies] == [s[0] for s in SCRIPT]
    # A stored clip is sent as it is stored until the first command (1 s, at its 1.5 Mbit/s)
    check_trick_play(out, clip[1], replies, as_stored=1_500_000 // 8 * 3 // 2 if path == "/clip.ts" else 0)
    # TSTA while the tape is sent: the position of the picture going out, which lags the
    # deck by what is on its way (a fifth of a second read ahead, the decoder's delay)
    last = reply_position(replies[-1][1]) + HOLD
    assert status.operation == "PLAY" and last - 1.6 < status.position <= last + 0.1, (status, last)


@pytest_twisted.ensureDeferred
async def test_gstreamer_demuxes_the_tape_sent_as_rtp_over_udp(reactor, deck_server, clip, tmp_path):
    """GStreamer's tsdemux reads the deck's stream through every command; the video it
    demuxes decodes without an error."""
    assert GST, "gst-launch-1.0 is needed (.ci/run installs GStreamer)"
    from tests.interop.test_media_peers import free_port
    port = free_port("udp")
    video = str(tmp_path / "video.m2v")
    caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=MP2T,payload=33"
    gst = Process(reactor, [GST, "-e", "-q", "udpsrc", "address=127.0.0.1", f"port={port}", f"caps={caps}", "!",
                            "rtpjitterbuffer", "latency=200", "!", "rtpmp2tdepay", "!", "tsdemux", "!",
                            "mpegvideoparse", "!", "filesink", f"location={video}"])
    try:
        await sleep(reactor, 0.5)
        c = await connect(reactor, "127.0.0.1", deck_server.port)
        await c.type("I R 33")
        await c.mode("P 1")                                  # one RTP packet per datagram
        transfer = c.streamTo("/tape", "127.0.0.1", port)
        await sleep(reactor, 1.0)
        await drive(reactor, c)
        await c.abort()
        with pytest.raises(CommandFailed):
            await transfer
        await sleep(reactor, 0.5)
    finally:
        gst.transport.signalProcess("INT")            # gst-launch -e: EOS, the file is finished
        code = await gst.ended
    assert code == 0, gst.err.decode()
    data = open(video, "rb").read()                   # (stopped mid-GOP: up to the last whole one)
    with open(video, "wb") as f:
        f.write(data[:data.rfind(b"\x00\x00\x01\xb3")])
    r = subprocess.run([FFMPEG, "-v", "error", "-i", video, "-f", "null", "-"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    demuxed = frames(video)
    assert len(demuxed) > 100
    assert {f.checksum for f in demuxed} <= set(clip[1])      # every picture is the clip's


@pytest_twisted.ensureDeferred
async def test_reco_records_a_stor_onto_the_tape_at_the_position(reactor, deck_server, tmp_path):
    """RECO, then STOR /tape: what arrives is on the tape from where the recording began;
    played back from there, the pictures are the recording's."""
    other = _clip(str(tmp_path / "bars.ts"), 4, "testsrc2")
    recorded = picture_map(other)
    c = await connect(reactor, "127.0.0.1", deck_server.port)
    await c.type("I M")
    with pytest.raises(CommandFailed) as refused:
        await c.store("/tape", FileMediaSource(other))
    assert refused.value.code == 550 and "RECO" in str(refused.value)
    await c.fastForward(100, 64)
    while (await c.tapeStatus()).operation != "PAUS":
        await sleep(reactor, 0.1)
    reply = await c.record()
    assert reply.code == 200 and "now RECO at 100" in reply.text
    # What a decoder cannot start from, or another programme than the tape's, is not laid on it
    tape = deck_server.factory.portal.realm.store.tape
    audio = str(tmp_path / "audio.ts")
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine", "-t", "2", "-c:a", "mp2", audio], check=True)
    pids = str(tmp_path / "pids.ts")
    subprocess.run([FFMPEG, "-v", "error", "-i", other, "-c", "copy", "-mpegts_pmt_start_pid", "0x200",
                    "-mpegts_start_pid", "0x300", pids], check=True)
    for bad, why in ((audio, "no video"), (pids, "not the tape's")):
        with pytest.raises(CommandFailed) as refused:
            await c.store("/tape", FileMediaSource(bad))
        assert refused.value.code == 451 and why in str(refused.value), str(refused.value)
    assert tape.recordings == []
    r = await c.store("/tape", FileMediaSource(other))
    assert r.code == 226 and len(tape.recordings) == 1
    await c.pause()
    await c.fastForward(100, -64)
    while (await c.tapeStatus()).operation != "PAUS":
        await sleep(reactor, 0.1)
    out = str(tmp_path / "played.ts")
    sink = FileSink(out)
    transfer = c.retrieve("/tape", sink)
    await c.play()
    await sleep(reactor, 3.0)
    status = await c.tapeStatus()
    await stop_recording(c, transfer, sink, out)
    assert status.operation == "PLAY" and Decimal(100) < status.position < Decimal(104)
    assert_one_valid_stream(out)
    shown = frames(out)
    ours = [f for f in shown if f.checksum in recorded]
    assert len(ours) > 0.8 * len(shown) and len(ours) > 40    # the held frame at 100 and the recording
    positions = [recorded[f.checksum] for f in ours]
    assert min(positions) <= GOP and max(positions) > 1.5     # from its start, played on


@pytest_twisted.ensureDeferred
async def test_a_stored_ts_that_is_no_tape_plays_on_and_says_so(reactor, deck_server, tmp_path):
    """A stored TS with no video RETRieved in TYPE I M: TSTA still answers (as the draft
    says it always does), FF is refused with 550 and a reason, and the clip plays to its end."""
    audio = os.path.join(deck_server.root, "audio.ts")
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine", "-t", "2", "-c:a", "mp2", audio], check=True)
    c = await connect(reactor, "127.0.0.1", deck_server.port)
    await c.type("I M")
    sink = FileSink(str(tmp_path / "audio.rec.ts"))
    transfer = c.retrieve("/audio.ts", sink)
    await sleep(reactor, 0.5)
    status = await c.tapeStatus()
    assert status.operation == "PLAY" and Decimal(0) < status.position < Decimal(2)
    with pytest.raises(CommandFailed) as refused:
        await c.fastForward(10, 5)
    assert refused.value.code == 550 and "cannot be played as a tape" in str(refused.value)
    reply = await c.noop()                                  # replies in order, the session goes on
    assert reply.code == 200
    done = await transfer
    assert done.code == 226
    sink.file.close()
    assert open(str(tmp_path / "audio.rec.ts"), "rb").read() == open(audio, "rb").read()
    await c.quit()
