"""Incremental, I/O-free PTP-IP framing: bytes in, packets out.

Modelled on h11: call :meth:`PacketParser.receive_data` with whatever bytes
arrived (split anywhere, several packets at once), then :meth:`next_event`
until it returns :data:`NEED_DATA`.

The 8-byte header is checked the moment it is complete, before any body is
awaited: a length below 8, an unknown type, a non-data packet above the
configured maximum, or a length that cannot hold the type's fixed fields raises
a specific :class:`~ptpip.wire.errors.FramingError` at once.

Data and End Data payloads are never gathered into one buffer: each call hands
on what has arrived so far of the payload as a :class:`~ptpip.wire.packets.Data`
value. The last piece of an End Data packet comes as an
:class:`~ptpip.wire.packets.EndData` value (possibly with an empty payload), so the
data phase is the concatenation of the payloads in order, and an ``EndData``
marks its end. A 4 GiB object never sits in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from .constants import PacketType
from .errors import (
    FramingError,
    MalformedPacket,
    PacketTooLarge,
    PacketTooShort,
    UnknownPacketType,
)
from .packets import (
    DATA_TYPES,
    HEADER,
    HEADER_SIZE,
    PACKET_CLASSES,
    Data,
    EndData,
    Packet,
)

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "NEED_DATA",
    "PacketParser",
    "decode_packet",
]

#: Largest non-data packet accepted by default. The longest legal one is an
#: Init Command Request/Ack with a 40-unit name (112 bytes); lenient names get headroom.
DEFAULT_MAX_PACKET_SIZE: Final = 1024


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`PacketParser.next_event` when more bytes are needed.
NEED_DATA: Final = _NeedData()

_COMPACT_AT = 1 << 16


class PacketParser:
    """Cuts a PTP-IP byte stream into packets.

    :param max_packet_size: largest accepted length of a non-data packet.
    """

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self._buf = bytearray()
        self._pos = 0
        # The header of the packet being read, once validated.
        self._length = 0
        self._type: int | None = None
        # For Data/End Data: transaction id and payload bytes still to come.
        self._data_tid: int | None = None
        self._remaining = 0
        self._error: FramingError | None = None
        # A received chunk held as is while it is payload (no copy), and our offset in it.
        self._direct: bytes | None = None
        self._dpos = 0

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as (part of) a packet."""
        direct = len(self._direct) - self._dpos if self._direct is not None else 0
        return len(self._buf) - self._pos + direct

    @property
    def in_packet(self) -> bool:
        """True while a packet has been started but not completely received."""
        return self._type is not None or self.pending > 0

    def receive_data(self, data: bytes) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        if not self._buf and self._direct is None and self._data_tid is not None and self._remaining:
            # Fast path for bulk data: hand the payload on without copying it into the buffer.
            self._direct = bytes(data) if not isinstance(data, bytes) else data
            self._dpos = 0
            return
        self._flush_direct()
        self._buf += data

    def _flush_direct(self) -> None:
        """Move what is left of a directly held chunk into the buffer."""
        if self._direct is not None:
            rest = self._direct[self._dpos:]
            self._direct = None
            self._buf += rest

    def events(self) -> Iterator[Packet]:
        """Every packet (or data piece) that can be parsed from the bytes so far."""
        while True:
            event = self.next_event()
            if event is NEED_DATA:
                return
            yield event  # type: ignore[misc]

    def next_event(self) -> Packet | _NeedData:
        if self._error is not None:
            raise self._error
        try:
            event = self._next()
        except FramingError as e:
            self._error = e
            raise
        if self._pos >= _COMPACT_AT and self._pos * 2 >= len(self._buf):
            del self._buf[:self._pos]
            self._pos = 0
        return event

    def _next(self) -> Packet | _NeedData:
        if self._direct is not None:
            if self._data_tid is not None and self._remaining:
                return self._next_direct()
            self._flush_direct()
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if self._type is None:
            if avail < HEADER_SIZE:
                return NEED_DATA
            length, ptype = HEADER.unpack_from(buf, pos)
            self._check_header(length, ptype)
            self._length, self._type = length, ptype
            self._pos = pos = pos + HEADER_SIZE
            avail -= HEADER_SIZE
        ptype, body_len = self._type, self._length - HEADER_SIZE
        if ptype in DATA_TYPES:
            return self._next_payload(avail)
        if avail < body_len:
            return NEED_DATA
        body = bytes(buf[pos:pos + body_len])
        self._pos = pos + body_len
        self._type = None
        return PACKET_CLASSES[ptype].decode_body(body)

    def _next_payload(self, avail: int) -> Packet | _NeedData:
        if self._data_tid is None:
            if avail < 4:
                return NEED_DATA
            self._data_tid = int.from_bytes(self._buf[self._pos:self._pos + 4], "little")
            self._pos += 4
            avail -= 4
            self._remaining = self._length - HEADER_SIZE - 4
        n = min(avail, self._remaining)
        if n == 0 and self._remaining:
            return NEED_DATA
        chunk = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        self._remaining -= n
        tid = self._data_tid
        if self._remaining:
            return Data(tid, chunk)
        end = self._type == PacketType.END_DATA
        self._type = self._data_tid = None
        return EndData(tid, chunk) if end else Data(tid, chunk)

    def _next_direct(self) -> Packet:
        direct, dpos = self._direct, self._dpos
        assert direct is not None
        n = min(len(direct) - dpos, self._remaining)
        chunk = direct[dpos:dpos + n] if (dpos or n != len(direct)) else direct
        self._dpos = dpos + n
        if self._dpos == len(direct):
            self._direct = None
        self._remaining -= n
        tid = self._data_tid
        assert tid is not None
        if self._remaining:
            return Data(tid, chunk)
        end = self._type == PacketType.END_DATA
        self._type = self._data_tid = None
        return EndData(tid, chunk) if end else Data(tid, chunk)

    def _check_header(self, length: int, ptype: int) -> None:
        if length < HEADER_SIZE:
            raise PacketTooShort(f"declared length {length} is below the 8-byte header")
        cls = PACKET_CLASSES.get(ptype)
        if cls is None:
            raise UnknownPacketType(f"unknown packet type 0x{ptype:08X}")
        if ptype not in DATA_TYPES and length > self.max_packet_size:
            raise PacketTooLarge(
                f"{PacketType(ptype).name} packet of {length} bytes exceeds the limit of {self.max_packet_size}")
        body_len = length - HEADER_SIZE
        if body_len < cls.MIN_BODY:
            raise PacketTooShort(
                f"{PacketType(ptype).name} packet of {length} bytes cannot hold its fixed fields "
                f"({HEADER_SIZE + cls.MIN_BODY} bytes)")
        if cls.MAX_BODY is not None and body_len > cls.MAX_BODY:
            raise MalformedPacket(
                f"{PacketType(ptype).name} packet of {length} bytes is longer than its largest form "
                f"({HEADER_SIZE + cls.MAX_BODY} bytes)")


def decode_packet(raw: bytes) -> Packet:
    """Decode exactly one complete packet (header included). For tests and tools."""
    parser = PacketParser()
    parser.receive_data(raw)
    events = list(parser.events())
    if parser.in_packet and not events:
        raise PacketTooShort(f"truncated packet: {len(raw)} bytes")
    if len(events) != 1 or parser.pending:
        raise MalformedPacket(f"expected exactly one packet in {len(raw)} bytes")
    return events[0]
