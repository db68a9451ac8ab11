"""PTP-IP packets as typed, immutable values (CIPA DC-X005 section 2.3).

Each packet class knows its wire type, encodes itself with :meth:`encode`, and is
built from a packet body (the bytes after the 8-byte header) by ``decode_body``.
No I/O happens here; :mod:`ptpip.wire.framing` cuts a byte stream into packets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, Union

from .constants import (
    MAX_FRIENDLY_NAME_UNITS,
    PROTOCOL_VERSION,
    DataPhase,
    PacketType,
)
from .errors import LocalProtocolError, MalformedPacket

__all__ = [
    "DATA_TYPES",
    "HEADER",
    "HEADER_SIZE",
    "MAX_EVENT_PARAMS",
    "MAX_OPERATION_PARAMS",
    "PACKET_CLASSES",
    "Cancel",
    "Data",
    "EndData",
    "Event",
    "InitCommandAck",
    "InitCommandRequest",
    "InitEventAck",
    "InitEventRequest",
    "InitFail",
    "OperationRequest",
    "OperationResponse",
    "Packet",
    "ProbeRequest",
    "ProbeResponse",
    "StartData",
    "decode_name_and_version",
    "encode_friendly_name",
]

HEADER = struct.Struct("<II")
_U32 = struct.Struct("<I")
_OP_REQUEST = struct.Struct("<IHI")   # data phase info, operation code, transaction id
_OP_RESPONSE = struct.Struct("<HI")   # response (or event) code, transaction id
_START_DATA = struct.Struct("<IQ")    # transaction id, total length
_GUID_LEN = 16

HEADER_SIZE = HEADER.size
MAX_OPERATION_PARAMS = 5
MAX_EVENT_PARAMS = 3


def _check_u32(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
        raise LocalProtocolError(f"{name} must be a 32-bit unsigned integer, not {value!r}")


def _check_u16(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise LocalProtocolError(f"{name} must be a 16-bit unsigned integer, not {value!r}")


def _check_guid(guid: bytes) -> None:
    if not isinstance(guid, bytes) or len(guid) != _GUID_LEN:
        raise LocalProtocolError(f"a GUID is 16 bytes, not {guid!r}")


def _check_params(params: tuple[int, ...], limit: int) -> None:
    if len(params) > limit:
        raise LocalProtocolError(f"at most {limit} parameters, not {len(params)}")
    for p in params:
        _check_u32("a parameter", p)


def encode_friendly_name(name: str) -> bytes:
    """UTF-16LE with a terminating NUL; at most 40 code units including the NUL."""
    raw = name.encode("utf-16-le")
    if "\x00" in name:
        raise LocalProtocolError("a friendly name cannot contain NUL")
    if len(raw) // 2 > MAX_FRIENDLY_NAME_UNITS - 1:
        raise LocalProtocolError(
            f"a friendly name has at most {MAX_FRIENDLY_NAME_UNITS - 1} UTF-16 units, "
            f"{name!r} has {len(raw) // 2}")
    return raw + b"\x00\x00"


def _find_nul_unit(raw: bytes) -> int:
    """Offset of the first aligned UTF-16 NUL unit in *raw*, or -1."""
    i = raw.find(b"\x00\x00")
    while i != -1 and i % 2:
        i = raw.find(b"\x00\x00", i + 1)
    return i


def decode_name_and_version(raw: bytes) -> tuple[str, int]:
    """Split ``name NUL version`` leniently, as deployed initiators need.

    Accepts a missing NUL, a missing version field (taken as 1.0), and a name
    padded with extra NULs before the version.
    """
    nul = _find_nul_unit(raw)
    if nul == -1:
        # No terminator at all: the whole field is the name, the version is absent.
        name_bytes, version = raw, PROTOCOL_VERSION
    else:
        name_bytes = raw[:nul]
        rest = len(raw) - nul - 2
        if rest == 0:
            version = PROTOCOL_VERSION            # NUL but no version field
        elif len(raw) - nul == 4:
            # No NUL: what looked like one is the low half of the version field.
            version = _U32.unpack_from(raw, nul)[0]
        elif rest >= 4:
            version = _U32.unpack_from(raw, len(raw) - 4)[0]   # maybe NUL-padded
        else:
            raise MalformedPacket(f"{rest} stray bytes after the friendly name")
    if len(name_bytes) % 2:
        name_bytes = name_bytes[:-1]
    return name_bytes.decode("utf-16-le", errors="replace"), version


@dataclass(frozen=True, slots=True)
class _Packet:
    TYPE: ClassVar[PacketType]
    #: Smallest legal body (bytes after the header).
    MIN_BODY: ClassVar[int] = 0
    #: Largest legal body, or None when only the framing limit applies.
    MAX_BODY: ClassVar[int | None] = 0

    def body(self) -> bytes:
        return b""

    def encode(self) -> bytes:
        body = self.body()
        return HEADER.pack(HEADER_SIZE + len(body), self.TYPE) + body

    @classmethod
    def decode_body(cls, body: bytes) -> Packet:
        return cls()  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class InitCommandRequest(_Packet):
    """Initiator → responder, first packet on the command/data connection (2.3.1)."""

    TYPE = PacketType.INIT_COMMAND_REQUEST
    MIN_BODY = _GUID_LEN          # lenient: a missing name and version are tolerated
    MAX_BODY = None

    guid: bytes
    friendly_name: str = ""
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_guid(self.guid)
        _check_u32("the version", self.version)

    def body(self) -> bytes:
        return self.guid + encode_friendly_name(self.friendly_name) + _U32.pack(self.version)

    @classmethod
    def decode_body(cls, body: bytes) -> InitCommandRequest:
        name, version = decode_name_and_version(body[_GUID_LEN:])
        return cls(bytes(body[:_GUID_LEN]), name, version)


@dataclass(frozen=True, slots=True)
class InitCommandAck(_Packet):
    """Responder → initiator: the connection number and the responder's identity (2.3.2)."""

    TYPE = PacketType.INIT_COMMAND_ACK
    MIN_BODY = 4 + _GUID_LEN
    MAX_BODY = None

    connection_number: int
    guid: bytes
    friendly_name: str = ""
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        _check_u32("the connection number", self.connection_number)
        _check_guid(self.guid)
        _check_u32("the version", self.version)

    def body(self) -> bytes:
        return (_U32.pack(self.connection_number) + self.guid
                + encode_friendly_name(self.friendly_name) + _U32.pack(self.version))

    @classmethod
    def decode_body(cls, body: bytes) -> InitCommandAck:
        name, version = decode_name_and_version(body[4 + _GUID_LEN:])
        return cls(_U32.unpack_from(body)[0], bytes(body[4:4 + _GUID_LEN]), name, version)


