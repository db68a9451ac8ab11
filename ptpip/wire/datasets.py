"""PTP datasets (ISO 15740 clause 5): strings, arrays, typed values, DeviceInfo,
StorageInfo, ObjectInfo and DevicePropDesc. Pure: bytes in, values out.

Malformed datasets from a peer raise :class:`DatasetError`, which carries the
response code a responder answers with (InvalidDevicePropFormat for a bad value,
NoValidObjectInfo for a bad ObjectInfo, GeneralError otherwise).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .constants import DataType, ResponseCode
from .errors import RemoteProtocolError

__all__ = [
    "ARRAY_FLAG",
    "FORM_ENUM",
    "FORM_NONE",
    "FORM_RANGE",
    "MAX_STRING_UNITS",
    "DatasetError",
    "DeviceInfo",
    "DevicePropDesc",
    "ObjectInfo",
    "Reader",
    "StorageInfo",
    "is_array",
    "pack_array",
    "pack_scalar",
    "pack_string",
    "pack_u32_array",
    "pack_value",
    "unpack_u32_array",
    "unpack_value",
    "value_range",
]

MAX_STRING_UNITS = 255

_SCALAR: dict[int, struct.Struct] = {
    DataType.INT8: struct.Struct("<b"),
    DataType.UINT8: struct.Struct("<B"),
    DataType.INT16: struct.Struct("<h"),
    DataType.UINT16: struct.Struct("<H"),
    DataType.INT32: struct.Struct("<i"),
    DataType.UINT32: struct.Struct("<I"),
    DataType.INT64: struct.Struct("<q"),
    DataType.UINT64: struct.Struct("<Q"),
}
_INT128: dict[int, bool] = {DataType.INT128: True, DataType.UINT128: False}
_U8 = _SCALAR[DataType.UINT8]
_U16 = _SCALAR[DataType.UINT16]
_U32 = _SCALAR[DataType.UINT32]
_U64 = _SCALAR[DataType.UINT64]

ARRAY_FLAG = 0x4000


class DatasetError(RemoteProtocolError):
    """A dataset that cannot be decoded."""

    fail_reason = None
    response_code = ResponseCode.GeneralError


def is_array(datatype: int) -> bool:
    return datatype & ARRAY_FLAG == ARRAY_FLAG and datatype != DataType.STR


def value_range(datatype: int) -> tuple[int, int]:
    """The smallest and largest integer of an integer *datatype*."""
    base = datatype & ~ARRAY_FLAG
    if base in _INT128:
        bits, signed = 128, _INT128[base]
    elif base in _SCALAR:
        size = _SCALAR[base].size
        bits, signed = size * 8, _SCALAR[base].format[-1].islower()
    else:
        raise ValueError(f"not an integer datatype: 0x{datatype:04X}")
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


class Reader:
    """Reads PTP fields from a dataset, advancing an offset."""

    def __init__(self, data: bytes, error: ResponseCode = ResponseCode.GeneralError) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.error = error

    def _fail(self, what: str) -> DatasetError:
        return DatasetError(f"dataset truncated or malformed at byte {self.pos}: {what}",
                            response_code=self.error)

    def unpack(self, st: struct.Struct) -> Any:
        if self.pos + st.size > len(self.data):
            raise self._fail(f"need {st.size} bytes")
        (v,) = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return v

    def u8(self) -> int:
        return int(self.unpack(_U8))

    def u16(self) -> int:
        return int(self.unpack(_U16))

    def u32(self) -> int:
        return int(self.unpack(_U32))

    def u64(self) -> int:
        return int(self.unpack(_U64))

    def string(self) -> str:
        n = self.u8()
        if n == 0:
            return ""
        end = self.pos + 2 * n
        if end > len(self.data):
            raise self._fail(f"string of {n} units")
        raw = self.data[self.pos:end]
        self.pos = end
        text = raw.decode("utf-16-le", errors="replace")
        return text[:-1] if text.endswith("\x00") else text

    def array(self, datatype: int) -> list[int]:
        count = self.u32()
        base = datatype & ~ARRAY_FLAG
        if base not in _INT128 and base not in _SCALAR:
            raise self._fail(f"unknown datatype 0x{datatype:04X}")
        size = 16 if base in _INT128 else _SCALAR[base].size
        if self.pos + count * size > len(self.data):
            raise self._fail(f"array of {count} elements")
        return [self.scalar(base) for _ in range(count)]

    def scalar(self, datatype: int) -> int:
        if datatype in _INT128:
            if self.pos + 16 > len(self.data):
                raise self._fail("need 16 bytes")
            v = int.from_bytes(self.data[self.pos:self.pos + 16], "little", signed=_INT128[datatype])
            self.pos += 16
            return v
        st = _SCALAR.get(datatype)
        if st is None:
            raise self._fail(f"unknown datatype 0x{datatype:04X}")
        return int(self.unpack(st))

    def value(self, datatype: int) -> Any:
        if datatype == DataType.STR:
            return self.string()
        if is_array(datatype):
            return self.array(datatype)
        return self.scalar(datatype)

    def end(self) -> None:
        """Accept trailing bytes silently (vendors append fields); nothing to check."""


def pack_string(text: str) -> bytes:
    if not text:
        return b"\x00"
    raw = text.encode("utf-16-le") + b"\x00\x00"
    units = len(raw) // 2
    if units > MAX_STRING_UNITS:
        raise ValueError(f"a PTP string holds at most {MAX_STRING_UNITS - 1} units: {text[:20]!r}…")
    return bytes([units]) + raw


def pack_scalar(datatype: int, value: int) -> bytes:
    if datatype in _INT128:
        return int(value).to_bytes(16, "little", signed=_INT128[datatype])
    try:
        return _SCALAR[datatype].pack(value)
    except KeyError:
        raise ValueError(f"unknown datatype 0x{datatype:04X}") from None
    except struct.error as e:
        raise ValueError(f"{value!r} does not fit datatype 0x{datatype:04X}: {e}") from None


def pack_array(datatype: int, values: Sequence[int]) -> bytes:
    base = datatype & ~ARRAY_FLAG
    return _U32.pack(len(values)) + b"".join(pack_scalar(base, v) for v in values)


def pack_value(datatype: int, value: Any) -> bytes:
    if datatype == DataType.STR:
        return pack_string(value)
    if is_array(datatype):
        return pack_array(datatype, value)
    return pack_scalar(datatype, value)


def unpack_value(datatype: int, data: bytes) -> Any:
    """A whole property value dataset (SetDevicePropValue), strictly sized."""
    r = Reader(data, ResponseCode.InvalidDevicePropFormat)
    v = r.value(datatype)
    if r.pos != len(r.data):
        raise DatasetError(f"{len(r.data) - r.pos} bytes after the value",
                           response_code=ResponseCode.InvalidDevicePropFormat)
    return v


def pack_u32_array(values: Sequence[int]) -> bytes:
    return pack_array(DataType.AUINT32, values)


def unpack_u32_array(data: bytes) -> list[int]:
    return Reader(data).array(DataType.AUINT32)


@dataclass(frozen=True)
class DeviceInfo:
    standard_version: int = 100
    vendor_extension_id: int = 0
    vendor_extension_version: int = 0
    vendor_extension_desc: str = ""
    functional_mode: int = 0
    operations_supported: tuple[int, ...] = ()
    events_supported: tuple[int, ...] = ()
    device_properties_supported: tuple[int, ...] = ()
    capture_formats: tuple[int, ...] = ()
    image_formats: tuple[int, ...] = ()
    manufacturer: str = ""
    model: str = ""
    device_version: str = ""
    serial_number: str = ""

    def encode(self) -> bytes:
        return b"".join([
            _U16.pack(self.standard_version), _U32.pack(self.vendor_extension_id),
            _U16.pack(self.vendor_extension_version), pack_string(self.vendor_extension_desc),
            _U16.pack(self.functional_mode),
            pack_array(DataType.AUINT16, self.operations_supported),
            pack_array(DataType.AUINT16, self.events_supported),
            pack_array(DataType.AUINT16, self.device_properties_supported),
            pack_array(DataType.AUINT16, self.capture_formats),
            pack_array(DataType.AUINT16, self.image_formats),
            pack_string(self.manufacturer), pack_string(self.model),
            pack_string(self.device_version), pack_string(self.serial_number),
        ])

    @classmethod
    def decode(cls, data: bytes) -> DeviceInfo:
        r = Reader(data)
        a16 = DataType.AUINT16
        return cls(r.u16(), r.u32(), r.u16(), r.string(), r.u16(),
                   tuple(r.array(a16)), tuple(r.array(a16)), tuple(r.array(a16)),
                   tuple(r.array(a16)), tuple(r.array(a16)),
                   r.string(), r.string(), r.string(), r.string())


@dataclass(frozen=True)
class StorageInfo:
    storage_type: int = 4
    filesystem_type: int = 2
    access_capability: int = 0
    max_capacity: int = 0
    free_space_in_bytes: int = 0
    free_space_in_images: int = 0xFFFFFFFF
    storage_description: str = ""
    volume_label: str = ""

    def encode(self) -> bytes:
        return (_U16.pack(self.storage_type) + _U16.pack(self.filesystem_type)
                + _U16.pack(self.access_capability) + _U64.pack(self.max_capacity)
                + _U64.pack(self.free_space_in_bytes) + _U32.pack(self.free_space_in_images)
                + pack_string(self.storage_description) + pack_string(self.volume_label))

    @classmethod
    def decode(cls, data: bytes) -> StorageInfo:
        r = Reader(data)
        return cls(r.u16(), r.u16(), r.u16(), r.u64(), r.u64(), r.u32(), r.string(), r.string())


_STREAM_INFO = struct.Struct("<QQIIIII")


@dataclass(frozen=True)
class StreamInfo:
    """GetStreamInfo's dataset (PTP 1.1): 36 bytes; a frame of live view is one JPEG with
    no frame or packet header."""

    time_resolution: int = 1_000_000
    frame_header_size: int = 0
    frame_max_size: int = 0
    packet_header_size: int = 0
    packet_max_size: int = 0
    packet_alignment: int = 0

    def encode(self) -> bytes:
        return _STREAM_INFO.pack(_STREAM_INFO.size, self.time_resolution, self.frame_header_size,
                                 self.frame_max_size, self.packet_header_size, self.packet_max_size,
                                 self.packet_alignment)

    @classmethod
    def decode(cls, data: bytes) -> StreamInfo:
        if len(data) < _STREAM_INFO.size:
            raise DatasetError(f"a StreamInfo of {len(data)} bytes is shorter than {_STREAM_INFO.size}")
        return cls(*_STREAM_INFO.unpack_from(data)[1:])


_OBJECT_INFO_FIXED = struct.Struct("<IHHIHIIIIIIIHII")


@dataclass(frozen=True)
class ObjectInfo:
    storage_id: int = 0
    object_format: int = 0x3000
    protection_status: int = 0
    object_compressed_size: int = 0
    thumb_format: int = 0
    thumb_compressed_size: int = 0
    thumb_pix_width: int = 0
    thumb_pix_height: int = 0
    image_pix_width: int = 0
    image_pix_height: int = 0
    image_bit_depth: int = 0
    parent_object: int = 0
    association_type: int = 0
    association_desc: int = 0
    sequence_number: int = 0
    filename: str = ""
    capture_date: str = ""
    modification_date: str = ""
    keywords: str = ""

    def encode(self) -> bytes:
        return _OBJECT_INFO_FIXED.pack(
            self.storage_id, self.object_format, self.protection_status,
            min(self.object_compressed_size, 0xFFFFFFFF), self.thumb_format,
            self.thumb_compressed_size, self.thumb_pix_width, self.thumb_pix_height,
            self.image_pix_width, self.image_pix_height, self.image_bit_depth,
            self.parent_object, self.association_type, self.association_desc,
            self.sequence_number,
        ) + pack_string(self.filename) + pack_string(self.capture_date) \
            + pack_string(self.modification_date) + pack_string(self.keywords)

    @classmethod
    def decode(cls, data: bytes) -> ObjectInfo:
        r = Reader(data, ResponseCode.NoValidObjectInfo)
        if len(r.data) < _OBJECT_INFO_FIXED.size:
            raise DatasetError(f"ObjectInfo of {len(r.data)} bytes is truncated",
                               response_code=ResponseCode.NoValidObjectInfo)
        fixed = _OBJECT_INFO_FIXED.unpack_from(r.data)
        r.pos = _OBJECT_INFO_FIXED.size
        strings = [r.string(), r.string(), r.string(), r.string()] if r.pos < len(r.data) else [""] * 4
        return cls(*fixed, *strings)

    @property
    def is_folder(self) -> bool:
        return self.object_format == 0x3001


FORM_NONE, FORM_RANGE, FORM_ENUM = 0, 1, 2


@dataclass(frozen=True)
class DevicePropDesc:
    code: int
    datatype: int
    writable: bool
    default: Any
    current: Any
    form: int = FORM_NONE
    #: (min, max, step) for FORM_RANGE
    range: tuple[int, int, int] | None = None
    #: allowed values for FORM_ENUM
    enumeration: tuple[Any, ...] = field(default=())

    def encode(self) -> bytes:
        out = [_U16.pack(self.code), _U16.pack(self.datatype), _U8.pack(1 if self.writable else 0),
               pack_value(self.datatype, self.default), pack_value(self.datatype, self.current),
               _U8.pack(self.form)]
        if self.form == FORM_RANGE:
            assert self.range is not None
            out += [pack_value(self.datatype, v) for v in self.range]
        elif self.form == FORM_ENUM:
            out.append(_U16.pack(len(self.enumeration)))
            out += [pack_value(self.datatype, v) for v in self.enumeration]
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes) -> DevicePropDesc:
        r = Reader(data)
        code, datatype, getset = r.u16(), r.u16(), r.u8()
        default, current = r.value(datatype), r.value(datatype)
        form = r.u8() if r.pos < len(r.data) else FORM_NONE
        rng, enum = None, ()
        if form == FORM_RANGE:
            rng = (r.value(datatype), r.value(datatype), r.value(datatype))
        elif form == FORM_ENUM:
            n = r.u16()
            enum = tuple(r.value(datatype) for _ in range(n))
        return cls(code, datatype, bool(getset), default, current, form, rng, enum)

    def allows(self, value: Any) -> bool:
        """Whether *value* is legal for this property (type, range and form)."""
        if self.datatype == DataType.STR:
            ok = isinstance(value, str) and len(value) < MAX_STRING_UNITS
        elif is_array(self.datatype):
            lo, hi = value_range(self.datatype)
            ok = isinstance(value, (list, tuple)) and all(lo <= v <= hi for v in value)
        else:
            lo, hi = value_range(self.datatype)
            ok = isinstance(value, int) and lo <= value <= hi
        if not ok:
            return False
        if self.form == FORM_RANGE and self.range is not None:
            lo, hi, step = self.range
            return lo <= value <= hi and (not step or (value - lo) % step == 0)
        if self.form == FORM_ENUM:
            return value in self.enumeration
        return True
