"""RTP payload type 26, JPEG (RFC 2435), pure: a camera's live view frames sent as they
are, without an encoder.

RFC 2435 carries only the entropy-coded scan of a baseline JPEG; the receiver rebuilds
the headers from the 8-byte JPEG header (type, width, height) with the standard Huffman
tables of ITU-T T.81 Annex K. So a frame goes as it is when it is a baseline YCbCr JPEG
with 4:2:2 (type 0) or 4:2:0 (type 1) sampling, those standard tables and 8-bit
quantisation tables (sent in band, Q = 255, in the first packet of the frame); restart
markers make it type 64/65. :func:`parse_jpeg` says why a frame cannot go as it is
(:class:`UnsupportedJPEG`), so the glue can re-encode it.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass

from .errors import CCCPError
from .media import RTPPacket

RTP_JPEG = 26
#: The RTP clock of payload type 26.
JPEG_HZ = 90_000
#: Payload bytes per packet (RTP header and JPEG headers come on top: under a 1500 MTU).
MAX_PAYLOAD = 1400
#: RFC 2435 sizes are in units of 8 pixels in one byte.
MAX_SIDE = 2040

#: The standard Huffman tables (T.81 Annex K), by (class << 4 | id): a digest of BITS+HUFFVAL.
_STANDARD_HUFFMAN = {
    0x00: "2f66814c875b5317", 0x01: "602f734c8c12c1d9",          # DC luminance, chrominance
    0x10: "a6283a08f5d97906", 0x11: "13f90e3c9dc476c6",          # AC luminance, chrominance
}


class UnsupportedJPEG(CCCPError):
    """A JPEG that RFC 2435 cannot carry as it is (the message says why)."""


@dataclass(frozen=True)
class JPEGFrame:
    """What RFC 2435 needs of a JPEG."""

    width: int
    height: int
    #: 0 (4:2:2) or 1 (4:2:0), +64 with restart markers.
    type: int
    #: The luminance and chrominance quantisation tables, 64 bytes each, zigzag order.
    tables: bytes
    restart_interval: int
    scan: bytes


def parse_jpeg(data: bytes) -> JPEGFrame:
    """The RFC 2435 view of a JPEG; :class:`UnsupportedJPEG` when it cannot go as it is
    (a malformed one included: a camera's frame never raises anything else)."""
    try:
        return _parse(data)
    except (struct.error, IndexError, ValueError) as e:
        raise UnsupportedJPEG(f"a malformed JPEG ({e})") from None


def _parse(data: bytes) -> JPEGFrame:
    if not data.startswith(b"\xff\xd8"):
        raise UnsupportedJPEG("not a JPEG (no SOI)")
    pos, qt, huffman = 2, {}, {}
    sof: bytes | None = None
    restart = 0
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1                                          # fill bytes
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise UnsupportedJPEG(f"a broken marker at byte {pos}")
        marker = data[pos + 1]
        (length,) = struct.unpack_from(">H", data, pos + 2)
        seg = data[pos + 4:pos + 2 + length]
        if length < 2 or len(seg) != length - 2:
            raise UnsupportedJPEG(f"a truncated segment 0xFF{marker:02X}")
        if marker == 0xDB:
            p = 0
            while p < len(seg):
                precision, ident = seg[p] >> 4, seg[p] & 0x0F
                if precision:
                    raise UnsupportedJPEG("16-bit quantisation tables")
                if p + 65 > len(seg):
                    raise UnsupportedJPEG("a truncated quantisation table")
                qt[ident] = seg[p + 1:p + 65]
                p += 65
        elif marker == 0xC4:
            p = 0
            while p + 17 <= len(seg):
                n = sum(seg[p + 1:p + 17])
                huffman[seg[p]] = hashlib.sha256(seg[p + 1:p + 17 + n]).hexdigest()[:16]
                p += 17 + n
        elif marker in (0xC0, 0xC1):
            sof = seg
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise UnsupportedJPEG(f"not a baseline JPEG (SOF 0xFF{marker:02X})")
        elif marker == 0xDD:
            if len(seg) != 2:
                raise UnsupportedJPEG("a restart interval segment that is not 2 bytes")
            (restart,) = struct.unpack_from(">H", seg)
        elif marker == 0xDA:
            scan_start = pos + 2 + length
            return _frame(data, sof, qt, huffman, restart, seg, scan_start)
        pos += 2 + length


def _frame(data: bytes, sof: bytes | None, qt: dict[int, bytes], huffman: dict[int, str],
           restart: int, sos: bytes, scan_start: int) -> JPEGFrame:
    if sof is None:
        raise UnsupportedJPEG("no frame header (SOF) before the scan")
    precision, height, width, ncomp = struct.unpack_from(">BHHB", sof)
    if precision != 8 or ncomp != 3:
        raise UnsupportedJPEG(f"{ncomp} components of {precision} bits (RFC 2435 wants YCbCr, 8 bits)")
    if len(sof) < 6 + 3 * ncomp or len(sos) < 1 + 2 * 3:
        raise UnsupportedJPEG("a truncated frame or scan header")
    comps = [sof[6 + 3 * i:9 + 3 * i] for i in range(3)]
    sampling = [c[1] for c in comps]
    if sampling[1:] != [0x11, 0x11] or sampling[0] not in (0x21, 0x22):
        raise UnsupportedJPEG("sampling other than 4:2:2 or 4:2:0")
    if comps[1][2] != comps[2][2]:
        raise UnsupportedJPEG("two chrominance quantisation tables")
    if not 0 < width <= MAX_SIDE or not 0 < height <= MAX_SIDE:
        raise UnsupportedJPEG(f"{width}x{height} is over RFC 2435's {MAX_SIDE} pixels a side")
    if any(huffman.get(k) != v for k, v in _STANDARD_HUFFMAN.items()):
        raise UnsupportedJPEG("Huffman tables other than the standard ones")
    if sos[0] != 3 or [sos[2 + 2 * i] for i in range(3)] != [0x00, 0x11, 0x11]:
        raise UnsupportedJPEG("a scan that does not use the standard table selectors")
    try:
        tables = qt[comps[0][2]] + qt[comps[1][2]]
    except KeyError:
        raise UnsupportedJPEG("a quantisation table used but not defined") from None
    end = data.rfind(b"\xff\xd9")
    scan = data[scan_start:end if end >= scan_start else len(data)]
    if len(scan) >= 1 << 24:
        raise UnsupportedJPEG("a scan over RFC 2435's 16 MiB of fragment offsets")
    kind = (0 if sampling[0] == 0x21 else 1) + (64 if restart else 0)
    return JPEGFrame(width, height, kind, tables, restart, scan)


class JPEGPacketizer:
    """Frames into RTP/JPEG packets: 90 kHz timestamps from the time given, one sequence,
    a random SSRC, the marker bit on the last packet of a frame."""

    def __init__(self, ssrc: int | None = None, rng: random.Random | None = None,
                 max_payload: int = MAX_PAYLOAD) -> None:
        r = rng or random.SystemRandom()
        self.ssrc = ssrc if ssrc is not None else r.getrandbits(32)
        self.sequence = r.getrandbits(16)
        self._ts0 = r.getrandbits(32)
        self.max_payload = max_payload
        self.frames = 0

    def packetize(self, frame: JPEGFrame, seconds: float) -> list[bytes]:
        ts = (self._ts0 + int(seconds * JPEG_HZ)) & 0xFFFFFFFF
        out: list[bytes] = []
        offset = 0
        size = len(frame.scan)
        while offset < size or not out:
            head = struct.pack(">I", offset & 0xFFFFFF)                # type-specific 0 + offset
            head += bytes([frame.type, 255, (frame.width + 7) // 8, (frame.height + 7) // 8])
            if frame.type & 64:
                head += struct.pack(">HH", frame.restart_interval, 0xFFFF)   # F = L = 1, count all ones
            if offset == 0:
                head += struct.pack(">BBH", 0, 0, len(frame.tables)) + frame.tables
            room = max(1, self.max_payload - len(head))
            chunk = frame.scan[offset:offset + room]
            offset += len(chunk)
            out.append(RTPPacket(RTP_JPEG, self.sequence, ts, self.ssrc, head + chunk,
                                 marker=offset >= size).encode())
            self.sequence = (self.sequence + 1) & 0xFFFF
        self.frames += 1
        return out


def sdp(port: int, address: str = "127.0.0.1") -> str:
    """An SDP description of an RTP/JPEG stream arriving on *address*:*port* (for ffprobe)."""
    return (f"v=0\r\no=- 0 0 IN IP4 {address}\r\ns=cccp live\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
            f"m=video {port} RTP/AVP {RTP_JPEG}\r\na=rtpmap:{RTP_JPEG} JPEG/{JPEG_HZ}\r\n")