@dataclass(frozen=True, slots=True)
class _U32Packet(_Packet):
    MIN_BODY = 4
    MAX_BODY = 4

    def _value(self) -> int:
        raise NotImplementedError

    def body(self) -> bytes:
        return _U32.pack(self._value())

    @classmethod
    def decode_body(cls, body: bytes) -> Packet:
        return cls(_U32.unpack_from(body)[0])  # type: ignore[call-arg,return-value]


@dataclass(frozen=True, slots=True)
class InitEventRequest(_U32Packet):
    """Initiator → responder, first packet on the event connection (2.3.3)."""

    TYPE = PacketType.INIT_EVENT_REQUEST
    connection_number: int

    def __post_init__(self) -> None:
        _check_u32("the connection number", self.connection_number)

    def _value(self) -> int:
        return self.connection_number


@dataclass(frozen=True, slots=True)
class InitEventAck(_Packet):
    """Responder → initiator: the PTP-IP connection is established (2.3.4)."""

    TYPE = PacketType.INIT_EVENT_ACK


@dataclass(frozen=True, slots=True)
class InitFail(_U32Packet):
    """Responder → initiator: establishment refused, with a reason (2.3.5)."""

    TYPE = PacketType.INIT_FAIL
    reason: int

    def __post_init__(self) -> None:
        _check_u32("the reason", self.reason)

    def _value(self) -> int:
        return self.reason


@dataclass(frozen=True, slots=True)
class Cancel(_U32Packet):
    """Initiator → responder on both connections: cancel a transaction (2.3.12)."""

    TYPE = PacketType.CANCEL
    transaction_id: int

    def __post_init__(self) -> None:
        _check_u32("the transaction id", self.transaction_id)

    def _value(self) -> int:
        return self.transaction_id


def _unpack_params(body: bytes, offset: int, limit: int) -> tuple[int, ...]:
    extra = len(body) - offset
    if extra % 4:
        raise MalformedPacket(f"{extra} parameter bytes is not a whole number of 32-bit parameters")
    count = extra // 4
    if count > limit:
        raise MalformedPacket(f"{count} parameters, at most {limit} are allowed")
    return struct.unpack_from(f"<{count}I", body, offset)


@dataclass(frozen=True, slots=True)
class OperationRequest(_Packet):
    """A PTP operation request (2.3.6). Parameters are counted from the length."""

    TYPE = PacketType.OPERATION_REQUEST
    MIN_BODY = _OP_REQUEST.size
    MAX_BODY = _OP_REQUEST.size + 4 * MAX_OPERATION_PARAMS

    data_phase: int
    code: int
    transaction_id: int
    params: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_u32("the data phase info", self.data_phase)
        _check_u16("the operation code", self.code)
        _check_u32("the transaction id", self.transaction_id)
        object.__setattr__(self, "params", tuple(self.params))
        _check_params(self.params, MAX_OPERATION_PARAMS)

    def body(self) -> bytes:
        return (_OP_REQUEST.pack(self.data_phase, self.code, self.transaction_id)
                + struct.pack(f"<{len(self.params)}I", *self.params))

    @classmethod
    def decode_body(cls, body: bytes) -> OperationRequest:
        phase, code, tid = _OP_REQUEST.unpack_from(body)
        return cls(phase, code, tid, _unpack_params(body, _OP_REQUEST.size, MAX_OPERATION_PARAMS))

    @property
    def data_out(self) -> bool:
        return self.data_phase == DataPhase.DATA_OUT


