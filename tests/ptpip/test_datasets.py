"""PTP datasets: strings, arrays, values of every standard datatype, and the
DeviceInfo / StorageInfo / ObjectInfo / DevicePropDesc layouts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptpip.constants import DataType, ResponseCode
from ptpip.datasets import (
    FORM_ENUM,
    FORM_RANGE,
    DatasetError,
    DeviceInfo,
    DevicePropDesc,
    ObjectInfo,
    Reader,
    StorageInfo,
    pack_string,
    pack_value,
    unpack_value,
    value_range,
)


def test_string_layout():
    """u8 count of UTF-16 units including the NUL, then UTF-16LE; empty is one zero byte."""
    assert pack_string("") == b"\x00"
    assert pack_string("AB") == b"\x03A\x00B\x00\x00\x00"
    assert Reader(b"\x03A\x00B\x00\x00\x00").string() == "AB"
    with pytest.raises(ValueError):
        pack_string("x" * 255)


@pytest.mark.parametrize("datatype,value,raw", [
    (DataType.INT8, -2, "fe"),
    (DataType.UINT8, 200, "c8"),
    (DataType.INT16, -1000, "18fc"),
    (DataType.UINT16, 0x5007, "0750"),
    (DataType.INT32, -5, "fbffffff"),
    (DataType.UINT32, 3500, "ac0d0000"),
    (DataType.INT64, -1, "ff" * 8),
    (DataType.UINT64, 1 << 40, "0000000000010000"),
    (DataType.INT128, -2, "fe" + "ff" * 15),
    (DataType.UINT128, 1, "01" + "00" * 15),
    (DataType.AUINT16, [1, 2], "02000000" "0100" "0200"),
    (DataType.AINT8, [-1], "01000000" "ff"),
    (DataType.AUINT32, [], "00000000"),
    (DataType.STR, "1600x1200", "0a" + "1600x1200".encode("utf-16-le").hex() + "0000"),
])
def test_values_of_every_datatype(datatype, value, raw):
    assert pack_value(datatype, value).hex() == raw
    assert unpack_value(datatype, bytes.fromhex(raw)) == value


@pytest.mark.parametrize("datatype,raw", [(DataType.UINT16, "01"), (DataType.UINT16, "010203"),
                                         (DataType.STR, "05410042"), (DataType.AUINT32, "05000000")])
def test_malformed_values_are_invalid_device_prop_format(datatype, raw):
    with pytest.raises(DatasetError) as e:
        unpack_value(datatype, bytes.fromhex(raw))
    assert e.value.response_code == ResponseCode.InvalidDevicePropFormat


def test_value_ranges():
    assert value_range(DataType.INT8) == (-128, 127)
    assert value_range(DataType.UINT16) == (0, 65535)
    assert value_range(DataType.AUINT32) == (0, 0xFFFFFFFF)


def test_device_info_round_trip_and_layout():
    di = DeviceInfo(100, 0, 0, "", 0, (0x1001, 0x1002), (0x4002,), (0x5001,), (0x3801,), (0x3801, 0x3001),
                    "Acme", "Cam", "1.0", "42")
    raw = di.encode()
    assert raw[:2] == b"\x64\x00" and raw[2:6] == b"\x00" * 4
    assert DeviceInfo.decode(raw) == di


def test_object_info_layout():
    """The fixed part is 52 bytes, then four strings; the filename is never empty on send."""
    oi = ObjectInfo(storage_id=0x10001, object_format=0x3801, object_compressed_size=123, filename="A.JPG",
                    capture_date="20260101T000000")
    raw = oi.encode()
    assert len(raw) == 52 + len(pack_string("A.JPG")) + len(pack_string("20260101T000000")) + 2
    assert ObjectInfo.decode(raw) == oi
    with pytest.raises(DatasetError) as e:
        ObjectInfo.decode(raw[:40])
    assert e.value.response_code == ResponseCode.NoValidObjectInfo


def test_storage_info_round_trip():
    si = StorageInfo(3, 2, 0, 1 << 40, 1 << 39, 0xFFFFFFFF, "Folder", "vol")
    assert StorageInfo.decode(si.encode()) == si


def test_prop_desc_forms_and_validation():
    rng = DevicePropDesc(0x5008, DataType.UINT32, True, 3500, 3500, FORM_RANGE, (1800, 10500, 100))
    assert DevicePropDesc.decode(rng.encode()) == rng
    assert rng.allows(1900) and not rng.allows(1850) and not rng.allows(10600) and not rng.allows("x")
    enum = DevicePropDesc(0x5003, DataType.STR, True, "a", "b", FORM_ENUM, enumeration=("a", "b"))
    assert DevicePropDesc.decode(enum.encode()) == enum
    assert enum.allows("a") and not enum.allows("c")


ints = {t: st.integers(*value_range(t)) for t in (DataType.INT8, DataType.UINT8, DataType.INT16, DataType.UINT16,
                                                   DataType.INT32, DataType.UINT32, DataType.INT64,
                                                   DataType.UINT64, DataType.INT128, DataType.UINT128)}


@settings(deadline=None, max_examples=300)
@given(st.sampled_from(sorted(ints)), st.data())
def test_scalar_and_array_round_trips(datatype, data):
    v = data.draw(ints[datatype])
    assert unpack_value(datatype, pack_value(datatype, v)) == v
    arr = data.draw(st.lists(ints[datatype], max_size=10))
    assert unpack_value(datatype | 0x4000, pack_value(datatype | 0x4000, arr)) == arr


@settings(deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=100))
def test_string_round_trip(text):
    if len(text.encode("utf-16-le")) // 2 >= 255:
        return
    assert unpack_value(DataType.STR, pack_value(DataType.STR, text)) == text


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300))
def test_garbage_datasets_raise_dataset_errors_only(raw):
    for cls in (DeviceInfo, StorageInfo, ObjectInfo, DevicePropDesc):
        try:
            cls.decode(raw)
        except DatasetError:
            pass
