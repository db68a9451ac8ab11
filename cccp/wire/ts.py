"""MPEG2-TS editing, pure: what a tape deck needs to jump around a clip and still send one
valid transport stream.

- Packet accessors: PID, payload start, continuity counter, adaptation field, the PCR
  (read and rewrite), and the PTS/DTS of a PES header (read and rewrite).
- :class:`Programme`: the PAT and PMT of a stream (which PID is the video, of what type).
- :class:`TSIndexer` / :class:`TSIndex`: the random access points of a clip (byte offset,
  PTS, PCR of each I-frame start), built incrementally from chunks in constant memory
  besides the points themselves, so that a position in seconds maps to an offset where
  a decoder can start.
- :class:`Splicer`: turns pieces of one or more streams, cut anywhere, into one stream a
  player never loses: only whole PES packets go out (a cut drops the partial ones), the
  continuity counter of every PID runs on, PCR, PTS and DTS are restamped onto one
  continuous output timeline, the PAT and PMT are repeated at every splice, and null
  packets are dropped.

Bytes in, bytes out: no I/O, no clock. The tape deck and the looping sources drive it.
"""

from __future__ import annotations

import bisect
import functools
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import CCCPError
from .media import NULL_PID, PCR_HZ, TS_PACKET, TS_SYNC, ts_pcr, ts_pid

Buf = bytes | bytearray | memoryview

#: 90 kHz PES clock ticks per 27 MHz system clock tick.
PCR_PER_PTS = 300
PTS_WRAP = 1 << 33
PCR_WRAP = PTS_WRAP * PCR_PER_PTS
PAT_PID = 0
#: The most a picture of one clip may be ahead of the one decoded before it (PTS, 90 kHz),
#: and behind it (B-frames are shown before the pictures they are decoded after).
MAX_PTS_JUMP = 10 * 90000
MAX_PTS_BACK = 2 * 90000
#: Stream types that are video, and how their I-frames are found.
MPEG2_VIDEO = (0x01, 0x02)
H264_VIDEO = (0x1B,)
HEVC_VIDEO = (0x24,)
VIDEO_TYPES = MPEG2_VIDEO + H264_VIDEO + HEVC_VIDEO


class TSError(CCCPError):
    """A stream that is not MPEG2-TS where it must be."""


# -- packets --------------------------------------------------------------------------------

def packets(data: Buf) -> Iterator[memoryview]:
    """The 188-byte packets of *data* (whole packets; a short tail is ignored)."""
    view = memoryview(data)
    for i in range(0, len(view) - TS_PACKET + 1, TS_PACKET):
        yield view[i:i + TS_PACKET]


def pusi(p: Buf) -> bool:
    """payload_unit_start_indicator: a PES or a section begins in this packet."""
    return bool(p[1] & 0x40)


def has_payload(p: Buf) -> bool:
    return bool(p[3] & 0x10)


def continuity(p: Buf) -> int:
    return p[3] & 0x0F


def payload_start(p: Buf) -> int:
    """Offset of the payload in the packet (188 when there is none)."""
    if not p[3] & 0x10:
        return TS_PACKET
    if p[3] & 0x20:
        return min(TS_PACKET, 5 + p[4])
    return 4


def random_access(p: Buf) -> bool:
    """The adaptation field's random_access_indicator."""
    return bool(p[3] & 0x20 and p[4] and p[5] & 0x40)


def set_pcr(p: bytearray, pcr: int) -> None:
    """Rewrite the PCR of a packet that carries one (27 MHz units, wrapped)."""
    pcr %= PCR_WRAP
    base, ext = divmod(pcr, PCR_PER_PTS)
    p[6] = (base >> 25) & 0xFF
    p[7] = (base >> 17) & 0xFF
    p[8] = (base >> 9) & 0xFF
    p[9] = (base >> 1) & 0xFF
    p[10] = ((base & 1) << 7) | 0x7E | ((ext >> 8) & 1)
    p[11] = ext & 0xFF


