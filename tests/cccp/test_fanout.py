"""The pure fan-out (cccp.wire.fanout): where a viewer of a shared TS starts, where a
viewer that falls behind stops and starts again, and that what each viewer is sent is
one valid stream: PAT and PMT first, an I-frame first, no PES cut, continuity counters
running on across its gaps."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cccp.wire.fanout import MAX_BEHIND, RTPGate, TSGate, TSTee, rtp_starts_frame
from cccp.wire.media import NULL_PID, TS_PACKET, sample_clip_path, ts_pid
from cccp.wire.ts import Programme, Splicer, has_payload, pusi, starts_picture

CLIP = open(sample_clip_path() or "", "rb").read()
CHUNK = 188 * 40


def looped(loops: int) -> bytes:
    """The sample clip played *loops* times as one live stream (as the looping source does)."""
    s = Splicer()
    out = b""
    for _ in range(loops):
        out += s.feed(CLIP)
        s.splice(complete=True)
    return out + s.flush()


SAMPLE = looped(1)
LONG = looped(40)


def stream(loops: int = 2) -> list[bytes]:
    data = LONG[:len(SAMPLE) * loops]
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


def check_counters(out: bytes) -> None:
    seen: dict[int, int] = {}
    for i in range(0, len(out), TS_PACKET):
        p = out[i:i + TS_PACKET]
        pid = ts_pid(p)
        if pid in seen:
            step = 1 if has_payload(p) else 0
            assert p[3] & 0x0F == (seen[pid] + step) & 0x0F, f"continuity of PID {pid:#x} broken at packet {i // 188}"
        seen[pid] = p[3] & 0x0F


def check_valid(out: bytes) -> dict[str, Any]:
    """Assert what a decoder needs of a viewer's stream; what was found."""
    assert len(out) % TS_PACKET == 0
    prog = Programme()
    seen: dict[int, int] = {}
    first_video = None
    order = []
    for i in range(0, len(out), TS_PACKET):
        p = out[i:i + TS_PACKET]
        pid = ts_pid(p)
        if pid == NULL_PID:
            continue
        prog.see(p)
        if pid not in seen:
            order.append(pid)
            # every PID begins at a PES or section start: nothing half
            assert pusi(p), f"PID {pid:#x} starts in the middle of a PES"
            if pid == prog.video_pid:
                first_video = starts_picture(p, prog.video_type)
        else:
            step = 1 if has_payload(p) else 0
            assert p[3] & 0x0F == (seen[pid] + step) & 0x0F, f"continuity of PID {pid:#x} broken at packet {i // 188}"
        seen[pid] = p[3] & 0x0F
    return {"order": order, "first_video_is_i": first_video, "video": prog.video_pid}


def test_tee_splits_at_i_frames_and_keeps_the_programme():
    tee = TSTee()
    runs = [r for chunk in stream(1) for r in tee.feed(chunk)]
    assert b"".join(r.data for r in runs) == SAMPLE
    raps = [r for r in runs if r.rap]
    assert len(raps) == tee.random_access_points > 3
    prog = tee.programme
    for r in raps:
        assert ts_pid(r.data[:188]) == prog.video_pid and starts_picture(r.data[:188], prog.video_type)
        assert [ts_pid(p) for p in r.psi] == [0, prog.pmt_pid]


def test_a_late_joiner_starts_with_the_programme_and_an_i_frame():
    tee = TSTee()
    chunks = stream()
    for c in chunks[:7]:                            # the stream runs a while first
        tee.feed(c)
    gate = TSGate(tee)
    out = b"".join(gate.feed(r) for c in chunks[7:] for r in tee.feed(c))
    found = check_valid(out)
    assert found["order"][:2] == [0, tee.programme.pmt_pid]
    assert found["order"][2] == found["video"] and found["first_video_is_i"]
    assert gate.dropped == 0                         # joining late is not missing anything


def test_a_viewer_from_the_start_gets_everything_as_it_is():
    tee = TSTee()
    gate = TSGate(tee)
    chunks = stream()
    out = b"".join(gate.feed(r) for c in chunks for r in tee.feed(c))
    data = b"".join(chunks)
    first = data.index(next(r.data for r in TSTee().feed(data) if r.rap))
    assert out.endswith(data[first:])               # everything from the first I-frame on, unchanged


def test_a_viewer_behind_misses_whole_gops_and_its_counters_run_on():
    tee = TSTee()
    gate = TSGate(tee)
    out = bytearray()
    raps_seen = 0
    for c in stream(3):
        for r in tee.feed(c):
            if r.rap:
                raps_seen += 1
                gate.behind = raps_seen in (3, 4, 8)       # behind twice
            out += gate.feed(r)
    check_valid(bytes(out))
    assert gate.gaps == 2 and gate.dropped > 0
    # what it got (less the PAT and PMT sent at each start) and what it missed: no more than all
    assert len(out) // TS_PACKET - 2 * (gate.gaps + 1) + gate.dropped <= tee.packets


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=80), st.integers(1, 30))
def test_any_pattern_of_falling_behind_leaves_a_valid_stream(pattern, chunk_packets):
    tee = TSTee()
    gate = TSGate(tee)
    data = LONG[:2 * len(SAMPLE)]
    size = chunk_packets * TS_PACKET
    out = bytearray()
    for n, i in enumerate(range(0, len(data), size)):
        gate.behind = pattern[n % len(pattern)]
        for r in tee.feed(data[i:i + size]):
            out += gate.feed(r)
    if out:
        check_valid(bytes(out))


