"""MPEG2-TS editing (cccp.wire.ts): the index of a clip, and a splicer whose output stays
one valid stream across any jumps. Hypothesis cuts clips anywhere; ffmpeg and tshark
read what comes out."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from typing import Any

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cccp.wire.media import NULL_PID, TS_PACKET, ts_pcr, ts_pid
from cccp.wire.ts import (
    PCR_WRAP,
    Splicer,
    TSError,
    TSIndexer,
    has_payload,
    packets,
    pes_timestamps,
    pusi,
    set_pcr,
    shift_timestamps,
    starts_picture,
)

FFMPEG = shutil.which("ffmpeg")
TSHARK = shutil.which("tshark")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: Any) -> bytes:
    """8 s of MPEG-2 video (GOP 12 at 25 fps) and MP2 audio, with null packets (muxrate)."""
    assert FFMPEG, "ffmpeg is needed (.ci/run installs it)"
    path = tmp_path_factory.mktemp("ts") / "clip.ts"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "8",
                    "-c:v", "mpeg2video", "-g", "12", "-b:v", "800k", "-c:a", "mp2", "-b:a", "96k",
                    "-f", "mpegts", "-muxrate", "1500k", str(path)], check=True, timeout=120)
    return path.read_bytes()


def index_of(data: bytes, chunk: int = 4096) -> Any:
    ix = TSIndexer()
    for i in range(0, len(data), chunk):
        ix.feed(data[i:i + chunk])
    return ix.finish()


def test_the_index_finds_every_i_frame_and_maps_seconds_to_them(clip):
    x = index_of(clip, chunk=1000)                       # chunks that cut packets
    assert x.programme.video_type == 2 and x.programme.video_pid is not None
    assert len(x) == 17                                   # 8 s / (12 frames at 25 fps), rounded up
    assert list(x.offsets) == sorted(x.offsets) and all(o % TS_PACKET == 0 for o in x.offsets)
    for i in range(len(x)):
        p = clip[x.offsets[i]:x.offsets[i] + TS_PACKET]
        assert ts_pid(p) == x.programme.video_pid and pusi(p) and starts_picture(p, 2)
        assert pes_timestamps(p)[0] == x.pts[i]
    assert [round(x.position(i), 2) for i in range(3)] == [0.0, 0.48, 0.96]
    assert x.seek(0) == 0 and x.seek(0.47) == 0 and x.seek(0.5) == 1 and x.seek(1e9) == len(x) - 1
    assert 7.9 < x.duration <= 8.0
    assert x.span(len(x) - 1)[1] == len(clip)
    assert index_of(clip, chunk=len(clip)).offsets == x.offsets      # the same whatever the chunks


def test_the_index_refuses_what_is_not_ts():
    with pytest.raises(TSError, match="sync"):
        TSIndexer().feed(b"\x00" * (TS_PACKET * 2))
    with pytest.raises(TSError, match="video"):
        TSIndexer().finish()


def test_timestamps_round_trip_and_wrap():
    p = bytearray(TS_PACKET)
    p[:4] = bytes([0x47, 0x41, 0x00, 0x30])               # PUSI, PID 0x100, AF + payload
    p[4], p[5] = 7, 0x10                                  # adaptation field with a PCR
    set_pcr(p, PCR_WRAP - 5)
    assert ts_pcr(p) == PCR_WRAP - 5
    p[12:12 + 19] = bytes.fromhex("000001e0 0000 80c00a 3100010001 1100010001")
    assert pes_timestamps(p) == (0, 0)
    shift_timestamps(p, 300 * 90000 + 10)                 # one second on, the PCR wrapping
    assert ts_pcr(p) == 300 * 90000 + 5
    assert pes_timestamps(p) == (90000, 90000)


def _check_stream(out: bytes) -> None:
    """What any player needs: counters that run on, a PCR that never goes back, no PES
    continued without its start, the PAT and PMT first after each splice, no nulls."""
    cc: dict[int, int] = {}
    started: set[int] = set()
    last_pcr = None
    for p in packets(out):
        pid = ts_pid(p)
        assert pid != NULL_PID
        if has_payload(p):
            if pid in cc:
                assert p[3] & 0x0F == (cc[pid] + 1) & 0x0F, f"PID 0x{pid:X} skips a counter"
            cc[pid] = p[3] & 0x0F
            if pusi(p):
                started.add(pid)
            assert pid in started or pid in (0, 0x1000), f"PID 0x{pid:X} continues a PES it never began"
        pcr = ts_pcr(p)
        if pcr is not None:
            if last_pcr is not None:
                assert 0 < (pcr - last_pcr) % PCR_WRAP < PCR_WRAP // 2, "the PCR went back"
            last_pcr = pcr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10 ** 9), st.integers(1, 400)), min_size=1, max_size=8),
       st.integers(1, 7000))
def test_any_pieces_of_any_lengths_splice_into_one_valid_stream(clip, pieces, chunk):
    n = len(clip) // TS_PACKET
    s = Splicer()
    out = b""
    for k, (start, length) in enumerate(pieces):
        if k:
            s.splice()
        first = start % n
        piece = clip[first * TS_PACKET:(first + length) * TS_PACKET]
        for i in range(0, len(piece), chunk):
            out += s.feed(piece[i:i + chunk])
    out += s.flush()
    _check_stream(out)


def test_without_a_splice_the_stream_goes_through_unchanged_but_for_the_nulls(clip):
    s = Splicer()
    out = s.feed(clip) + s.flush()
    wanted = b"".join(bytes(p) for p in packets(clip) if ts_pid(p) != NULL_PID)
    assert out == wanted


def test_after_a_splice_the_pat_and_pmt_come_first_and_the_timeline_runs_on(clip):
    x = index_of(clip)
    s = Splicer()
    a = s.feed(clip[:x.offsets[2]])
    s.splice(complete={x.programme.video_pid})
    b = s.feed(clip[x.offsets[10]:x.offsets[12]]) + s.flush()
    out = list(packets(a + b))
    last, jumps = None, []
    for i, p in enumerate(out):
        pcr = ts_pcr(p)
        if pcr is not None:
            if last is not None and pcr - last == s.gap:
                jumps.append(i)
            last = pcr
    # The new piece (an access point with a PCR) comes right after the PAT and PMT copies,
    # its PCR placed exactly *gap* after the last one sent (not 4 s on, where it was).
    assert len(jumps) == 1 and [ts_pid(p) for p in out[jumps[0] - 2:jumps[0]]] == [0, x.programme.pmt_pid]
    assert s.dropped > 0                                         # the audio PES cut at the jump


def _jumpy(clip: bytes) -> bytes:
    """Play 2 s, jump forward to 6 s, back to 1 s, loop round: spliced at access points."""
    x = index_of(clip)
    s = Splicer()
    out = []
    for k, (a, b) in enumerate([(0.0, 2.0), (6.0, 8.0), (1.0, 3.0), (0.0, 1.0)]):
        if k:
            s.splice(complete={x.programme.video_pid})       # cut at the next access point
        lo, hi = x.offsets[x.seek(a)], x.span(x.seek(b) - 1)[1]
        out.append(s.feed(clip[lo:hi]))
    out.append(s.flush())
    return b"".join(out)


def test_ffmpeg_decodes_a_jumpy_edit_without_one_error(clip, tmp_path):
    edit = _jumpy(clip)
    _check_stream(edit)
    pcrs = [ts_pcr(p) for p in packets(edit) if ts_pcr(p) is not None]
    steps = [b - a for a, b in itertools.pairwise(pcrs)]
    assert max(steps) <= 27_000_000 // 10                     # no jump in the timeline anywhere
    rec = tmp_path / "edit.ts"
    rec.write_bytes(edit)
    r = subprocess.run([FFMPEG, "-v", "error", "-i", str(rec), "-f", "null", "-"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    raw = tmp_path / "raw.ts"                 # the same cuts without the splicer: broken
    x = index_of(clip)
    raw.write_bytes(clip[:x.offsets[x.seek(2.0)] + 4 * TS_PACKET] + clip[x.offsets[x.seek(6.0)] + 7 * TS_PACKET:])
    r = subprocess.run([FFMPEG, "-v", "error", "-i", str(raw), "-f", "null", "-"], capture_output=True, text=True)
    assert r.stderr != ""                     # (the test can fail: a plain cut is not clean)


def test_tshark_finds_no_continuity_fault_in_the_edit(clip, tmp_path):
    assert TSHARK, "tshark is needed (.ci/run installs it)"
    rec = tmp_path / "edit.ts"
    rec.write_bytes(_jumpy(clip))
    r = subprocess.run([TSHARK, "-r", str(rec), "-q", "-z", "expert"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "MPEG TS" in subprocess.run([TSHARK, "-r", str(rec), "-c", "3"], capture_output=True, text=True).stdout
    assert "missing TS frames" not in r.stdout and "Errors" not in r.stdout, r.stdout
    cut = tmp_path / "cut.ts"                 # a plain cut: tshark does see it
    cut.write_bytes(clip[:TS_PACKET * 500] + clip[TS_PACKET * 520:])
    r = subprocess.run([TSHARK, "-r", str(cut), "-q", "-z", "expert"], capture_output=True, text=True, timeout=120)
    assert "missing TS frames" in r.stdout


def test_the_looping_source_is_one_stream_across_its_loops(clip, tmp_path):
    """The built-in live source (a clip looped) splices each loop onto the last."""
    from cccp.devices.live import LoopingFileSource
    path = tmp_path / "loop.ts"
    path.write_bytes(clip)

    class Sink:
        def __init__(self) -> None:
            self.data: list[bytes] = []

        def registerProducer(self, producer: Any, streaming: bool) -> None:
            pass

        def write(self, data: bytes) -> None:
            self.data.append(data)

    sink = Sink()
    source = LoopingFileSource(str(path))
    source.startProducing(sink)
    while source.loops < 3:
        source.resumeProducing()
    source.stopProducing()
    out = b"".join(sink.data)
    _check_stream(out)
    assert len(out) > 2.5 * len(b"".join(bytes(p) for p in packets(clip) if ts_pid(p) != NULL_PID)) * 0.9
    rec = tmp_path / "looped.ts"
    rec.write_bytes(out)
    r = subprocess.run([FFMPEG, "-v", "error", "-i", str(rec), "-f", "null", "-"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(rec)],
                       capture_output=True, text=True)
    assert float(r.stdout) > 20                   # three loops of 8 s on one timeline, not 8 s thrice


@pytest_twisted.ensureDeferred
async def test_a_live_encoder_that_fails_is_started_again_and_spliced_on(reactor, clip, tmp_path):
    """An encoder that dies mid-stream is started again, and what it sends next goes on
    from what went before (counters, PCR, timestamps): one stream to the viewer. A crash
    loop ends the transfer with a clear error."""
    from twisted.internet import task

    from cccp.devices.live import EncoderSource
    from cccp.wire.errors import FileUnavailable
    path = tmp_path / "clip.ts"
    path.write_bytes(clip[:len(clip) // 2 // TS_PACKET * TS_PACKET])
    fake = tmp_path / "encoder"
    fake.write_text(f"#!/bin/sh\ncat {path}\nexit 3\n")      # a clip, then it fails
    fake.chmod(0o755)

    from cccp.client import _Collect
    sink = _Collect()
    source = EncoderSource(reactor, [], executable=str(fake), restarts=2)
    source.RESTART_AFTER = 0.05
    done = source.startProducing(sink)
    with pytest.raises(FileUnavailable) as failed:
        await done                                           # three runs, then it gives up
    assert "the encoder failed (3)" in str(failed.value)
    assert source.restarted == 2
    out = sink.value()
    _check_stream(out)
    rec = tmp_path / "restarted.ts"
    rec.write_bytes(out)
    r = subprocess.run([FFMPEG, "-v", "error", "-i", str(rec), "-f", "null", "-"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(rec)],
                       capture_output=True, text=True)
    assert float(r.stdout) > 10                # three runs of 4 s on one timeline
    await task.deferLater(reactor, 0, lambda: None)