def pcr_packet(pid: int, pcr: int) -> bytearray:
    """A packet with an adaptation field only, carrying *pcr*: it keeps a player's clock
    running without a payload (its continuity counter does not count)."""
    p = bytearray(b"\xff" * TS_PACKET)
    p[0:6] = bytes((TS_SYNC, (pid >> 8) & 0x1F, pid & 0xFF, 0x20, TS_PACKET - 5, 0x10))
    set_pcr(p, pcr)
    return p


def strip_pcr(p: bytearray) -> None:
    """Take the PCR out of a packet's adaptation field (what follows it moves up; the
    field keeps its length, ending in stuffing)."""
    if ts_pcr(p) is None:
        return
    end = 5 + p[4]
    p[5] &= ~0x10 & 0xFF
    p[6:end - 6] = p[12:end]
    p[end - 6:end] = b"\xff" * 6


def set_discontinuity(p: bytearray) -> None:
    """Set the discontinuity_indicator (a packet with an adaptation field only)."""
    if p[3] & 0x20 and p[4]:
        p[5] |= 0x80


def _read_ts(b: Buf, at: int) -> int:
    return (((b[at] >> 1) & 0x07) << 30) | (b[at + 1] << 22) | ((b[at + 2] >> 1) << 15) \
        | (b[at + 3] << 7) | (b[at + 4] >> 1)


def _write_ts(b: bytearray, at: int, value: int) -> None:
    value %= PTS_WRAP
    marker = b[at] & 0xF0                         # the '0010' / '0011' / '0001' prefix
    b[at] = marker | (((value >> 30) & 0x07) << 1) | 1
    b[at + 1] = (value >> 22) & 0xFF
    b[at + 2] = (((value >> 15) & 0x7F) << 1) | 1
    b[at + 3] = (value >> 7) & 0xFF
    b[at + 4] = ((value & 0x7F) << 1) | 1


def _pes_header(p: Buf) -> int | None:
    """Offset of the PTS/DTS flags byte of a PES header that starts in *p*, or None."""
    if not pusi(p):
        return None
    at = payload_start(p)
    if at + 9 > TS_PACKET or p[at] != 0 or p[at + 1] != 0 or p[at + 2] != 1:
        return None
    stream_id = p[at + 3]
    if stream_id in (0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xFF, 0xF2, 0xF8):    # no optional header
        return None
    if p[at + 6] & 0xC0 != 0x80:
        return None
    return at + 7


def pes_timestamps(p: Buf) -> tuple[int | None, int | None]:
    """(PTS, DTS) of the PES header starting in this packet, 90 kHz (None where absent)."""
    flags_at = _pes_header(p)
    if flags_at is None:
        return None, None
    flags = p[flags_at] >> 6
    at = flags_at + 2
    if flags & 2 and at + 5 <= TS_PACKET:
        pts = _read_ts(p, at)
        dts = _read_ts(p, at + 5) if flags == 3 and at + 10 <= TS_PACKET else None
        return pts, dts
    return None, None


def set_pes_timestamps(p: bytearray, pts: int, dts: int | None = None) -> None:
    """Rewrite the PTS (and the DTS, where the header has one: *dts*, or the PTS) of the
    PES header starting in this packet (90 kHz)."""
    flags_at = _pes_header(p)
    if flags_at is None:
        return
    flags = p[flags_at] >> 6
    at = flags_at + 2
    if flags & 2 and at + 5 <= TS_PACKET:
        _write_ts(p, at, pts)
        if flags == 3 and at + 10 <= TS_PACKET:
            _write_ts(p, at + 5, pts if dts is None else dts)


def shift_timestamps(p: bytearray, delta_pcr: int) -> None:
    """Move a packet's PCR (27 MHz) and its PES header's PTS/DTS (90 kHz) by *delta_pcr*."""
    pcr = ts_pcr(p)
    if pcr is not None:
        set_pcr(p, pcr + delta_pcr)
    flags_at = _pes_header(p)
    if flags_at is None:
        return
    flags = p[flags_at] >> 6
    at = flags_at + 2
    delta = delta_pcr // PCR_PER_PTS
    if flags & 2 and at + 5 <= TS_PACKET:
        _write_ts(p, at, _read_ts(p, at) + delta)
        if flags == 3 and at + 10 <= TS_PACKET:
            _write_ts(p, at + 5, _read_ts(p, at + 5) + delta)


