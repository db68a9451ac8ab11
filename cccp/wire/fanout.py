"""One live stream, many viewers, pure: where each viewer may start, where a viewer that
cannot keep up stops and starts again, and what it is sent so that its stream stays valid.

Two kinds of stream:

- MPEG2-TS (:class:`TSTee` and one :class:`TSGate` per viewer). The tee splits what the
  source writes into :class:`Run` values at random access points (the first packet of an
  I-frame's PES on the video PID) and keeps the latest PAT and PMT. A viewer starts at a
  random access point with the PAT and PMT before it, and every other PID from its next
  PES (or section) start, so its first picture is an I-frame and no PES is cut. A viewer
  that falls behind stops at a random access point: the video there, every other PID at
  the end of the PES it is in; it starts again like a late joiner, with its continuity
  counters renumbered to run on across the gap. What it missed is counted.
- RTP packets made by the source itself (:class:`RTPGate`): a viewer starts, and stops,
  at a packet that begins a frame (RFC 2250 MPEG video with a sequence header, an MPEG
  audio frame, an RFC 2435 JPEG frame). Its gaps show as missing sequence numbers, which
  is what RTP receivers expect of loss.

No I/O and no clock: :mod:`cccp.devices.fanout` drives these from the source and the
viewers' data connections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .media import NULL_PID, TS_PACKET
from .ts import Programme, starts_picture

#: Bytes a viewer that fell behind is still sent while its stream runs on to the next
#: random access point; past this it is cut at once (a source with very long GOPs).
MAX_BEHIND = 4 << 20


@dataclass
class Run:
    """Whole TS packets of the stream; one that starts at a random access point carries
    what a viewer starting there needs."""

    data: bytes
    rap: bool = False
    #: Each PID's continuity counter just before this run.
    counters: dict[int, int] = field(default_factory=dict)
    #: The PAT and PMT packets in force at this point (random access runs only).
    psi: tuple[bytes, ...] = ()


class TSTee:
    """What a TS source writes, as runs split at its random access points."""

    def __init__(self) -> None:
        self.programme = Programme()
        #: Every PID seen (but the null PID), with its last continuity counter.
        self.counters: dict[int, int] = {}
        self.random_access_points = 0
        self.packets = 0
        self._rest = b""

    @property
    def pids(self) -> set[int]:
        return set(self.counters)

    def feed(self, data: bytes) -> list[Run]:
        buf = self._rest + data if self._rest else data
        whole = len(buf) // TS_PACKET * TS_PACKET
        self._rest = buf[whole:]
        prog = self.programme
        counters = self.counters
        runs: list[Run] = []
        start = 0
        current = Run(b"", False, dict(counters))
        view = memoryview(buf)
        for i in range(0, whole, TS_PACKET):
            b1 = buf[i + 1]
            pid = ((b1 & 0x1F) << 8) | buf[i + 2]
            if b1 & 0x40:
                if pid == 0 or pid == prog.pmt_pid:
                    prog.see(view[i:i + TS_PACKET])
                elif pid == prog.video_pid and starts_picture(view[i:i + TS_PACKET], prog.video_type):
                    runs.append(self._close(current, buf, start, i))     # (empty when i == start)
                    psi = tuple(p for p in (prog.pat_packet, prog.pmt_packet) if p is not None)
                    current = Run(b"", True, dict(counters), psi)
                    start = i
                    self.random_access_points += 1
            if pid != NULL_PID:
                counters[pid] = buf[i + 3] & 0x0F
        self.packets += whole // TS_PACKET
        runs.append(self._close(current, buf, start, whole))
        return [r for r in runs if r.data]

    @staticmethod
    def _close(run: Run, buf: bytes, start: int, end: int) -> Run:
        run.data = bytes(buf[start:end])
        return run


# viewer states
WAIT, JOIN, ON, CUT = "wait", "join", "on", "cut"


class TSGate:
    """What one viewer of a :class:`TSTee` is sent.

    Set :attr:`behind` while the viewer cannot take more (its connection is full): it is
    cut at the next random access point, and starts again at the first one after
    :attr:`behind` is cleared. :attr:`dropped` counts the packets it was not sent then.
    """

    def __init__(self, tee: TSTee) -> None:
        self.tee = tee
        self.state = WAIT
        self._behind = False
        self.dropped = 0
        self.gaps = 0
        #: Bytes sent since :attr:`behind` was set (the cap is :data:`MAX_BEHIND`).
        self.sent_behind = 0
        self._gapped = False
        self._cut_done = False
        #: PIDs started (JOIN) or still finishing their PES (CUT).
        self._pids: set[int] = set()
        #: Continuity renumbering after a gap: what the viewer was sent last on each PID,
        #: and what is added to the source's counter from then on.
        self._last: dict[int, int] = {}
        self._offsets: dict[int, int] = {}
        self._renumber = False

    @property
    def behind(self) -> bool:
        return self._behind

    @behind.setter
    def behind(self, value: bool) -> None:
        self._behind = value
        if not value:
            self.sent_behind = 0

    def feed(self, run: Run) -> bytes:
        """The part of *run* this viewer is sent (b"" for none)."""
        if run.rap:
            if self.state in (ON, JOIN) and self.behind:
                self._cut(run)
            elif self.state == CUT:
                self._start_gap()                  # a PID still in its PES: it ends here
            elif self.state == JOIN:
                self.state = ON                    # a PID with no PES start in a GOP: let it be
        if self.state in (ON, JOIN) and self.behind:
            self.sent_behind += len(run.data)
            if self.sent_behind > MAX_BEHIND:      # no random access point comes: cut now
                # (every PES in progress is cut short here: the price of a source whose
                # GOPs never end)
                self._last = self._sent_counters(run.counters)
                self._start_gap()
        if self.state == WAIT:
            if not (run.rap and not self.behind):
                if self._gapped:
                    self.dropped += len(run.data) // TS_PACKET
                return b""
            self.state = JOIN
            self._pids = {self.tee.programme.video_pid or -1}
            out = self._renumbered(b"".join(run.psi) + self._select(run.data))
        elif self.state == ON:
            out = self._renumbered(run.data)
        else:
            cutting = self.state == CUT
            out = self._renumbered(self._select(run.data))
            if cutting:
                for i in range(0, len(out), TS_PACKET):      # what the viewer was sent last
                    self._last[((out[i + 1] & 0x1F) << 8) | out[i + 2]] = out[i + 3] & 0x0F
            if self._cut_done:
                self._cut_done = False
                self._start_gap()
        return out

    # -- starting and stopping ---------------------------------------------------------------
    def _cut(self, run: Run) -> None:
        """Behind at a random access point: the video stops here, the other PIDs at the
        end of their PES."""
        self._last = self._sent_counters(run.counters)
        self.state = CUT
        video = self.tee.programme.video_pid
        self._pids = {p for p in self.tee.counters if p != video}
        if not self._pids:
            self._start_gap()

    def _sent_counters(self, source: dict[int, int]) -> dict[int, int]:
        """What the viewer was sent last on each PID, from the source's counters then."""
        sent: dict[int, int] = {}
        for pid, cc in source.items():
            if self._renumber and pid not in self._offsets:
                if pid in self._last:                # nothing sent on it since the last gap
                    sent[pid] = self._last[pid]
                continue
            sent[pid] = (cc + self._offsets.get(pid, 0)) & 0x0F
        return sent

    def _start_gap(self) -> None:
        self.state = WAIT
        self._gapped = True
        self.gaps += 1
        self._offsets = {}
        self._renumber = True
        self.sent_behind = 0

    def _select(self, data: bytes) -> bytes:
        """Packet by packet while joining (a PID starts at its first PES or section start)
        or cutting (a PID ends before its next one)."""
        out = bytearray()
        video = self.tee.programme.video_pid
        pids = self._pids
        joining = self.state == JOIN
        for i in range(0, len(data), TS_PACKET):
            b1 = data[i + 1]
            pid = ((b1 & 0x1F) << 8) | data[i + 2]
            if joining:
                if pid not in pids and (b1 & 0x40 or pid == NULL_PID):
                    pids.add(pid)
                if pid in pids:
                    out += data[i:i + TS_PACKET]
                continue
            # cutting
            if pid == video or pid not in pids:
                self.dropped += 1
                continue
            if b1 & 0x40:
                pids.discard(pid)               # its next PES: this PID is done
                self.dropped += 1
                if not pids:
                    self._cut_done = True
                    # what is left of this run is dropped too
                    self.dropped += (len(data) - i) // TS_PACKET - 1
                    break
                continue
            out += data[i:i + TS_PACKET]
        if joining and pids >= self.tee.pids:
            self.state = ON
        return bytes(out)

    # -- continuity across a gap ------------------------------------------------------------
    def _renumbered(self, data: bytes) -> bytes:
        if not self._renumber or not data:
            return data
        out = bytearray(data)
        offsets, last = self._offsets, self._last
        for i in range(0, len(out), TS_PACKET):
            pid = ((out[i + 1] & 0x1F) << 8) | out[i + 2]
            if pid == NULL_PID:
                continue
            cc = out[i + 3] & 0x0F
            if pid not in offsets:
                if pid in last:
                    step = 1 if out[i + 3] & 0x10 else 0
                    offsets[pid] = (last[pid] + step - cc) & 0x0F
                else:
                    offsets[pid] = 0
            out[i + 3] = (out[i + 3] & 0xF0) | ((cc + offsets[pid]) & 0x0F)
        if self.state == ON and all(offsets.get(p) == 0 for p in self.tee.counters):
            self._renumber = False              # back in step with the source: as it is
            self._offsets = {}
        return bytes(out)


