"""RTCP (RFC 3550 section 6), pure: the sender reports, source descriptions and BYE an RTP
sender sends, and the receiver reports it reads back.

Times: an SR pairs a wall-clock instant (NTP format, seconds since 1900) with the RTP
timestamp of that instant on the stream's own clock (for MPEG2-TS, 90 kHz derived from
the PCR), which is how a receiver syncs and measures.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SR = 200
RR = 201
SDES = 202
BYE = 203
#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_UNIX = 2208988800


def _header(count: int, pt: int, words: int) -> bytes:
    """The common header: version 2, no padding, *count*, *pt*, length in 32-bit words - 1."""
    return struct.pack("!BBH", 0x80 | count, pt, words - 1)


def ntp(unix: float) -> tuple[int, int]:
    """A Unix time as NTP (seconds, fraction)."""
    seconds = int(unix) + NTP_UNIX
    return seconds & 0xFFFFFFFF, int((unix % 1) * (1 << 32)) & 0xFFFFFFFF


def sender_report(ssrc: int, unix: float, rtp_ts: int, packets: int, octets: int) -> bytes:
    hi, lo = ntp(unix)
    body = struct.pack("!IIIIII", ssrc, hi, lo, rtp_ts & 0xFFFFFFFF, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
    return _header(0, SR, 1 + len(body) // 4) + body


def source_description(ssrc: int, cname: str) -> bytes:
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\0"       # CNAME, then the end
    chunk += b"\0" * (-len(chunk) % 4)
    return _header(1, SDES, 1 + len(chunk) // 4) + chunk


def bye(ssrc: int, reason: str = "") -> bytes:
    body = struct.pack("!I", ssrc)
    if reason:
        text = reason.encode()[:255]
        body += bytes([len(text)]) + text
        body += b"\0" * (-len(body) % 4)
    return _header(1, BYE, 1 + len(body) // 4) + body


@dataclass(frozen=True)
class ReportBlock:
    """What a receiver says of one source: loss since its last report (a fraction of 256),
    packets lost in all, the highest sequence number seen, and the interarrival jitter
    (RTP timestamp units)."""

    reporter: int
    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int

    @property
    def loss(self) -> float:
        """The fraction lost since the last report, 0..1."""
        return self.fraction_lost / 256


def report_blocks(data: bytes) -> list[ReportBlock]:
    """The report blocks of every SR and RR in a compound RTCP packet; anything that is
    not RTCP (or is cut short) is ignored."""
    out: list[ReportBlock] = []
    at = 0
    while at + 4 <= len(data):
        first, pt, length = struct.unpack_from("!BBH", data, at)
        size = (length + 1) * 4
        if first >> 6 != 2 or at + size > len(data) or not 200 <= pt <= 204:
            break
        count = first & 0x1F
        if pt in (SR, RR) and size >= 8:
            reporter = struct.unpack_from("!I", data, at + 4)[0]
            blocks = at + 8 + (20 if pt == SR else 0)
            for i in range(count):
                b = blocks + 24 * i
                if b + 24 > at + size:
                    break
                ssrc, lost_word, highest, jitter = struct.unpack_from("!IIII", data, b)
                cumulative = lost_word & 0xFFFFFF
                if cumulative & 0x800000:
                    cumulative -= 1 << 24
                out.append(ReportBlock(reporter, ssrc, lost_word >> 24, cumulative, highest, jitter))
        at += size
    return out


def receiver_report(ssrc: int, source: int, fraction_lost: int, cumulative_lost: int, highest: int,
                    jitter: int) -> bytes:
    """An RR with one report block (what a receiver sends; here for tests and the client)."""
    block = struct.pack("!IIIIII", source, ((fraction_lost & 0xFF) << 24) | (cumulative_lost & 0xFFFFFF),
                        highest, jitter, 0, 0)
    return _header(1, RR, 2 + len(block) // 4) + struct.pack("!I", ssrc) + block


def is_rtcp(data: bytes) -> bool:
    """RFC 5761: on a shared port, RTCP is what has payload type 200-204 in its second byte."""
    return len(data) >= 8 and data[0] >> 6 == 2 and 200 <= data[1] <= 204