# -- the programme: PAT and PMT ------------------------------------------------------------

def _section(p: Buf) -> bytes | None:
    """The PSI section starting in a packet (first packet of it only), or None."""
    if not pusi(p) or not has_payload(p):
        return None
    at = payload_start(p)
    if at >= TS_PACKET:
        return None
    at += 1 + p[at]                              # pointer_field
    if at + 3 > TS_PACKET:
        return None
    length = ((p[at + 1] & 0x0F) << 8) | p[at + 2]
    return bytes(p[at:min(TS_PACKET, at + 3 + length)])


@dataclass
class Programme:
    """What the PAT and PMT say: the PMT's PID, the video PID and its stream type, and the
    last PAT and PMT packets (repeated at a splice)."""

    pmt_pid: int | None = None
    video_pid: int | None = None
    video_type: int | None = None
    pcr_pid: int | None = None
    streams: dict[int, int] = field(default_factory=dict)
    pat_packet: bytes | None = None
    pmt_packet: bytes | None = None

    def see(self, p: Buf) -> bool:
        """Learn from a PAT or PMT packet; True if *p* was one."""
        pid = ts_pid(p)
        if pid == PAT_PID:
            s = _section(p)
            if s is not None and s[0] == 0x00 and len(s) >= 12:
                for i in range(8, len(s) - 4, 4):
                    number = (s[i] << 8) | s[i + 1]
                    if number:
                        self.pmt_pid = ((s[i + 2] & 0x1F) << 8) | s[i + 3]
                        break
                self.pat_packet = bytes(p)
            return True
        if pid == self.pmt_pid:
            s = _section(p)
            if s is not None and s[0] == 0x02 and len(s) >= 16:
                self.pcr_pid = ((s[8] & 0x1F) << 8) | s[9]
                i = 12 + (((s[10] & 0x0F) << 8) | s[11])
                streams: dict[int, int] = {}
                while i + 5 <= len(s) - 4:
                    stype, epid = s[i], ((s[i + 1] & 0x1F) << 8) | s[i + 2]
                    streams[epid] = stype
                    i += 5 + (((s[i + 3] & 0x0F) << 8) | s[i + 4])
                self.streams = streams
                video = [(pid_, t) for pid_, t in streams.items() if t in VIDEO_TYPES]
                if video:
                    self.video_pid, self.video_type = video[0]
                self.pmt_packet = bytes(p)
            return True
        return False


def starts_picture(p: Buf, video_type: int | None) -> bool | None:
    """Whether a video packet that starts a PES starts an I-frame (True), another picture
    (False) or cannot tell (None). MPEG-2: a sequence header or an I picture's coding
    type; H.264/HEVC: an IDR or a parameter set; any codec: random_access_indicator."""
    if not pusi(p):
        return False
    if random_access(p):
        return True
    payload = bytes(p[payload_start(p):])
    if len(payload) < 9 or payload[:3] != b"\0\0\1":
        return None
    body = payload[9 + payload[8]:]
    if video_type in MPEG2_VIDEO or video_type is None:
        if b"\0\0\1\xb3" in body:
            return True
        at = body.find(b"\0\0\1\0")
        if at >= 0 and at + 6 <= len(body):
            return (body[at + 5] >> 3) & 0x07 == 1
        return None if video_type is None else False
    at = body.find(b"\0\0\1")
    while 0 <= at and at + 4 <= len(body):
        nal = body[at + 3]
        if video_type in H264_VIDEO and nal & 0x1F in (5, 7):
            return True
        if video_type in HEVC_VIDEO and (nal >> 1) & 0x3F in (19, 20, 21, 32, 33, 34):
            return True
        at = body.find(b"\0\0\1", at + 3)
    return False


# -- the index ------------------------------------------------------------------------------

@dataclass
class AccessPoint:
    """Where a decoder can start: the byte offset of the packet that begins an I-frame's
    PES, its PTS (90 kHz) and the last PCR before it (27 MHz; None before any)."""

    offset: int
    pts: int
    pcr: int | None


