"""The data of Canon EOS operations, both ways: GetEvent records, ImageFormat, listings.

Layouts as libgphoto2 reads and writes them (``ptp-pack.c``): a GetEvent answer is a
list of ``u32 size, u32 type, payload`` records ended by an 8-byte zero record; a
property value sits at +12 (u32 for integers, NUL-terminated text for strings, the
ImageFormat structure for 0xD120); a GetObjectInfoEx answer is a count and 56-byte
entries. Pure: the device (``ptpip.devices.canon_eos``) and the initiator
(``ptpip.vendors``) both use it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .constants import DataType, ResponseCode
from .errors import OperationError, RemoteProtocolError
from .vendor import CanonEOSEvent as Ev
from .vendor import CanonEOSProp as P

#: Ends every GetEvent answer.
TERMINATOR = b"\x08\x00\x00\x00\x00\x00\x00\x00"

#: Properties whose value is the ImageFormat structure.
IMAGE_FORMAT_PROPS = frozenset({P.ImageFormat, P.ImageFormatCF, 0xD122, 0xD123})


def record(kind: int, payload: bytes) -> bytes:
    return struct.pack("<II", 8 + len(payload), kind) + payload


def _image_format_entries(code: int) -> list[tuple[int, int, int]]:
    """The (type, size, compression) entries of a condensed ImageFormat code."""
    entries: list[tuple[int, int, int]] = []
    for nibbles in ((code >> 8) & 0xFF, code & 0xFF):
        if nibbles in (0x00, 0xFF) and entries:
            break
        size, comp = nibbles >> 4, nibbles & 0xF
        if size >= 0xD:
            size += 1
        entries.append((6, size, comp & 7) if comp & 8 else (1, size, comp))
    return entries


def pack_image_format(code: int) -> bytes:
    """The EOS structure of a condensed ImageFormat code (libgphoto2's u16: size << 12 |
    compression << 8 for the first entry, the same in the low byte for a second; RAW 0xC)."""
    entries = _image_format_entries(code)
    return struct.pack("<I", len(entries)) + b"".join(
        struct.pack("<IIII", 0x10, kind, size, comp) for kind, size, comp in entries)


def unpack_image_format(data: bytes, pos: int = 0) -> tuple[int, int]:
    """A condensed ImageFormat code from its EOS structure at *pos* (as libgphoto2 2.5.30
    condenses it), and the position after it."""
    if len(data) < pos + 4:
        raise OperationError(ResponseCode.InvalidDevicePropValue, "ImageFormat truncated")
    (n,) = struct.unpack_from("<I", data, pos)
    if not 1 <= n <= 2 or len(data) < pos + 4 + 16 * n:
        raise OperationError(ResponseCode.InvalidDevicePropValue, f"ImageFormat with {n} entries")
    code = 0
    for i in range(n):
        length, kind, size, comp = struct.unpack_from("<IIII", data, pos + 4 + 16 * i)
        if length != 0x10 or kind not in (1, 6):
            raise OperationError(ResponseCode.InvalidDevicePropValue,
                                 f"ImageFormat entry of {length} bytes, type {kind}")
        if size >= 0xE:
            size -= 1
        nib = ((size & 0xF) << 4) | ((comp | (8 if kind == 6 else 0)) & 0xF)
        code |= nib << (8 if i == 0 else 0)
    return code, pos + 4 + 16 * n


def value_bytes(code: int, datatype: int, value: Any) -> bytes:
    """A property value as EOS records and SetDevicePropValueEx carry it."""
    if code in IMAGE_FORMAT_PROPS:
        return pack_image_format(value)
    if datatype == DataType.STR:
        return str(value).encode("latin-1", "replace") + b"\0"
    return struct.pack("<I", int(value) & 0xFFFFFFFF)


def set_prop_value(code: int, datatype: int, value: Any) -> bytes:
    """The data of SetDevicePropValueEx (0x9110): ``u32 size, u32 code, value``."""
    body = struct.pack("<I", code) + value_bytes(code, datatype, value)
    return struct.pack("<I", 4 + len(body)) + body


# -- reading GetEvent answers (the initiator's side) ----------------------------------
@dataclass(frozen=True)
class PropValue:
    code: int
    #: The raw value bytes (decode with :func:`decode_value` once the datatype is known).
    raw: bytes


@dataclass(frozen=True)
class AvailList:
    code: int
    values: tuple[int, ...]


@dataclass(frozen=True)
class ObjectAdded:
    handle: int
    storage_id: int
    object_format: int
    size: int
    parent: int
    filename: str


@dataclass(frozen=True)
class ObjectTransfer:
    """A picture held in the camera for the host (RequestObjectTransfer)."""

    handle: int
    object_format: int
    size: int
    filename: str


@dataclass(frozen=True)
class CameraStatus:
    status: int


@dataclass(frozen=True)
class OtherRecord:
    kind: int
    payload: bytes


def _name(payload: bytes, pos: int) -> str:
    return payload[pos:].split(b"\0")[0].decode("latin-1")


def records(data: bytes, *, terminated: bool = True) -> Iterator[tuple[int, bytes]]:
    """The ``(type, payload)`` records of a GetEvent or GetViewFinderData answer; a record
    running past the end is an error, and so is a missing terminator where one is due."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from("<II", data, pos)
        if size == 8 and kind == 0:
            return
        if size < 8 or pos + size > len(data):
            raise RemoteProtocolError(f"EOS record of {size} bytes at {pos} of {len(data)}")
        yield kind, data[pos + 8:pos + size]
        pos += size
    if terminated:
        raise RemoteProtocolError("EOS GetEvent answer without its terminator")


