"""Trick play, pure (cccp.wire.tape): any motion of the deck, any time, gives one valid
stream; the tape's layout (a clip repeated, recordings laid over it); going on from a
clip sent as it is. Hypothesis drives the deck; ffmpeg and tshark read the output."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cccp.wire.media import NULL_PID, PCR_HZ, TS_PACKET, ts_pcr, ts_pid
from cccp.wire.tape import Motion, Tape, TapeClip, TrickPlayer
from cccp.wire.ts import PTS_WRAP, TSIndexer, packets, pes_timestamps, pusi

from .test_ts import _check_stream

FFMPEG = shutil.which("ffmpeg")
TSHARK = shutil.which("tshark")


@pytest.fixture(scope="module")
def bclip(tmp_path_factory: Any) -> bytes:
    """8 s of MPEG-2 with B-frames (GOP 12) and MP2, padded to a constant 1.5 Mbit/s."""
    assert FFMPEG, "ffmpeg is needed (.ci/run installs it)"
    path = tmp_path_factory.mktemp("tape") / "b.ts"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "8",
                    "-c:v", "mpeg2video", "-g", "12", "-bf", "2", "-b:v", "800k", "-c:a", "mp2", "-b:a", "96k",
                    "-f", "mpegts", "-muxrate", "1500k", str(path)], check=True, timeout=120)
    return path.read_bytes()


def clip_of(data: bytes) -> TapeClip:
    ix = TSIndexer()
    ix.feed(data)
    return TapeClip(ix.finish(), lambda offset, size: data[offset:offset + size])


def play(tape: Tape, script: list[tuple[float, str, float]], player: TrickPlayer | None = None,
         start: float = 0.0) -> bytes:
    """What the player sends while a deck follows *script*: (seconds, operation, speed)
    from position *start*, in output time."""
    player = player or TrickPlayer(tape)
    total = sum(s for s, _, _ in script)
    begin = player.time

    def motion(t: float) -> Motion:
        t = max(0.0, t - begin)
        pos = start
        for seconds, op, speed in script:
            if t < seconds:
                return Motion(op, max(0.0, min(tape.length, pos + speed * t)), speed)
            pos = max(0.0, min(tape.length, pos + speed * seconds))
            t -= seconds
        return Motion("PAUS", pos, 0.0)
    out = []
    while player.time - begin < total:
        piece = player.produce(motion)
        assert piece and len(piece) % TS_PACKET == 0
        out.append(piece)
    return b"".join(out)


def without_nulls(data: bytes) -> bytes:
    return b"".join(bytes(p) for p in packets(data) if ts_pid(p) != NULL_PID)


def check_timeline(out: bytes) -> None:
    """Counters, PES starts, PCR (never back, never more than 0.1 s apart) and the video's
    decoding times (always forward)."""
    _check_stream(out)
    from cccp.wire.ts import Programme
    prog = Programme()
    last_pcr = last_dts = None
    for p in packets(out):
        prog.see(p)
        pcr = ts_pcr(p)
        if pcr is not None:
            if last_pcr is not None:
                assert (pcr - last_pcr) <= PCR_HZ // 10, "the PCR stopped for more than 0.1 s"
            last_pcr = pcr
        if ts_pid(p) == prog.video_pid and pusi(p):
            pts, dts = pes_timestamps(p)
            if pts is not None:
                dts = pts if dts is None else dts
                if last_dts is not None:
                    assert 0 < (dts - last_dts) % PTS_WRAP < PTS_WRAP // 2, "a picture decoded before the last one"
                last_dts = dts


def test_the_tape_repeats_its_clip_and_recordings_overwrite_it(bclip):
    clip = clip_of(bclip)
    assert clip.length == pytest.approx(8.0, abs=0.05)
    tape = Tape(clip, 100)
    place = tape.locate(17.0)
    assert place.clip is clip and place.clip_pos == pytest.approx(1.0) and place.origin == pytest.approx(16.0)
    other = clip_of(bclip)
    assert tape.lay(20.0, other) == (20.0, pytest.approx(28.0))
    assert tape.locate(19.0).end == pytest.approx(20.0)        # the base stops where the recording begins
    assert tape.locate(21.0).clip is other and tape.locate(21.0).clip_pos == pytest.approx(1.0)
    tape.lay(24.0, clip_of(bclip))                             # over the second half of the first one
    starts = [(round(s, 3), round(e, 3), round(cs, 3)) for s, e, _, cs in tape.recordings]
    assert starts == [(20.0, 24.0, 0.0), (24.0, 32.0, 0.0)]
    tape.lay(22.0, clip_of(bclip[:len(bclip) // 4 // TS_PACKET * TS_PACKET]))  # a short one inside
    assert [round(s, 3) for s, _, _, _ in tape.recordings][:2] == [20.0, 22.0]
    assert tape.recordings[2][3] > 0                           # the rest of the one it cut into goes on
    assert tape.lay(99.0, other) == (99.0, 100.0)              # cut at the tape's end


SCRIPT = [(1.0, "PAUS", 0), (1.5, "PLAY", 1), (1.5, "FF", 5), (1.5, "PLAY", 1), (1.0, "PAUS", 0),
          (1.5, "PLAY", 1), (1.2, "FF", -5), (1.5, "PLAY", 1)]


def test_a_deck_session_decodes_without_an_error_and_tshark_finds_nothing(bclip, tmp_path):
    out = play(Tape(clip_of(bclip), 3600), SCRIPT)
    check_timeline(out)
    rec = tmp_path / "deck.ts"
    rec.write_bytes(out)
    r = subprocess.run([FFMPEG, "-v", "error", "-i", str(rec), "-f", "null", "-"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert TSHARK, "tshark is needed (.ci/run installs it)"
    r = subprocess.run([TSHARK, "-r", str(rec), "-q", "-z", "expert"], capture_output=True, text=True, timeout=120)
    assert "missing TS frames" not in r.stdout and "Error" not in r.stdout, r.stdout


def test_playing_across_the_end_of_the_clip_goes_on_with_its_next_repeat(bclip, tmp_path):
    clip = clip_of(bclip)
    tape = Tape(clip, 3600)
    player = TrickPlayer(tape)
    out = play(tape, [(6.5, "FF", 1.0), (4.0, "PLAY", 1)], player)   # (FF at speed 1: I-frames to 6.5)
    check_timeline(out)
    shown = player.position_at(player.time)
    assert 8.0 < shown < 11.5                                  # past the clip's 8 s, on the tape
    rec = tmp_path / "loop.ts"
    rec.write_bytes(out)
    r = subprocess.run([FFMPEG, "-v", "error", "-i", str(rec), "-f", "null", "-"], capture_output=True, text=True)
    assert r.stderr == "", r.stderr


def test_the_end_of_a_tape_holds_the_last_picture(bclip):
    tape = Tape(clip_of(bclip), loop=False)
    player = TrickPlayer(tape)
    out = play(tape, [(1.0, "FF", 6), (3.0, "PLAY", 1)], player)
    check_timeline(out)
    assert player.at_end
    assert player.position_at(player.time) > 7.0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(0.05, 1.5), st.sampled_from(["PLAY", "FF", "PAUS", "RECO"]),
                          st.sampled_from([1, 1, 1, 2, 5, -1, -5, 0.5, 30, -30])), min_size=1, max_size=7))
def test_any_deck_motion_gives_one_valid_stream(bclip, script):
    script = [(s, op, 0 if op == "PAUS" else speed) for s, op, speed in script]
    tape = Tape(clip_of(bclip), 60)
    player = TrickPlayer(tape)
    out = play(tape, script, player)
    check_timeline(out)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(200, 3000), st.sampled_from(["PLAY", "FF", "PAUS"]))
def test_a_clip_sent_as_it_is_goes_on_through_the_player_without_a_seam(bclip, cut, op):
    """A stored clip goes out as it is until a tape command; the player then carries on its
    counters and timeline, finishing the PESes that went out in part."""
    head = bclip[:cut * TS_PACKET]
    tape = Tape(clip_of(bclip), loop=False)
    player = TrickPlayer(tape)
    player.resume(len(head))
    speed = {"PLAY": 1, "FF": 5, "PAUS": 0}[op]
    rest = play(tape, [(1.0, op, speed)], player, start=player.cursor)
    check_timeline(without_nulls(head) + rest)


def test_resumed_stream_decodes_cleanly(bclip, tmp_path):
    head = bclip[:1234 * TS_PACKET]
    tape = Tape(clip_of(bclip), loop=False)
    player = TrickPlayer(tape)
    player.resume(len(head))
    rec = tmp_path / "resumed.ts"
    rec.write_bytes(head + play(tape, [(1.0, "FF", 4), (1.0, "PAUS", 0), (1.0, "PLAY", 1)], player,
                                start=player.cursor))
    r = subprocess.run([FFMPEG, "-v", "error", "-i", str(rec), "-f", "null", "-"], capture_output=True, text=True)
    assert r.stderr == "", r.stderr


def test_the_first_picture_comes_after_the_pat_and_pmt(bclip):
    out = play(Tape(clip_of(bclip), 60), [(0.5, "PAUS", 0)])
    from cccp.wire.ts import Programme
    prog = Programme()
    for i, p in enumerate(packets(out)):
        if ts_pid(p) == 0:
            prog.see(p)
        elif prog.pmt_pid is not None and ts_pid(p) == prog.pmt_pid:
            assert i == 1
            break
        else:
            raise AssertionError(f"packet {i} (PID {ts_pid(p)}) comes before the PAT and PMT")


def test_play_in_a_long_gop_jumps_once_and_plays_on(tmp_path):
    """A clip with a 4 s GOP, PLAY from 3 s: the programme starts at the I-frame at 0 and
    plays on (it is not re-seeked because it started before the position)."""
    path = tmp_path / "long-gop.ts"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "12",
                    "-c:v", "mpeg2video", "-g", "100", "-b:v", "300k", "-f", "mpegts", str(path)],
                   check=True, timeout=120)
    data = path.read_bytes()
    tape = Tape(clip_of(data), 60)
    player = TrickPlayer(tape)
    out = play(tape, [(3.0, "PLAY", 1)], player, start=3.0)
    check_timeline(out)
    assert player.jumps == 1


def test_a_clip_across_the_33_bit_wrap_is_one_clip_and_plays_cleanly(tmp_path):
    """PTS and PCR wrap at 2^33 / 90 kHz (26.5 h): a clip recorded across it is as long as
    it plays, and a deck session over it decodes without an error."""
    path = tmp_path / "wrap.ts"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "8",
                    "-c:v", "mpeg2video", "-g", "12", "-b:v", "300k", "-output_ts_offset",
                    str((1 << 33) / 90000 - 4), "-f", "mpegts", str(path)], check=True, timeout=120)
    data = path.read_bytes()
    clip = clip_of(data)
    assert clip.length == pytest.approx(8.0, abs=0.05)
    assert [round(clip.index.position(i), 2) for i in range(3)] == [0.0, 0.48, 0.96]
    out = play(Tape(clip, 60), [(1.0, "PLAY", 1), (1.0, "FF", 5), (3.0, "PLAY", 1), (1.0, "FF", -4)])
    check_timeline(out)
    rec = tmp_path / "played.ts"
    rec.write_bytes(out)
    r = subprocess.run([FFMPEG, "-v", "error", "-i", str(rec), "-f", "null", "-"], capture_output=True, text=True)
    assert r.stderr == "", r.stderr


def test_a_file_whose_timestamps_jump_is_not_taken_for_one_clip(bclip):
    from cccp.wire.ts import TSError
    half = len(bclip) // 2 // TS_PACKET * TS_PACKET
    with pytest.raises(TSError, match="timestamps jump"):
        clip_of(bclip[half:] + bclip[:half])              # the second half, then the first


def test_playing_on_at_the_end_of_a_looped_tape_keeps_sending(bclip):
    """Found by Hypothesis in CI: wound to the very end of a looped tape at 30x, PLAY 1
    there ended a stretch in the middle of a PES, and the player had nothing to send."""
    tape = Tape(clip_of(bclip), 60)
    player = TrickPlayer(tape)
    out = play(tape, [(1.0, "PLAY", 30), (1.0, "PLAY", 30), (1.0, "PLAY", 1)], player)
    check_timeline(out)