class TSIndexer:
    """Builds a :class:`TSIndex` from a clip fed in order, chunk by chunk (any size; whole
    packets need not line up with chunks). Memory: the access points (24 bytes each) and
    at most one packet of carry-over."""

    def __init__(self) -> None:
        self.programme = Programme()
        self._offsets = array("q")
        self._pts = array("q")
        self._pcrs = array("q")
        self._carry = b""
        self._pos = 0                       # offset of the next byte fed
        self._last_pcr: int | None = None
        self._first_pcr: int | None = None
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self.packets = 0
        self.pictures = 0
        self.pids: set[int] = set()

    def feed(self, data: bytes) -> None:
        buf = self._carry + data if self._carry else data
        start = self._pos - len(self._carry)
        whole = len(buf) // TS_PACKET * TS_PACKET
        for i in range(0, whole, TS_PACKET):
            p = buf[i:i + TS_PACKET]
            if p[0] != TS_SYNC:
                raise TSError(f"no TS sync byte at offset {start + i}")
            self._packet(p, start + i)
        self._carry = bytes(buf[whole:])
        self._pos += len(data)

    def _packet(self, p: bytes, offset: int) -> None:
        self.packets += 1
        prog = self.programme
        pid = ts_pid(p)
        self.pids.add(pid)
        if pid == PAT_PID or pid == prog.pmt_pid:
            prog.see(p)
            return
        pcr = ts_pcr(p)
        if pcr is not None:
            self._last_pcr = pcr
            if self._first_pcr is None:
                self._first_pcr = pcr
        if pid != prog.video_pid or not pusi(p):
            return
        pts, _ = pes_timestamps(p)
        if pts is None:
            return
        self.pictures += 1
        if self._first_pts is None:
            self._first_pts = pts
        last = self._last_pts
        if last is not None:
            # Pictures come in decoding order (a B-frame a little before the last P); across
            # the 33-bit wrap the clock goes on. A jump is not a clip a deck can play as one.
            ahead = (pts - last) % PTS_WRAP
            if MAX_PTS_JUMP < ahead < PTS_WRAP - MAX_PTS_BACK:
                raise TSError(f"the video's timestamps jump by {min(ahead, PTS_WRAP - ahead) / 90000:.1f} s "
                              f"at offset {offset} (an edit or a splice in the file): not one clip")
            if ahead < PTS_WRAP // 2:
                self._last_pts = pts
            first = self._first_pts
            if (pts - first) % PTS_WRAP > PTS_WRAP // 2 and (first - pts) % PTS_WRAP <= MAX_PTS_BACK:
                self._first_pts = pts             # a B-frame shown before the first picture decoded
        else:
            self._last_pts = pts
        if starts_picture(p, prog.video_type):
            self._offsets.append(offset)
            self._pts.append(pts)
            self._pcrs.append(-1 if self._last_pcr is None else self._last_pcr)

    def finish(self) -> TSIndex:
        if self.programme.video_pid is None:
            raise TSError("no video stream in the PMT (or no PAT/PMT at all)")
        if not self._offsets:
            raise TSError("no I-frame found: nothing a decoder could start from")
        return TSIndex(self.programme, self._offsets, self._pts, self._pcrs, self._pos,
                       self._first_pts or 0, self._last_pts or 0, self._first_pcr, self._last_pcr,
                       self.pictures, frozenset(self.pids - {NULL_PID}))