def parse_events(data: bytes) -> list[Any]:
    """The records of a GetEvent answer, typed; stops at the terminator."""
    out: list[Any] = []
    for kind, p in records(data):
        if kind == Ev.PropValueChanged and len(p) >= 4:
            out.append(PropValue(struct.unpack_from("<I", p)[0], p[4:]))
        elif kind == Ev.AvailListChanged and len(p) >= 12:
            code, form, count = struct.unpack_from("<III", p)
            if code in IMAGE_FORMAT_PROPS:
                values, at = [], 12
                for _ in range(count):
                    v, at = unpack_image_format(p, at)
                    values.append(v)
            else:
                values = list(struct.unpack_from(f"<{min(count, (len(p) - 12) // 4)}I", p, 12))
            out.append(AvailList(code, tuple(values)))
        elif kind == Ev.ObjectAddedEx and len(p) >= 0x21:
            handle, storage, ofc = struct.unpack_from("<IIH", p)
            size_, parent = struct.unpack_from("<II", p, 0x14)
            out.append(ObjectAdded(handle, storage, ofc, size_, parent, _name(p, 0x20)))
        elif kind == Ev.RequestObjectTransfer and len(p) >= 0x15:
            handle, ofc = struct.unpack_from("<IH", p)
            (size_,) = struct.unpack_from("<I", p, 0x0C)
            out.append(ObjectTransfer(handle, ofc, size_, _name(p, 0x14)))
        elif kind == Ev.CameraStatusChanged and len(p) >= 4:
            out.append(CameraStatus(struct.unpack_from("<I", p)[0]))
        else:
            out.append(OtherRecord(kind, p))
    return out


#: Datatypes of the EOS properties: the camera never says (libgphoto2 keeps a table too).
DATATYPES: dict[int, int] = {
    P.Aperture: DataType.UINT16, P.ShutterSpeed: DataType.UINT16, P.ISOSpeed: DataType.UINT16,
    P.ImageFormat: DataType.UINT16, P.AutoExposureMode: DataType.UINT16, P.DriveMode: DataType.UINT16,
    P.MeteringMode: DataType.UINT8, P.ExpCompensation: DataType.UINT8, P.FocusMode: DataType.UINT16,
    P.WhiteBalance: DataType.UINT8,
    P.ColorSpace: DataType.UINT16, P.BatteryPower: DataType.UINT16, P.EVFOutputDevice: DataType.UINT16,
    P.EVFMode: DataType.UINT16, P.Owner: DataType.STR, P.Artist: DataType.STR, P.Copyright: DataType.STR,
    0xD1AF: DataType.STR, 0xD1D8: DataType.STR,
}


def value_width(datatype: int) -> int:
    """Bytes an integer of *datatype* takes in the low end of its 4-byte EOS slot."""
    widths: dict[int, int] = {DataType.UINT8: 1, DataType.INT8: 1, DataType.UINT16: 2, DataType.INT16: 2}
    return widths.get(datatype, 4)


def decode_value(code: int, datatype: int, raw: bytes) -> Any:
    """A PropValueChanged value as the property's datatype says."""
    if code in IMAGE_FORMAT_PROPS:
        return unpack_image_format(raw)[0]
    if datatype == DataType.STR:
        return raw.split(b"\0")[0].decode("latin-1")
    return int.from_bytes(raw[:4].ljust(4, b"\0"), "little") & ((1 << (8 * value_width(datatype))) - 1)
