"""Trick play, pure: what a tape deck sends at any speed, as one valid MPEG2-TS.

A :class:`Tape` is what is on the tape: indexed clips (:class:`TapeClip`) laid along it in
seconds, a base clip repeated end to end and the recordings laid over it. A
:class:`TrickPlayer` turns the deck's motion into transport stream, one piece per call:

- PLAY (or RECO) at speed 1: the programme from the position, at its own rate, from the
  random access point at or before the position (leading pictures that need what came
  before it are left out);
- any other speed, forward or back, and FF: I-frames only, each the one at the position
  the tape has reached when it is shown, so the picture moves at speed x wall time;
- PAUS: the I-frame at the position, repeated now and then, the clock kept running by
  PCR-only packets in between (no null packets).

Every piece goes through one :class:`~cccp.wire.ts.Splicer` (counters, whole PES only,
PAT/PMT at each jump) on one output timeline the player owns: PCR and PTS never go back,
never jump. :meth:`TrickPlayer.position_at` answers which tape position the picture shown
at an output time comes from: what TSTA reports while the tape is sent.

Bytes in, bytes out: the clip is read through a function the caller gives; the motion
comes from a function of the output time. No I/O, no clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .media import PCR_HZ, TS_PACKET, ts_pcr, ts_pid
from .ts import (
    PCR_PER_PTS,
    PCR_WRAP,
    PTS_WRAP,
    Splicer,
    TSError,
    TSIndex,
    has_payload,
    pcr_packet,
    pes_timestamps,
    pusi,
    set_pes_timestamps,
    shift_timestamps,
    strip_pcr,
)

#: Seconds between the PCRs the player makes itself (trick play, pause).
PCR_STEP = 0.04
#: Largest I-frame read (bytes): beyond it the clip is not one a deck can shuttle.
MAX_FRAME = 8 << 20
#: Seconds a picture's PTS may be ahead of its PCR (and a jump may move the clock on).
MAX_LEAD = 2.0


def _near(value: int, last: int | None, wrap: int) -> int:
    """*value* (modulo *wrap*) taken on the same lap as *last*: a clock that wraps, unwrapped."""
    if last is None:
        return value
    value = last + (value - last) % wrap
    return value - wrap if value - last > wrap // 2 else value


@dataclass(frozen=True)
class Motion:
    """What the deck does at an instant: PLAY, RECO, FF or PAUS, where, how fast."""

    op: str
    position: float
    speed: float = 0.0

    @property
    def normal(self) -> bool:
        """Playing (or recording) forward at normal speed: the whole programme goes out."""
        return self.op in ("PLAY", "RECO") and self.speed == 1


class TapeClip:
    """An indexed clip and how to read it: ``read(offset, size) -> bytes``."""

    def __init__(self, index: TSIndex, read: Callable[[int, int], bytes], name: str = "") -> None:
        if index.programme.video_pid is None:
            raise TSError("no video stream")
        self.index = index
        self.read = read
        self.name = name
        self.length = index.length
        self.video_pid: int = index.programme.video_pid
        pcr_pid = index.programme.pcr_pid
        self.pcr_pid: int = pcr_pid if pcr_pid is not None and pcr_pid != 0x1FFF else self.video_pid

    def position(self, pts: int) -> float:
        """Seconds into the clip of a picture with this PTS."""
        return ((pts - self.index.first_pts) % PTS_WRAP) / 90000


@dataclass(frozen=True)
class Place:
    """Where a tape position falls: in *clip* at *clip_pos* seconds; the clip's start lies at
    *origin* on the tape, and this stretch of it ends at *end* (tape seconds)."""

    clip: TapeClip
    clip_pos: float
    origin: float
    end: float


class Tape:
    """*length* seconds of tape: *base* repeated from 0 (or nothing), recordings over it."""

    def __init__(self, base: TapeClip, length: float | None = None, *, loop: bool = True) -> None:
        self.base = base
        self.loop = loop
        self.length = base.length if length is None else length
        #: (start, end, clip, clip_start): recordings laid on the tape, sorted, disjoint.
        self.recordings: list[tuple[float, float, TapeClip, float]] = []

    def lay(self, start: float, clip: TapeClip) -> tuple[float, float]:
        """Record *clip* onto the tape from *start* (what was there is overwritten); the
        span it occupies (cut at the tape's end)."""
        start = max(0.0, min(start, self.length))
        end = min(self.length, start + clip.length)
        kept: list[tuple[float, float, TapeClip, float]] = []
        for s, e, c, cs in self.recordings:
            if e <= start or s >= end:
                kept.append((s, e, c, cs))
                continue
            if s < start:
                kept.append((s, start, c, cs))
            if e > end:
                kept.append((end, e, c, cs + (end - s)))
        if end > start:
            kept.append((start, end, clip, 0.0))
        self.recordings = sorted(kept, key=lambda r: r[0])
        return start, end

    def locate(self, pos: float) -> Place:
        pos = max(0.0, min(pos, self.length))
        following = self.length
        for s, e, c, cs in self.recordings:
            if s <= pos < e:
                return Place(c, cs + (pos - s), s - cs, e)
            if s > pos:
                following = s
                break
        L = self.base.length
        origin = math.floor(pos / L) * L if self.loop else 0.0
        end = min(following, origin + L)
        return Place(self.base, min(pos - origin, L), origin, max(end, pos))


@dataclass
class _Shown:
    """A span of the output: from output time *at* (s, presentation), the picture of tape
    position *pos*, moving at *rate* tape seconds per second."""

    at: float
    pos: float
    rate: float


class TrickPlayer:
    """The deck's output, one piece per :meth:`produce` call. *motion(t)* is the deck's
    motion when output time *t* (seconds of the output's PCR timeline) goes out.

    :param tolerance: seconds the programme may drift from the deck's position before the
        player jumps (PLAY at speed 1 is not re-seeked while it keeps up).
    :param chunk: bytes read per piece at speed 1.
    :param repeat: seconds between repeats of a still picture (PAUS, a slow shuttle).
    :param max_rate: bits per second an I-frame is sent at, at most (default: twice the
        clip's mean rate); a large I-frame takes longer, and the shuttle shows fewer.
    """

    def __init__(self, tape: Tape, *, tolerance: float = 1.0, chunk: int = TS_PACKET * 64,
                 repeat: float = 0.5, max_rate: float | None = None) -> None:
        self.tape = tape
        self.tolerance = tolerance
        self.chunk = chunk
        self.repeat = repeat
        self.max_rate = max_rate
        self.splicer = Splicer(restamp=False)
        self.pcr = 0                          # the last output PCR (27 MHz, unwrapped)
        self.pts: int | None = None           # the last output video PTS (90 kHz, unwrapped)
        self.dts: int | None = None           # and the last decoding time
        self._shown: deque[_Shown] = deque()
        self._place: Place | None = None      # playing at speed 1 from this place
        self._offset = 0                      # the next byte of its clip
        self._delta = 0                       # input to output shift of this segment (27 MHz)
        self._floor_pts = 0                   # pictures before this (leading B-frames) are left out
        self._skipping: set[int] = set()
        self._cursor = 0.0                    # tape position of the last picture read
        self._lag = 0.0                       # how far the deck was past the access point jumped to
        self._still: tuple[int, int, float] | None = None  # (clip, access point, origin) shown
        self._still_until = 0.0
        self._held = (-1.0, 0.0)              # (deck position, picture position) of a pause
        self._pending = b""                   # output made ahead (see :meth:`resume`)
        self._started = False
        #: The first output PCR (seconds): output time *origin* went out when the stream began.
        self.origin: float | None = None
        self.stills = 0
        self.jumps = 0
        #: Playing at speed 1 reached the end of the tape.
        self.at_end = False

    # -- what is on screen ------------------------------------------------------------
    @property
    def time(self) -> float:
        """Seconds of output made so far (its last PCR)."""
        return self.pcr / PCR_HZ

    @property
    def cursor(self) -> float:
        """The tape position of the last picture read (ahead of the one on screen)."""
        return self._cursor

    def position_at(self, t: float) -> float:
        """The tape position of the picture on screen at output time *t*."""
        shown = self._shown
        while len(shown) > 1 and shown[1].at <= t:
            shown.popleft()
        if not shown:
            return 0.0
        s = shown[0]
        return max(0.0, min(self.tape.length, s.pos + s.rate * max(0.0, t - s.at)))

    def _show(self, at: float, pos: float, rate: float) -> None:
        self._shown.append(_Shown(at, pos, rate))
        if len(self._shown) > 256:
            self._shown.popleft()

    # -- one piece ------------------------------------------------------------------
    def produce(self, motion: Callable[[float], Motion]) -> bytes:
        """The next piece of output (never empty). *motion* is asked for the output time
        the piece goes out at (its PCR): the picture a command asks for goes out as soon as
        the command is known, and is shown one decoder delay later."""
        if self._pending:
            out, self._pending = self._pending, b""
            return out
        for _ in range(64):
            m = motion(self.time)
            out = self._normal(m) if m.normal else self._still_frame(m)
            if self._pending:
                out, self._pending = self._pending + out, b""
            if out:
                return out
            # Nothing whole yet (a stretch that ended in the middle of a PES the splicer
            # holds, the clock packet behind it): the next step gets further.
        raise AssertionError("the trick player made nothing in 64 steps")

    def resume(self, offset: int, window: int = 4 << 20) -> None:
        """Go on from the base clip sent exactly as it is up to byte *offset* (a stored clip
        played from its start is the file itself): its counters, PCR and timestamps run on
        from what the file had there (read back from *offset*, at most *window* bytes)."""
        clip = self.tape.base
        offset -= offset % TS_PACKET
        start = max(0, offset - window)
        start -= start % TS_PACKET
        data = clip.read(start, offset - start)
        counters: dict[int, int] = {}
        pcr = None
        seen: list[int] = []                            # the last pictures' PTS, in decode order
        for i in range(len(data) - TS_PACKET, -1, -TS_PACKET):
            p = data[i:i + TS_PACKET]
            pid = ts_pid(p)
            counters.setdefault(pid, p[3] & 0x0F)
            if pcr is None:
                pcr = ts_pcr(p)
            if pid == clip.video_pid and p[1] & 0x40 and len(seen) < 8:
                found, _ = pes_timestamps(p)
                if found is not None:
                    seen.append(found)
        pts = None
        for found in seen:                              # the latest shown (a B-frame is sent after its P)
            if pts is None or 0 < (found - pts) % PTS_WRAP < PTS_WRAP // 2:
                pts = found
        self._programme(clip)
        prog = self.splicer.programme
        # the PES streams: their last PES went out in part, and goes on in what follows
        streams = [pid for pid in counters if pid >= 0x20 and pid != prog.pmt_pid and pid != 0x1FFF]
        self.splicer.seed(counters, open_pids=streams)
        self._started = True
        first = clip.index.first_pcr if clip.index.first_pcr is not None else 0
        self.origin = first / PCR_HZ
        self.pcr = pcr if pcr is not None else first
        if self.pcr < first:
            self.pcr += PCR_WRAP
        pts = pts if pts is not None else clip.index.first_pts
        self.pts = pts if pts * PCR_PER_PTS >= first - PCR_WRAP // 2 else pts + PTS_WRAP
        self._cursor = clip.position(pts)
        self._place = self.tape.locate(self._cursor)
        self._offset = offset
        self._delta = 0
        self._floor_pts = (pts - 90000 * 60) % PTS_WRAP
        self._show(clip.index.first_pts / 90000, 0.0, 1.0)
        # Finish the PESes that went out in part now, so that no jump has to cut them.
        unfinished = set(streams)
        pending = []
        for _ in range(64):
            data = clip.read(self._offset, self.chunk)
            data = data[:len(data) // TS_PACKET * TS_PACKET]
            if not data:
                break
            self._offset += len(data)
            for i in range(0, len(data), TS_PACKET):
                if data[i + 1] & 0x40:
                    unfinished.discard(ts_pid(data[i:i + 3] + bytes(TS_PACKET - 3)))
            pending.append(self.splicer.feed(self._restamp(clip, data)))
            if not unfinished:
                break
        self._pending = b"".join(pending)

    def _normal(self, m: Motion) -> bytes:
        # (the programme starts at the access point before the position: measured from there)
        if self._place is None or abs(self._cursor + self._lag - m.position) > self.tolerance:
            self._jump_to(m.position)
        place = self._place
        assert place is not None
        clip = place.clip
        if self._offset >= clip.index.size or self._cursor >= place.end:
            # this stretch has played out: on with what follows it on the tape
            at_end = self._offset >= clip.index.size
            nxt = place.origin + clip.length if at_end else place.end
            if nxt >= self.tape.length:
                if not self.at_end:                    # the end of the tape: its last PESes are whole
                    self.at_end = True
                    out = self.splicer.flush()
                    if out:
                        return out
                return self._still_frame(Motion("PAUS", self.tape.length))
            self._jump_to(nxt, complete=at_end)
            assert self._place is not None
            place = self._place
            clip = place.clip
        out = b""
        for _ in range(256):                           # until a whole PES can go out
            data = clip.read(self._offset, self.chunk)
            data = data[:len(data) // TS_PACKET * TS_PACKET]
            if not data:                               # shorter than its index said
                self._offset = clip.index.size
                break
            self._offset += len(data)
            out = self.splicer.feed(self._restamp(clip, data))
            if out or self._cursor >= place.end:
                break
        # (nothing whole yet: the clock runs on, never past what the programme will carry;
        # what is pending goes out in front of it, in produce)
        if out or self._pending:
            return out
        return self._keep_alive(clip)

    def _splice(self, complete: bool = False) -> None:
        self.splicer.splice(complete)          # (the first time too: the PAT and PMT go out first)
        # What was whole goes out now, the rest is gone: the clock goes on from the last PCR
        # that did go out, not from one in a PES that was dropped.
        self._pending += self.splicer.feed(b"")
        last = self.splicer.last_pcr
        if last is not None:
            self.pcr = _near(last, self.pcr, PCR_WRAP)
        self._started = True

    def _programme(self, clip: TapeClip) -> None:
        prog = clip.index.programme
        for raw in (prog.pat_packet, prog.pmt_packet):
            if raw is not None:
                self.splicer.programme.see(raw)

    def _jump_to(self, pos: float, complete: bool = False) -> None:
        """Play at speed 1 from the access point at or before *pos*."""
        self._splice(complete)
        self.jumps += 1
        place = self.tape.locate(pos)
        clip = place.clip
        self._programme(clip)
        ix = clip.index
        i = ix.seek(place.clip_pos)
        ap = ix.point(i)
        delay = int(ix.decode_delay * PCR_HZ)
        pcr_in = ap.pcr if ap.pcr is not None else ap.pts * PCR_PER_PTS - delay
        target = self.pcr + int(PCR_STEP * PCR_HZ)
        frame = int(ix.frame_period * 90000)
        # how far the picture's PTS is ahead of its PCR (and its DTS behind its PTS): taken
        # modulo the wrap and kept sane, whatever the clip's timestamps say
        lead = (ap.pts * PCR_PER_PTS - pcr_in) % PCR_WRAP
        if lead > MAX_LEAD * PCR_HZ:
            lead = delay
        if self.pts is not None:               # the first picture comes after the last one shown
            target = max(target, (self.pts + frame) * PCR_PER_PTS - lead)
        if self.dts is not None:               # and is decoded after the last one decoded
            head = clip.read(ap.offset, TS_PACKET)
            _, ap_dts = pes_timestamps(head) if len(head) == TS_PACKET else (None, None)
            if ap_dts is not None:
                reorder = ((ap.pts - ap_dts) % PTS_WRAP) * PCR_PER_PTS
                if reorder <= MAX_LEAD * PCR_HZ:
                    target = max(target, (self.dts + frame) * PCR_PER_PTS + reorder - lead)
        target = min(target, self.pcr + int(MAX_LEAD * PCR_HZ))
        self._delta = target - pcr_in
        # the clock runs on up to where the programme takes it over (a PCR at least every 0.1 s)
        fill = []
        while target - self.pcr > 2 * int(PCR_STEP * PCR_HZ):
            self.pcr += int(PCR_STEP * PCR_HZ)
            fill.append(pcr_packet(clip.pcr_pid, self.pcr % PCR_WRAP))
        if fill:
            self._pending += self.splicer.feed(b"".join(fill))
        self._place = Place(clip, ix.position(i), place.origin, place.end)
        self._offset = ap.offset
        self._floor_pts = ap.pts
        self._skipping = set()
        self._cursor = place.origin + ix.position(i)
        self._lag = max(0.0, pos - self._cursor)
        self._still = None
        self._show((target + lead) / PCR_HZ, self._cursor, 1.0)

    def _restamp(self, clip: TapeClip, data: bytes) -> bytes:
        """The packets of *data* on the output timeline, without the pictures that come
        before the segment's access point."""
        assert self._place is not None
        vpid = clip.video_pid
        delta = self._delta
        out = []
        for i in range(0, len(data), TS_PACKET):
            p = bytearray(data[i:i + TS_PACKET])
            pid = ts_pid(p)
            if pid == vpid and p[1] & 0x40:
                pts, dts = pes_timestamps(p)
                if pts is not None:
                    if (pts - self._floor_pts) % PTS_WRAP > PTS_WRAP // 2:
                        self._skipping.add(pid)          # a leading picture: its reference is not sent
                        continue
                    self._skipping.discard(pid)
                    # the latest picture read (in decoding order a B-frame comes after its P)
                    self._cursor = max(self._cursor, self._place.origin + clip.position(pts))
                    out_pts = _near((pts * PCR_PER_PTS + delta) // PCR_PER_PTS, self.pts, PTS_WRAP)
                    self.pts = out_pts if self.pts is None else max(self.pts, out_pts)
                    self.dts = _near(((pts if dts is None else dts) * PCR_PER_PTS + delta) // PCR_PER_PTS,
                                     self.dts if self.dts is not None else self.pts, PTS_WRAP)
            elif pid in self._skipping and has_payload(p):
                continue
            pcr = ts_pcr(p)
            if pcr is not None:
                out_pcr = _near(pcr + delta, self.pcr, PCR_WRAP)
                self.pcr = max(self.pcr, out_pcr)
                if self.origin is None:
                    self.origin = out_pcr / PCR_HZ
            shift_timestamps(p, delta)
            out.append(p)
        return b"".join(out)

    # -- a still picture: PAUS and shuttling ---------------------------------------------
    def _still_frame(self, m: Motion) -> bytes:
        pos = m.position
        if m.op == "PAUS":
            if self._place is not None and abs(self._cursor - pos) <= self.tolerance:
                pos = max(pos, self._cursor)       # hold the last picture that went out, not an earlier one
            elif self._still is not None and self._held[0] == pos:
                pos = self._held[1]
            self._held = (m.position, pos)
        place = self.tape.locate(pos)
        clip = place.clip
        i = clip.index.seek(place.clip_pos)
        key = (id(clip), i, place.origin)
        if self._still is not None and self._still == key and self.time < self._still_until:
            return self._keep_alive(clip)
        return self._send_frame(place, i, key)

    def _keep_alive(self, clip: TapeClip) -> bytes:
        """One PCR-only packet: the clock runs on, the picture stays."""
        self.pcr += int(PCR_STEP * PCR_HZ)
        if self.origin is None:
            self.origin = self.time
        return self.splicer.feed(pcr_packet(clip.pcr_pid, self.pcr % PCR_WRAP))

    def _i_frame(self, clip: TapeClip, offset: int) -> list[bytearray]:
        """The packets of the video PES that starts at *offset* (the I-frame)."""
        vpid = clip.video_pid
        frame: list[bytearray] = []
        at = offset
        while at - offset < MAX_FRAME:
            data = clip.read(at, 64 * TS_PACKET)
            data = data[:len(data) // TS_PACKET * TS_PACKET]
            if not data:
                return frame
            for i in range(0, len(data), TS_PACKET):
                if data[i + 1] & 0x1F != vpid >> 8 or data[i + 2] != vpid & 0xFF:
                    continue
                p = bytearray(data[i:i + TS_PACKET])
                if frame and pusi(p):
                    return frame
                if has_payload(p):
                    frame.append(p)
            at += len(data)
        raise TSError(f"an I-frame larger than {MAX_FRAME} bytes")

    def _send_frame(self, place: Place, i: int, key: tuple[int, int, float]) -> bytes:
        clip = place.clip
        ix = clip.index
        ap = ix.point(i)
        frame = self._i_frame(clip, ap.offset)
        if not frame:
            return self._keep_alive(clip)
        self._splice()
        self._place = None
        self._programme(clip)
        self.stills += 1
        rate = self.max_rate or 2 * ix.bitrate
        size = len(frame) * TS_PACKET
        slot = max(PCR_STEP, size * 8 / rate)
        steps = max(1, math.ceil(slot / PCR_STEP))
        start = self.pcr + int(PCR_STEP * PCR_HZ)
        step = int(slot / steps * PCR_HZ)
        # shown one decoder delay after it goes out, as the programme is: the picture's lag
        # behind the deck is the same at every speed
        delay = max(ix.decode_delay, slot + PCR_STEP)
        pts = (start + int(delay * PCR_HZ)) // PCR_PER_PTS
        if self.pts is not None:
            pts = max(pts, self.pts + int(ix.frame_period * 90000))
        if self.dts is not None:
            pts = max(pts, self.dts + int(ix.frame_period * 90000))
        per = math.ceil(len(frame) / steps)
        pieces: list[bytearray] = []
        for k in range(steps):
            pieces.append(pcr_packet(clip.pcr_pid, (start + k * step) % PCR_WRAP))
            for p in frame[k * per:(k + 1) * per]:
                strip_pcr(p)
                set_pes_timestamps(p, pts % PTS_WRAP)      # alone, it is decoded when shown
                pieces.append(p)
        self.pcr = start + (steps - 1) * step
        if self.origin is None:
            self.origin = start / PCR_HZ
        self.pts = self.dts = pts
        self._still = key
        self._still_until = self.time + self.repeat
        self._show(pts / 90000, place.origin + ix.position(i), 0.0)
        out = self.splicer.feed(b"".join(pieces))
        self.splicer.splice(complete={clip.video_pid})
        return out + self.splicer.feed(b"")