@dataclass
class TSIndex:
    """The random access points of a clip; positions are seconds from its first PTS."""

    programme: Programme
    offsets: array
    pts: array
    pcrs: array
    size: int
    first_pts: int
    last_pts: int
    first_pcr: int | None
    last_pcr: int | None
    pictures: int = 0
    pids: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last picture (at least one frame)."""
        return max(0.04, ((self.last_pts - self.first_pts) % PTS_WRAP) / 90000)

    @property
    def frame_period(self) -> float:
        """Seconds between pictures (1/25 when the clip has one picture)."""
        span = ((self.last_pts - self.first_pts) % PTS_WRAP) / 90000
        return span / (self.pictures - 1) if self.pictures > 1 and span > 0 else 0.04

    @property
    def length(self) -> float:
        """Seconds the clip lasts when played: its pictures' span and one more picture."""
        return ((self.last_pts - self.first_pts) % PTS_WRAP) / 90000 + self.frame_period

    @functools.cached_property
    def decode_delay(self) -> float:
        """Typical seconds from an I-frame's PCR to its PTS (the median), what a player buffers."""
        delays = sorted(((self.pts[i] * PCR_PER_PTS - self.pcrs[i]) % PCR_WRAP) / PCR_HZ
                        for i in range(len(self)) if self.pcrs[i] >= 0)
        delays = [d for d in delays if d < 10]
        return min(2.0, max(0.05, delays[len(delays) // 2])) if delays else 0.5

    @property
    def bitrate(self) -> float:
        """Mean bits per second over the clip."""
        return self.size * 8 / self.length

    def point(self, i: int) -> AccessPoint:
        pcr = self.pcrs[i]
        return AccessPoint(self.offsets[i], self.pts[i], None if pcr < 0 else pcr)

    def position(self, i: int) -> float:
        """Seconds of access point *i* from the start."""
        return ((self.pts[i] - self.first_pts) % PTS_WRAP) / 90000

    def seek(self, seconds: float) -> int:
        """The index of the last access point at or before *seconds* (the first one before
        the start, the last one past the end). I-frames' PTS grow with their offsets."""
        return max(0, bisect.bisect_right(range(len(self)), seconds, key=self.position) - 1)

    def span(self, i: int) -> tuple[int, int]:
        """Byte range of access point *i* up to the next one (the end of the clip last)."""
        end = self.offsets[i + 1] if i + 1 < len(self) else self.size
        return self.offsets[i], end


# -- the splicer ----------------------------------------------------------------------------

#: PIDs of PSI and SI tables (PAT, CAT, NIT, SDT, EIT...): sections, passed on at once.
_SI_PIDS = range(0, 0x20)


class _Unit:
    __slots__ = ("complete", "dropped", "segment")

    def __init__(self, segment: int, complete: bool = False) -> None:
        self.complete = complete
        self.dropped = False
        self.segment = segment


class Splicer:
    """Pieces of transport stream in, one continuous transport stream out.

    Feed bytes with :meth:`feed` (cut anywhere, even inside a packet); call :meth:`splice`
    between two pieces that do not follow each other (a jump, a loop, a restarted source).
    Packets keep their order, but a packet goes out only once the PES it belongs to is
    whole (the next payload unit start of its PID has arrived): at a splice, what is not
    whole is dropped, so a decoder never sees a cut frame. Every output packet gets the
    next continuity counter of its PID; after a splice, the first PCR is placed *gap*
    (27 MHz) after the last one sent and every PCR, PTS and DTS of the new piece moves by
    the same amount, so the output is one timeline. The PAT and PMT go out again first
    after a splice; null packets are dropped. Memory: what waits is bounded by
    *max_held* bytes (beyond it the oldest PES goes out as it is).
    """

    def __init__(self, gap: int = PCR_HZ // 25, max_held: int = 8 << 20, restamp: bool = True) -> None:
        self.gap = gap
        self.restamp = restamp
        self.max_held = max_held
        self.programme = Programme()
        self._cc: dict[int, int] = {}
        self._queue: deque[tuple[bytearray, _Unit]] = deque()
        self._current: dict[int, _Unit] = {}        # PID -> the PES being received
        self._segment = 0
        self._deltas: dict[int, int] = {0: 0}      # segment -> input-to-output shift (27 MHz)
        self._first_pcr: dict[int, int] = {}       # segment -> its first PCR in
        self._last_out_pcr: int | None = None
        self._psi_due = False
        self._carry = b""
        self.splices = 0
        self.dropped = 0

    @property
    def last_pcr(self) -> int | None:
        """The last PCR that went out (27 MHz, as written)."""
        return self._last_out_pcr

    def seed(self, counters: dict[int, int], open_pids: Iterable[int] = ()) -> None:
        """Go on from a stream sent without the splicer: the last continuity counter of
        each PID that went out; *open_pids* are the PIDs whose last PES went out in part
        (the packets that continue it are taken, not dropped)."""
        self._cc.update(counters)
        for pid in open_pids:
            self._current[pid] = _Unit(self._segment)

    def splice(self, complete: bool | Iterable[int] = ()) -> None:
        """The next bytes do not follow the last ones. *complete*: True when the piece
        ended at the end of its stream, or the PIDs whose PES ended exactly there (the
        video, cut at an access point); every other unfinished PES is dropped."""
        self._carry = b""
        whole = set(self._current) if complete is True else set(complete or ())
        for pid, unit in self._current.items():
            if pid in whole:
                unit.complete = True
            else:
                unit.dropped = True
        self._current.clear()
        self._segment += 1
        self._psi_due = True
        self.splices += 1

    def feed(self, data: Buf) -> bytes:
        buf = self._carry + bytes(data) if self._carry else data
        whole = len(buf) // TS_PACKET * TS_PACKET
        out: list[bytearray] = []
        for view in packets(memoryview(buf)[:whole]):
            if view[0] != TS_SYNC:
                raise TSError("no TS sync byte")
            self._packet(bytearray(view))
        self._carry = bytes(buf[whole:])
        self._drain(out)
        return b"".join(out)

    def flush(self) -> bytes:
        """Everything still waiting (the stream has ended: its last PESes are whole)."""
        for unit in self._current.values():
            unit.complete = True
        self._current.clear()
        out: list[bytearray] = []
        self._drain(out)
        return b"".join(out)

    def _packet(self, p: bytearray) -> None:
        pid = ts_pid(p)
        if pid == NULL_PID:
            return
        if pid == PAT_PID or pid == self.programme.pmt_pid:
            self.programme.see(p)
            if self._psi_due:
                return                               # the copies go out first after a splice
        if pid in _SI_PIDS or pid == self.programme.pmt_pid or not has_payload(p):
            unit = _Unit(self._segment, complete=True)
        elif pusi(p):
            old = self._current.get(pid)
            if old is not None:
                old.complete = True
            unit = self._current[pid] = _Unit(self._segment)
        elif pid in self._current:
            unit = self._current[pid]
        else:
            self.dropped += 1                        # the tail of a PES whose start was cut off
            return
        if self._segment not in self._first_pcr:
            pcr = ts_pcr(p)
            if pcr is not None:
                self._first_pcr[self._segment] = pcr
        self._queue.append((p, unit))

    def _drain(self, out: list[bytearray]) -> None:
        q = self._queue
        while q:
            p, unit = q[0]
            if unit.dropped:
                q.popleft()
                self.dropped += 1
                continue
            delta = self._deltas.get(unit.segment) if self.restamp else 0
            if delta is None and unit.segment in self._first_pcr:
                # Everything before this piece is out: place its first PCR after the last one.
                target = 0 if self._last_out_pcr is None else self._last_out_pcr + self.gap
                delta = self._deltas[unit.segment] = (target - self._first_pcr[unit.segment]) % PCR_WRAP
            if not unit.complete or delta is None:
                if len(q) * TS_PACKET <= self.max_held:
                    return
                unit.complete = True                 # too much waiting: let the oldest go
                if delta is None:
                    delta = self._deltas[unit.segment] = 0
            q.popleft()
            if unit.segment == self._segment and self._psi_due:
                self._send_psi(out)
            self._emit(out, p, delta)
        if len(self._deltas) > 4 or len(self._first_pcr) > 4:
            oldest = q[0][1].segment if q else self._segment
            for table in (self._deltas, self._first_pcr):
                for seg in [s for s in table if s < oldest]:
                    del table[seg]

    def _send_psi(self, out: list[bytearray]) -> None:
        self._psi_due = False
        for raw in (self.programme.pat_packet, self.programme.pmt_packet):
            if raw is not None:
                self._emit(out, bytearray(raw), 0)

    def _emit(self, out: list[bytearray], p: bytearray, delta: int) -> None:
        pid = ts_pid(p)
        if has_payload(p):
            cc = (self._cc.get(pid, -1) + 1) & 0x0F
            self._cc[pid] = cc
        else:
            cc = self._cc.get(pid, 0)
        p[3] = (p[3] & 0xF0) | cc
        if delta:
            shift_timestamps(p, delta)
        pcr = ts_pcr(p)
        if pcr is not None:
            self._last_out_pcr = pcr
        out.append(p)