@pytest.mark.parametrize("per_feed", [1, 10, 100])
def test_a_viewer_behind_through_a_very_long_gop_is_cut_at_the_cap(per_feed):
    """No random access point comes while it is behind (a source whose GOP never ends): it
    is cut once MAX_BEHIND went out, and what it gets after it catches up runs on."""
    tee = TSTee()
    gate = TSGate(tee)
    chunks = stream(40)
    out = bytearray()
    for r in tee.feed(chunks[0]):
        out += gate.feed(r)
    gate.behind = True
    sent = 0
    rest = chunks[1:]
    cut_at = (MAX_BEHIND + 40 * CHUNK) // CHUNK
    for n in range(0, cut_at, per_feed):
        for r in tee.feed(b"".join(rest[n:n + per_feed])):
            r.rap = False
            got = gate.feed(r)
            sent += len(got)
            out += got
    assert sent <= MAX_BEHIND + per_feed * CHUNK and gate.dropped > 0 and gate.gaps == 1
    gate.behind = False
    for n in range(cut_at, len(rest), per_feed):
        for r in tee.feed(b"".join(rest[n:n + per_feed])):
            out += gate.feed(r)
    assert gate.state == "on"
    # counters run on across the cut (the PES it cut short are the price of the cap)
    check_counters(bytes(out))


# -- RTP made by the encoder ----------------------------------------------------------------

def rtp(pt: int, payload_header: bytes, seq: int = 0) -> bytes:
    return bytes([0x80, pt, seq >> 8, seq & 0xFF]) + b"\0" * 8 + payload_header + b"x" * 100


def test_rtp_frame_starts_by_payload_type():
    assert rtp_starts_frame(rtp(32, b"\x00\x00\x20\x01"))       # MPV with a sequence header
    assert not rtp_starts_frame(rtp(32, b"\x00\x00\x10\x02"))   # a P picture's slice
    assert rtp_starts_frame(rtp(26, b"\x00\x00\x00\x00"))       # JPEG fragment offset 0
    assert not rtp_starts_frame(rtp(26, b"\x00\x00\x05\x78"))
    assert rtp_starts_frame(rtp(14, b"\x00\x00\x00\x00"))       # MPA offset 0
    assert not rtp_starts_frame(rtp(14, b"\x00\x00\x01\x00"))


def test_rtp_viewer_starts_and_stops_at_frame_starts():
    gate = RTPGate()
    start, middle = rtp(26, b"\x00\x00\x00\x00"), rtp(26, b"\x00\x00\x05\x78")
    assert gate.feed(middle) == b""                  # joining: wait for a frame
    assert gate.feed(start) == start and gate.feed(middle) == middle
    gate.behind = True
    assert gate.feed(middle) == middle               # the frame in progress is finished
    assert gate.feed(start) == b"" and gate.feed(middle) == b""
    gate.behind = False
    assert gate.feed(middle) == b""
    assert gate.feed(start) == start
    assert gate.dropped == 3 and gate.gaps == 1


# -- the glue: one source for every viewer, on a fake clock ---------------------------------

class FakeSource:
    """A live source that counts its starts and stops."""

    started = 0
    stopped = 0

    def __init__(self) -> None:
        from twisted.internet import defer
        self.done = defer.Deferred()
        self.consumer: Any = None

    def startProducing(self, consumer: Any) -> Any:
        FakeSource.started += 1
        self.consumer = consumer
        return self.done

    def stopProducing(self) -> None:
        FakeSource.stopped += 1
        if not self.done.called:
            self.done.callback(None)


class Sink:
    def __init__(self) -> None:
        self.data = b""
        self.producer: Any = None

    def registerProducer(self, p: Any, streaming: bool) -> None:
        self.producer = p

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.data += data


def test_a_source_runs_once_for_its_viewers_and_stops_after_the_delay():
    from twisted.internet import task

    from cccp.devices.fanout import LiveSources
    FakeSource.started = FakeSource.stopped = 0
    clock = task.Clock()
    live = LiveSources(clock, close_after=5.0)
    a, b = (live.open("testpattern", 33, FakeSource, rtp_input=False) for _ in range(2))
    assert live.tees == {} and FakeSource.started == 0     # nothing starts before a data connection
    a.startProducing(Sink())
    b.startProducing(Sink())
    assert FakeSource.started == 1 and len(live.tees) == 1
    a.stopProducing()
    b.stopProducing()
    clock.advance(4.9)
    assert FakeSource.stopped == 0                          # within the delay
    c = live.open("testpattern", 33, FakeSource, rtp_input=False)
    clock.advance(1.0)                                      # the delay ends before c's data connection
    assert FakeSource.stopped == 1 and live.tees == {}
    sink = Sink()
    c.startProducing(sink)                                  # a new source, known to LiveSources
    assert FakeSource.started == 2 and len(live.tees) == 1
    c.stopProducing()
    clock.advance(5.0)
    assert FakeSource.stopped == 2 and live.tees == {}
    live.close()


def test_a_source_that_fails_ends_its_viewers_with_the_failure_and_is_not_kept():
    from twisted.internet import task

    from cccp.devices.fanout import LiveSources
    clock = task.Clock()
    live = LiveSources(clock, close_after=5.0)
    made: list[FakeSource] = []

    def make() -> FakeSource:
        made.append(FakeSource())
        return made[-1]
    v = live.open("v4l2", 33, make, rtp_input=False)
    d = v.startProducing(Sink())
    failures: list[Any] = []
    d.addErrback(failures.append)
    made[0].done.errback(RuntimeError("the camera is gone"))
    assert failures and "the camera is gone" in str(failures[0].value)
    assert live.tees == {}
