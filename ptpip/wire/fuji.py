"""Fujifilm's PTP/IP variant, as libgphoto2's ``camlibs/ptp2/fujiptpip.c`` speaks it.

Fuji X cameras do not speak CIPA DC-X005. Their command channel (port 55740) starts
with an 82-byte init request (``u32 len, u32 type 1, u32 0x8F53E4F2, GUID, host name in
UCS-2``) that libgphoto2 sends twice, each answered with an ack (``u32 len, u32 type 2,
u32 connection number, GUID, NUL-terminated UCS-2 name``) or a fail (type 5). After it
every packet is a USB-style container::

    u32 length | u16 type (1 command, 2 data, 3 response, 4 event) | u16 code | u32 tid | payload

A command is always type 1 (the responder knows from the operation whether data
follows); a data phase is exactly one data container; events go on a second socket
(port 55741) with no handshake. Pure: :class:`FujiDecoder` turns bytes into packets,
the encoders turn packets into bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import RemoteProtocolError

DEFAULT_COMMAND_PORT = 55740
DEFAULT_EVENT_PORT = 55741

#: The "protocol version" at +8 of the init request.
INIT_MAGIC = 0x8F53E4F2
INIT_REQUEST_LENGTH = 82
INIT_REQUEST, INIT_ACK, INIT_FAIL = 1, 2, 5
COMMAND, DATA, RESPONSE, EVENT = 1, 2, 3, 4

HEADER = struct.Struct("<IHHI")
#: Longest name an init request carries, in characters.
MAX_HOST_NAME = 26


@dataclass(frozen=True)
class InitRequest:
    guid: bytes
    host_name: str

    def encode(self) -> bytes:
        name = self.host_name.encode("utf-16-le")[:2 * MAX_HOST_NAME]
        body = struct.pack("<III", INIT_REQUEST_LENGTH, INIT_REQUEST, INIT_MAGIC) + self.guid + name
        return body.ljust(INIT_REQUEST_LENGTH, b"\0")


@dataclass(frozen=True)
class InitAck:
    connection_number: int
    guid: bytes
    name: str

    def encode(self) -> bytes:
        body = struct.pack("<I", self.connection_number) + self.guid + self.name.encode("utf-16-le") + b"\0\0"
        return struct.pack("<II", 8 + len(body), INIT_ACK) + body


@dataclass(frozen=True)
class InitFail:
    reason: int

    def encode(self) -> bytes:
        return struct.pack("<III", 12, INIT_FAIL, self.reason)


@dataclass(frozen=True)
class Container:
    kind: int
    code: int
    transaction_id: int
    payload: bytes = b""
    params: tuple[int, ...] = field(default=())

    def encode(self) -> bytes:
        body = self.payload + b"".join(struct.pack("<I", p) for p in self.params)
        return HEADER.pack(HEADER.size + len(body), self.kind, self.code, self.transaction_id) + body


def container_header(kind: int, code: int, transaction_id: int, payload_length: int) -> bytes:
    """The 12 bytes before a payload streamed on its own (a large GetObject)."""
    if HEADER.size + payload_length > 0xFFFFFFFF:
        raise RemoteProtocolError(f"{payload_length} bytes do not fit a Fuji container")
    return HEADER.pack(HEADER.size + payload_length, kind, code, transaction_id)


def command_params(c: Container) -> tuple[int, ...]:
    """The parameters of a command container (its payload as u32s, at most five)."""
    n = len(c.payload) // 4
    if len(c.payload) % 4 or n > 5:
        raise RemoteProtocolError(f"a command with {len(c.payload)} bytes of parameters")
    return struct.unpack(f"<{n}I", c.payload)


class FujiDecoder:
    """Bytes in, packets out, for either side of the command channel.

    Packets may arrive split anywhere or several at once. A packet longer than
    *max_packet* (or shorter than its header) is a protocol error: the peer is not
    answered without limit.
    """

    def __init__(self, max_packet: int = 1 << 16, side: str = "responder") -> None:
        self.max_packet = max_packet
        #: "responder" reads init requests and containers, "initiator" acks, fails and containers.
        self.side = side
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[InitRequest | InitAck | InitFail | Container]:
        self._buf += data
        out: list[InitRequest | InitAck | InitFail | Container] = []
        while len(self._buf) >= 8:
            (length,) = struct.unpack_from("<I", self._buf)
            if length < 8 or length > self.max_packet:
                raise RemoteProtocolError(f"a Fuji packet of {length} bytes")
            if len(self._buf) < length:
                break
            raw = bytes(self._buf[:length])
            del self._buf[:length]
            out.append(decode(raw, self.side))
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def decode(raw: bytes, side: str = "responder") -> InitRequest | InitAck | InitFail | Container:
    """One whole packet, as *side* reads it. An init packet is told from a container by its
    shape: the init request's ``u32 type 1`` reads as command code 0 and its magic as the
    tid; a responder never takes anything for an ack, an initiator never for a request."""
    length, kind32 = struct.unpack_from("<II", raw)
    if side == "responder" and length == INIT_REQUEST_LENGTH and kind32 == INIT_REQUEST \
            and struct.unpack_from("<I", raw, 8)[0] == INIT_MAGIC:
        guid = raw[12:28]
        name = raw[28:].decode("utf-16-le", "replace").split("\0")[0]
        return InitRequest(guid, name)
    if side == "initiator" and kind32 == INIT_ACK and length >= 30:
        (number,) = struct.unpack_from("<I", raw, 8)
        name = raw[28:].decode("utf-16-le", "replace").split("\0")[0]
        return InitAck(number, raw[12:28], name)
    if side == "initiator" and kind32 == INIT_FAIL and length == 12:
        return InitFail(struct.unpack_from("<I", raw, 8)[0])
    if length < HEADER.size:
        raise RemoteProtocolError(f"a Fuji container of {length} bytes")
    _, kind, code, tid = HEADER.unpack_from(raw)
    if kind not in (COMMAND, DATA, RESPONSE, EVENT):
        raise RemoteProtocolError(f"a Fuji container of type {kind}")
    return Container(kind, code, tid, raw[HEADER.size:])
