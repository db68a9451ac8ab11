"""MPEG2-TS and RTP on the wire, pure: framing parsers that resynchronise or fail
clearly, PCR extraction and pacing, RTP packets, RFC 4571 length framing, and
RFC 2250 packetisation of MPEG2-TS (payload type 33).

Draft section 3: in a TCP stream, TS packets (188 bytes, sync 0x47) are packed
back to back, and RTP packets are each preceded by a 2-byte big-endian length.
Over UDP, a datagram carries *n* TS packets or exactly one RTP packet.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources

from .errors import CCCPError

TS_PACKET = 188
TS_SYNC = 0x47
NULL_PID = 0x1FFF
PCR_HZ = 27_000_000
RTP_MP2T = 33
#: TS packets per RTP packet (RFC 2250 wants an integral number; 7 fills an Ethernet MTU).
TS_PER_RTP = 7
#: A null TS packet (PID 0x1FFF), sent to keep a stream alive with nothing to show.
NULL_PACKET = bytes([TS_SYNC, 0x1F, 0xFF, 0x10]) + b"\xff" * 184

#: Well-known RTP payload types (RFC 1890 / RFC 3551) by number.
PAYLOAD_TYPES = {0: "PCMU", 8: "PCMA", 14: "MPA", 26: "JPEG", 31: "H261", 32: "MPV", 33: "MP2T", 34: "H263"}


class MediaFramingError(CCCPError):
    """A stream that cannot be framed (no sync, impossible lengths)."""


def sample_clip_path() -> str | None:
    """The small MPEG2-TS sample (MPEG-2 video + MP2 audio, 4 s) shipped with the package."""
    folder = resources.files("cccp") / "samples"
    try:
        for p in sorted(folder.iterdir(), key=lambda p: p.name):
            if p.name.endswith(".ts"):
                return str(p)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None


# -- MPEG2-TS ---------------------------------------------------------------------------

def ts_pid(packet: bytes | bytearray | memoryview) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def ts_pcr(packet: bytes | bytearray | memoryview) -> int | None:
    """The PCR of a TS packet in 27 MHz units, or None if it carries none."""
    if len(packet) < 12 or not packet[3] & 0x20:           # no adaptation field
        return None
    if packet[4] < 7 or not packet[5] & 0x10:               # too short or no PCR flag
        return None
    b = packet[6:12]
    base = (b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1) | (b[4] >> 7)
    ext = ((b[4] & 1) << 8) | b[5]
    return base * 300 + ext


def aligned(chunk: bytes) -> bool:
    """Whether *chunk* is whole TS packets, each starting with the sync byte (C speed)."""
    n, rest = divmod(len(chunk), TS_PACKET)
    return rest == 0 and chunk[::TS_PACKET].count(TS_SYNC) == n


class TSFramer:
    """Cuts a byte stream into 188-byte TS packets, resynchronising on garbage.

    After *max_garbage* bytes skipped in a row it raises :class:`MediaFramingError`:
    a stream that is not TS at all fails clearly instead of being silently dropped.
    A *strict* framer skips nothing: the first byte where a packet should start and
    no sync byte is raises at once (for uploads, where every byte must be TS).
    """

    def __init__(self, max_garbage: int = 8 * TS_PACKET, *, strict: bool = False) -> None:
        self._buf = bytearray()
        self.max_garbage = max_garbage
        self.strict = strict
        self.packets = 0
        self.skipped = 0
        self.resyncs = 0
        self._garbage_run = 0

    def feed(self, data: bytes) -> bytes:
        """Append *data*; return the whole packets now available, concatenated."""
        buf = self._buf
        buf += data
        out = bytearray()
        pos = 0
        while len(buf) - pos >= TS_PACKET:
            if buf[pos] == TS_SYNC:
                # Take the longest run of aligned packets at once (sync bytes checked at C speed).
                n = (len(buf) - pos) // TS_PACKET
                syncs = buf[pos:pos + n * TS_PACKET:TS_PACKET]
                if syncs.count(TS_SYNC) != n:
                    n = next(i for i, b in enumerate(syncs) if b != TS_SYNC)
                if n:
                    out += buf[pos:pos + n * TS_PACKET]
                    pos += n * TS_PACKET
                    self.packets += n
                    self._garbage_run = 0
                    continue
            if self.strict:
                at = self.packets * TS_PACKET
                del buf[:pos]
                raise MediaFramingError(f"not an MPEG2-TS stream: byte {at} should be a sync byte "
                                        f"(0x{TS_SYNC:02X}) and is 0x{buf[0]:02X}")
            # Out of sync: the next offset whose sync bytes line up with the following packets.
            found, keep = self._resync(buf, pos + 1)
            self._skip(keep - pos)
            pos = keep
            if found:
                self.resyncs += 1
            else:
                break
        del buf[:pos]
        return bytes(out)

    def _skip(self, n: int) -> None:
        self.skipped += n
        self._garbage_run += n
        if self._garbage_run > self.max_garbage:
            raise MediaFramingError(f"not an MPEG2-TS stream: no sync byte pattern in {self._garbage_run} bytes")

    @staticmethod
    def _resync(buf: bytearray, start: int) -> tuple[bool, int]:
        """(True, offset) of a confirmed packet start, or (False, offset) to wait at."""
        i = buf.find(TS_SYNC, start)
        while i != -1:
            if i + TS_PACKET >= len(buf):
                return False, i                        # cannot confirm yet: wait for more
            if buf[i + TS_PACKET] == TS_SYNC and (i + 2 * TS_PACKET >= len(buf)
                                                   or buf[i + 2 * TS_PACKET] == TS_SYNC):
                return True, i
            i = buf.find(TS_SYNC, i + 1)
        return False, len(buf)

    @property
    def pending(self) -> int:
        return len(self._buf)


def iter_packets(chunk: bytes) -> Iterator[bytes]:
    for i in range(0, len(chunk) - TS_PACKET + 1, TS_PACKET):
        yield chunk[i:i + TS_PACKET]


class Pacer:
    """Assigns TS data the time (seconds from the first PCR) it is due, interpolating
    linearly between the PCRs of the first PCR-carrying PID.

    Bytes are held until the next PCR brackets them (typically < 100 ms), then handed
    out as ``(due, data)`` batches about :attr:`quantum` seconds apart (contiguous
    slices, no per-packet objects), so pacing costs little even at Gbit/s rates.
    :meth:`flush` releases the tail at the last measured rate.
    """

    def __init__(self, quantum: float = 0.001) -> None:
        self.quantum = quantum
        self.pcr_pid: int | None = None
        self._held = bytearray()
        self._last_pcr: int | None = None       # 27 MHz, unwrapped
        self._last_time = 0.0
        self._rate: float | None = None         # bytes per second
        self._origin: int | None = None
        self._wrap = 0

    def _unwrap(self, pcr: int) -> int:
        if self._last_pcr is not None:
            span = (1 << 33) * 300
            pcr += self._wrap
            if pcr < self._last_pcr - span // 2:
                self._wrap += span
                pcr += span
        return pcr

    def feed(self, chunk: bytes) -> list[tuple[float, bytes]]:
        out: list[tuple[float, bytes]] = []
        start = 0
        pcr_pid = self.pcr_pid
        for off in range(0, len(chunk) - TS_PACKET + 1, TS_PACKET):
            if not chunk[off + 3] & 0x20:                 # no adaptation field: no PCR
                continue
            pid = ((chunk[off + 1] & 0x1F) << 8) | chunk[off + 2]
            if pcr_pid is not None and pid != pcr_pid:
                continue
            pcr = ts_pcr(chunk[off:off + TS_PACKET])
            if pcr is None:
                continue
            if pcr_pid is None:
                pcr_pid = self.pcr_pid = pid
            self._held += chunk[start:off + TS_PACKET]
            start = off + TS_PACKET
            self._release(out, pcr)
        self._held += chunk[start:len(chunk) // TS_PACKET * TS_PACKET]
        return out

    def _release(self, out: list[tuple[float, bytes]], pcr: int) -> None:
        """The held bytes end with a PCR packet: spread them up to its time."""
        pcr = self._unwrap(pcr)
        if self._origin is None:
            self._origin = pcr
        now = (pcr - self._origin) / PCR_HZ
        held, self._held = bytes(self._held), bytearray()
        if self._last_pcr is None:
            out.append((0.0, held))                   # before the first PCR: due at once
        else:
            dt = now - self._last_time
            if dt <= 0 or dt > 10:                    # a discontinuity: keep the old rate
                dt = len(held) / self._rate if self._rate else 0.0
                now = self._last_time + dt
                self._origin = pcr - int(now * PCR_HZ)
            else:
                self._rate = len(held) / dt
            self._spread(out, held, self._last_time, dt)
        self._last_pcr, self._last_time = pcr, now

    def _spread(self, out: list[tuple[float, bytes]], data: bytes, t0: float, dt: float) -> None:
        npk = len(data) // TS_PACKET
        if npk == 0:
            return
        per_batch = max(1, int(npk * self.quantum / dt)) if dt > 0 else npk
        for k in range(0, npk, per_batch):
            j = min(npk, k + per_batch)
            out.append((t0 + dt * (k + 1) / npk, data[k * TS_PACKET:j * TS_PACKET]))

    def flush(self) -> list[tuple[float, bytes]]:
        held, self._held = bytes(self._held), bytearray()
        if not held:
            return []
        out: list[tuple[float, bytes]] = []
        dt = len(held) / self._rate if self._rate else 0.0
        self._spread(out, held, self._last_time, dt)
        return out

    @property
    def rate(self) -> float | None:
        """The measured rate in bytes per second, once two PCRs were seen."""
        return self._rate


def file_bitrate(path: str) -> float | None:
    """Bits per second of a TS file from its first and last PCR (None without PCRs)."""
    size = os.path.getsize(path)
    first = last = None
    with open(path, "rb") as f:
        head = f.read(1 << 20)
        pid = None
        for i, pkt in enumerate(iter_packets(head)):
            pcr = ts_pcr(pkt)
            if pcr is not None:
                pid, first, first_at = ts_pid(pkt), pcr, i * TS_PACKET
                break
        if first is None:
            return None
        f.seek(max(0, (size - (1 << 20)) // TS_PACKET * TS_PACKET))
        base = f.tell()
        tail = f.read()
        for i, pkt in enumerate(iter_packets(tail)):
            pcr = ts_pcr(pkt)
            if pcr is not None and ts_pid(pkt) == pid:
                last, last_at = pcr, base + i * TS_PACKET
    if last is None or last <= first:
        return None
    return (last_at - first_at) * 8 * PCR_HZ / (last - first)


# -- RTP ------------------------------------------------------------------------------

_RTP = struct.Struct(">BBHII")


@dataclass(frozen=True)
class RTPPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()

    def encode(self) -> bytes:
        b0 = 0x80 | len(self.csrcs)
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        head = _RTP.pack(b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        return head + b"".join(struct.pack(">I", c) for c in self.csrcs) + self.payload

    @classmethod
    def decode(cls, data: bytes) -> RTPPacket:
        if len(data) < 12:
            raise MediaFramingError(f"an RTP packet of {len(data)} bytes is shorter than its header")
        b0, b1, seq, ts, ssrc = _RTP.unpack_from(data)
        if b0 >> 6 != 2:
            raise MediaFramingError(f"not RTP version 2 (first byte 0x{b0:02X})")
        cc = b0 & 0x0F
        pos = 12 + 4 * cc
        if b0 & 0x10:                                        # header extension
            if len(data) < pos + 4:
                raise MediaFramingError("truncated RTP header extension")
            (words,) = struct.unpack_from(">H", data, pos + 2)
            pos += 4 + 4 * words
        end = len(data)
        if b0 & 0x20:                                        # padding
            pad = data[-1]
            if pad == 0 or pad > end - pos:
                raise MediaFramingError("bad RTP padding")
            end -= pad
        if pos > end:
            raise MediaFramingError("RTP header longer than the packet")
        csrcs = struct.unpack_from(f">{cc}I", data, 12)
        return cls(b1 & 0x7F, seq, ts, ssrc, bytes(data[pos:end]), bool(b1 & 0x80), csrcs)


def frame_rfc4571(packet: bytes) -> bytes:
    if len(packet) > 0xFFFF:
        raise MediaFramingError("an RTP packet over TCP is at most 65535 bytes")
    return struct.pack(">H", len(packet)) + packet


class RFC4571Framer:
    """Cuts a TCP byte stream into RTP packets, each preceded by a 2-byte length."""

    def __init__(self, minimum: int = 12) -> None:
        self._buf = bytearray()
        self.packets = 0
        #: The shortest frame (12: an RTP header; 8: an RTCP report with no blocks).
        self.minimum = minimum

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out = []
        pos = 0
        while len(buf) - pos >= 2:
            (n,) = struct.unpack_from(">H", buf, pos)
            if n < self.minimum:
                raise MediaFramingError(f"RTP length prefix {n} is shorter than an RTP header")
            if len(buf) - pos - 2 < n:
                break
            out.append(bytes(buf[pos + 2:pos + 2 + n]))
            pos += 2 + n
        del buf[:pos]
        self.packets += len(out)
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


class TSPacketizer:
    """RFC 2250: MPEG2-TS into RTP payload type 33, *per_packet* TS packets each,
    90 kHz timestamps from the due time (derived from the PCR), sequence numbers,
    a random SSRC, and the marker bit on a timing discontinuity."""

    def __init__(self, per_packet: int = TS_PER_RTP, ssrc: int | None = None,
                 rng: random.Random | None = None) -> None:
        r = rng or random.SystemRandom()
        self.per_packet = per_packet
        self.ssrc = ssrc if ssrc is not None else r.getrandbits(32)
        self.sequence = r.getrandbits(16)
        self._ts0 = r.getrandbits(32)
        self._last_due: float | None = None
        self._pending = b""

    def packetize(self, due: float, data: bytes) -> list[bytes]:
        data = self._pending + data
        size = self.per_packet * TS_PACKET
        whole = len(data) // size * size
        self._pending = data[whole:]
        out = []
        for i in range(0, whole, size):
            out.append(self._packet(due, data[i:i + size]))
        return out

    def flush(self, due: float) -> list[bytes]:
        if not self._pending:
            return []
        data, self._pending = self._pending, b""
        return [self._packet(due, data)]

    def timestamp(self, due: float) -> int:
        """The RTP timestamp of an instant *due* seconds into the stream (what an RTCP
        sender report pairs with the wall clock)."""
        return (self._ts0 + int(due * 90000)) & 0xFFFFFFFF

    def _packet(self, due: float, payload: bytes) -> bytes:
        marker = self._last_due is not None and (due < self._last_due or due - self._last_due > 1.0)
        self._last_due = due
        ts = (self._ts0 + int(due * 90000)) & 0xFFFFFFFF
        pkt = RTPPacket(RTP_MP2T, self.sequence, ts, self.ssrc, payload, marker).encode()
        self.sequence = (self.sequence + 1) & 0xFFFF
        return pkt


@dataclass
class Depacketizer:
    """RTP packets back into their payload; counts lost packets from sequence gaps.

    For payload type 33 the payload must be whole TS packets.
    """

    expected_types: tuple[int, ...] = ()
    packets: int = 0
    lost: int = 0
    _next_seq: int | None = field(default=None, repr=False)

    def payload(self, raw: bytes) -> bytes:
        p = RTPPacket.decode(raw)
        if self.expected_types and p.payload_type not in self.expected_types:
            raise MediaFramingError(f"RTP payload type {p.payload_type}, expected one of {self.expected_types}")
        if self._next_seq is not None and p.sequence != self._next_seq:
            self.lost += (p.sequence - self._next_seq) & 0xFFFF
        self._next_seq = (p.sequence + 1) & 0xFFFF
        self.packets += 1
        if p.payload_type == RTP_MP2T and not aligned(p.payload):
            raise MediaFramingError("an MP2T RTP payload is not whole TS packets")
        return p.payload