# -- RTP made by the source -----------------------------------------------------------------

def rtp_payload_offset(packet: bytes) -> int:
    """Where the payload of an RTP packet starts (after CSRCs and an extension)."""
    at = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10 and len(packet) >= at + 4:
        at += 4 + 4 * int.from_bytes(packet[at + 2:at + 4], "big")
    return at


def rtp_starts_frame(packet: bytes) -> bool:
    """Whether a decoder can start at this RTP packet: MPEG video (32) with a sequence
    header in it (RFC 2250 S bit), an MPEG audio frame's first fragment (14), a JPEG
    frame's first fragment (26, RFC 2435); any packet of another payload type."""
    if len(packet) < 12:
        return False
    pt = packet[1] & 0x7F
    at = rtp_payload_offset(packet)
    if len(packet) < at + 4:
        return pt not in (14, 26, 32)
    if pt == 32:
        return bool(packet[at + 2] & 0x20)
    if pt == 14:
        return packet[at + 2] == 0 and packet[at + 3] == 0
    if pt == 26:
        return packet[at + 1:at + 4] == b"\0\0\0"
    return True


class RTPGate:
    """What one viewer of RTP packets made by the source is sent: from a packet that
    begins a frame; while :attr:`behind`, nothing from the next such packet on, until it
    is cleared and another comes."""

    def __init__(self) -> None:
        self.on = False
        self._behind = False
        self.dropped = 0
        self.gaps = 0
        self.sent_behind = 0
        self._gapped = False

    @property
    def behind(self) -> bool:
        return self._behind

    @behind.setter
    def behind(self, value: bool) -> None:
        self._behind = value
        if not value:
            self.sent_behind = 0

    def feed(self, packet: bytes) -> bytes:
        starts = rtp_starts_frame(packet)
        if self.on:
            if self.behind:
                self.sent_behind += len(packet)
                if starts or self.sent_behind > MAX_BEHIND:
                    self.on = False
                    self._gapped = True
                    self.gaps += 1
                    self.sent_behind = 0
            if self.on:
                return packet
        elif starts and not self.behind:
            self.on = True
            return packet
        if self._gapped:
            self.dropped += 1
        return b""