@dataclass(frozen=True, slots=True)
class _CodePacket(_Packet):
    MIN_BODY = _OP_RESPONSE.size
    LIMIT: ClassVar[int] = MAX_OPERATION_PARAMS

    code: int
    transaction_id: int
    params: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_u16("the code", self.code)
        _check_u32("the transaction id", self.transaction_id)
        object.__setattr__(self, "params", tuple(self.params))
        _check_params(self.params, self.LIMIT)

    def body(self) -> bytes:
        return (_OP_RESPONSE.pack(self.code, self.transaction_id)
                + struct.pack(f"<{len(self.params)}I", *self.params))

    @classmethod
    def decode_body(cls, body: bytes) -> Packet:
        code, tid = _OP_RESPONSE.unpack_from(body)
        return cls(code, tid, _unpack_params(body, _OP_RESPONSE.size, cls.LIMIT))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class OperationResponse(_CodePacket):
    """A PTP operation response (2.3.7), echoing the request's transaction id."""

    TYPE = PacketType.OPERATION_RESPONSE
    MAX_BODY = _OP_RESPONSE.size + 4 * MAX_OPERATION_PARAMS


@dataclass(frozen=True, slots=True)
class Event(_CodePacket):
    """A PTP event on the event connection (2.3.8); 0–3 parameters."""

    TYPE = PacketType.EVENT
    MAX_BODY = _OP_RESPONSE.size + 4 * MAX_EVENT_PARAMS
    LIMIT = MAX_EVENT_PARAMS


@dataclass(frozen=True, slots=True)
class StartData(_Packet):
    """Opens a data phase with the total length, or UNKNOWN_LENGTH (2.3.9)."""

    TYPE = PacketType.START_DATA
    MIN_BODY = _START_DATA.size
    MAX_BODY = _START_DATA.size

    transaction_id: int
    total_length: int

    def __post_init__(self) -> None:
        _check_u32("the transaction id", self.transaction_id)
        if not isinstance(self.total_length, int) or not 0 <= self.total_length <= 0xFFFFFFFFFFFFFFFF:
            raise LocalProtocolError(f"a total length is a 64-bit unsigned integer, not {self.total_length!r}")

    def body(self) -> bytes:
        return _START_DATA.pack(self.transaction_id, self.total_length)

    @classmethod
    def decode_body(cls, body: bytes) -> StartData:
        return cls(*_START_DATA.unpack_from(body))


@dataclass(frozen=True, slots=True)
class _PayloadPacket(_Packet):
    MIN_BODY = 4
    MAX_BODY = None

    transaction_id: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        _check_u32("the transaction id", self.transaction_id)

    def header(self, payload_length: int | None = None) -> bytes:
        """The 12 bytes before the payload, so a large payload is written without a copy."""
        n = len(self.payload) if payload_length is None else payload_length
        return HEADER.pack(HEADER_SIZE + 4 + n, self.TYPE) + _U32.pack(self.transaction_id)

    def body(self) -> bytes:
        return _U32.pack(self.transaction_id) + bytes(self.payload)

    @classmethod
    def decode_body(cls, body: bytes) -> Packet:
        return cls(_U32.unpack_from(body)[0], bytes(body[4:]))  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Data(_PayloadPacket):
    """A piece of a data phase (2.3.10)."""

    TYPE = PacketType.DATA


@dataclass(frozen=True, slots=True)
class EndData(_PayloadPacket):
    """The last piece of a data phase; its payload may be empty (2.3.11)."""

    TYPE = PacketType.END_DATA


@dataclass(frozen=True, slots=True)
class ProbeRequest(_Packet):
    """Either side asks "are you alive?" on the event connection (2.3.13)."""

    TYPE = PacketType.PROBE_REQUEST


@dataclass(frozen=True, slots=True)
class ProbeResponse(_Packet):
    """The immediate answer to a Probe Request (2.3.14)."""

    TYPE = PacketType.PROBE_RESPONSE


Packet = Union[  # noqa: UP007 (a long union reads better one per line)
    InitCommandRequest, InitCommandAck, InitEventRequest, InitEventAck, InitFail,
    OperationRequest, OperationResponse, Event, StartData, Data, Cancel, EndData,
    ProbeRequest, ProbeResponse,
]

PACKET_CLASSES: dict[int, type[_Packet]] = {
    cls.TYPE: cls for cls in (
        InitCommandRequest, InitCommandAck, InitEventRequest, InitEventAck, InitFail,
        OperationRequest, OperationResponse, Event, StartData, Data, Cancel, EndData,
        ProbeRequest, ProbeResponse)
}

#: Packet types whose payload is streamed rather than buffered.
DATA_TYPES = frozenset({PacketType.DATA, PacketType.END_DATA})
