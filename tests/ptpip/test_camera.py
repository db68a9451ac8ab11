"""The virtual camera: PTP session semantics, every operation it advertises, and
its providers (store, properties, capture), driven in memory with explicit ids."""

from __future__ import annotations

import io
import os
import struct
from typing import Any

import pytest
from twisted.internet import task
from zope.interface.verify import verifyObject

from ptpip.camera import filesystem_camera, sample_pictures
from ptpip.capture import FolderCapture, TestCardCapture
from ptpip.constants import DataPhase, EventCode, ObjectFormat
from ptpip.constants import OperationCode as Op
from ptpip.constants import ResponseCode as R
from ptpip.datasets import (
    DeviceInfo,
    DevicePropDesc,
    ObjectInfo,
    StorageInfo,
    pack_value,
    unpack_u32_array,
)
from ptpip.filestore import exif_thumbnail, sniff_format
from ptpip.interfaces import (
    ICaptureSource,
    IDeviceProperties,
    IObjectStore,
    IResponderDevice,
    IResponderSession,
    IUpload,
)
from ptpip.packets import EndData, Event, OperationRequest, OperationResponse, StartData
from ptpip.properties import DeviceProperties
from ptpip.responder import ResponderFactory

from ..conftest import make_tree
from .helpers import data_payload, establish

IN, OUT = DataPhase.NO_DATA_OR_DATA_IN, DataPhase.DATA_OUT


class Rig:
    """A camera over a temporary folder, reached through one in-memory session."""

    def __init__(self, root: str, **kwargs: Any) -> None:
        self.root = root
        self.files = make_tree(root)
        self.clock = task.Clock()
        self.steps: list[Any] = []
        coop = task.Cooperator(scheduler=self.steps.append)
        self.camera = filesystem_camera(root, scan_interval=None, reactor=self.clock, cooperator=coop, **kwargs)
        self.factory = ResponderFactory(self.camera, reactor=self.clock)
        self.cmd, self.evt = establish(self.factory)
        self.tid = 0

    def op(self, code: int, *params: int, tid: int | None = None, data: bytes | None = None) -> tuple[Any, bytes]:
        if tid is None:
            self.tid += 1
            tid = self.tid
        if data is None:
            self.cmd.send(OperationRequest(IN, code, tid, params))
        else:
            self.cmd.send(OperationRequest(OUT, code, tid, params), StartData(tid, len(data)), EndData(tid, data))
        while self.steps:                      # run the file reads of a data-in phase
            self.steps.pop(0)()
        packets = self.cmd.read()
        response = packets[-1]
        assert isinstance(response, OperationResponse) and response.transaction_id == tid
        return response, data_payload(packets[:-1])

    def ok(self, code: int, *params: int, **kw: Any) -> tuple[Any, bytes]:
        response, payload = self.op(code, *params, **kw)
        assert response.code == R.OK, hex(response.code)
        return response, payload

    def open(self) -> Rig:
        self.ok(Op.OpenSession, 1, tid=0)
        return self

    def events(self) -> list[Event]:
        return self.evt.read()

    def handle(self, name: str) -> int:
        return self.camera.store._by_path[name]


@pytest.fixture
def rig(tmp_path: Any) -> Rig:
    root = tmp_path / "cam"
    root.mkdir()
    return Rig(str(root))


# -- session semantics ----------------------------------------------------------------

def test_get_device_info_works_outside_a_session(rig):
    response, data = rig.op(Op.GetDeviceInfo, tid=0)
    assert response.code == R.OK
    info = DeviceInfo.decode(data)
    assert info.vendor_extension_id == 0
    assert Op.GetPartialObject in info.operations_supported
    assert Op.FormatStore not in info.operations_supported
    assert info.manufacturer and info.model


def test_operations_need_an_open_session(rig):
    assert rig.op(Op.GetStorageIDs)[0].code == R.SessionNotOpen


def test_open_session_twice_is_session_already_open(rig):
    rig.open()
    response, _ = rig.op(Op.OpenSession, 7, tid=0)
    assert response.code == R.SessionAlreadyOpen and response.params == (1,)


def test_session_id_zero_is_invalid(rig):
    assert rig.op(Op.OpenSession, 0, tid=0)[0].code == R.InvalidParameter


@pytest.mark.parametrize("tid", [0, 0xFFFFFFFF, 1])
def test_invalid_transaction_ids(rig, tid):
    """Inside a session, 0 and 0xFFFFFFFF are reserved and ids must go forward."""
    rig.open()
    rig.ok(Op.GetStorageIDs, tid=1)
    assert rig.op(Op.GetStorageIDs, tid=tid)[0].code == R.InvalidTransactionID


def test_unadvertised_operations_are_not_supported(rig):
    rig.open()
    for code in (Op.FormatStore, Op.MoveObject, Op.InitiateOpenCapture, 0x9801):
        assert rig.op(code)[0].code == R.OperationNotSupported


def test_close_session_then_operations_need_a_new_one(rig):
    rig.open()
    rig.ok(Op.CloseSession)
    assert rig.op(Op.GetStorageIDs)[0].code == R.SessionNotOpen


# -- storage and objects -----------------------------------------------------------------

def test_storage_ids_and_info_are_real(rig):
    rig.open()
    _, data = rig.ok(Op.GetStorageIDs)
    assert unpack_u32_array(data) == [0x00010001]
    _, data = rig.ok(Op.GetStorageInfo, 0x00010001)
    info = StorageInfo.decode(data)
    st = os.statvfs(rig.root)
    assert info.max_capacity == st.f_blocks * st.f_frsize
    assert 0 < info.free_space_in_bytes <= info.max_capacity
    assert rig.op(Op.GetStorageInfo, 0x00020001)[0].code == R.InvalidStorageID


def test_object_handle_filters(rig):
    """parent 0: every object; 0xFFFFFFFF: the root; a folder: its children; format filters."""
    rig.open()
    every = unpack_u32_array(rig.ok(Op.GetObjectHandles, 0xFFFFFFFF, 0, 0)[1])
    assert len(every) == 8
    root = unpack_u32_array(rig.ok(Op.GetObjectHandles, 0x00010001, 0, 0xFFFFFFFF)[1])
    assert sorted(root) == sorted([rig.handle("DCIM"), rig.handle("readme.txt")])
    folder = rig.handle("DCIM/100TEST")
    kids = unpack_u32_array(rig.ok(Op.GetObjectHandles, 0xFFFFFFFF, 0, folder)[1])
    assert sorted(kids) == sorted(rig.handle(f"DCIM/100TEST/{n}") for n in ("IMG_0001.JPG", "IMG_0002.JPG"))
    jpegs = unpack_u32_array(rig.ok(Op.GetObjectHandles, 0xFFFFFFFF, ObjectFormat.EXIF_JPEG, 0)[1])
    assert len(jpegs) == 2
    assert rig.ok(Op.GetNumObjects, 0xFFFFFFFF, ObjectFormat.Association, 0)[0].params == (4,)
    assert rig.op(Op.GetObjectHandles, 0xFFFFFFFF, 0, rig.handle("readme.txt"))[0].code == R.InvalidParentObject
    assert rig.op(Op.GetObjectHandles, 0x00030001, 0, 0)[0].code == R.InvalidStorageID


def test_object_info_of_files_and_folders(rig):
    rig.open()
    info = ObjectInfo.decode(rig.ok(Op.GetObjectInfo, rig.handle("DCIM/100TEST/IMG_0001.JPG"))[1])
    assert info.filename == "IMG_0001.JPG" and info.object_format == ObjectFormat.EXIF_JPEG
    assert info.object_compressed_size == len(rig.files["DCIM/100TEST/IMG_0001.JPG"])
    assert (info.image_pix_width, info.image_pix_height) == (1024, 768)
    assert info.parent_object == rig.handle("DCIM/100TEST")
    assert info.thumb_format == ObjectFormat.JFIF and info.thumb_compressed_size > 0
    assert len(info.capture_date) >= 15
    folder = ObjectInfo.decode(rig.ok(Op.GetObjectInfo, rig.handle("DCIM"))[1])
    assert folder.object_format == ObjectFormat.Association and folder.association_type == 1
    assert folder.parent_object == 0
    assert rig.op(Op.GetObjectInfo, 999)[0].code == R.InvalidObjectHandle


def test_handles_stay_stable(rig):
    before = dict(rig.camera.store._by_path)
    rig.camera.store.scan()
    assert rig.camera.store._by_path == before


def test_get_object_and_partial_object(rig):
    rig.open()
    h = rig.handle("DCIM/100TEST/IMG_0002.JPG")
    want = rig.files["DCIM/100TEST/IMG_0002.JPG"]
    assert rig.ok(Op.GetObject, h)[1] == want
    response, data = rig.ok(Op.GetPartialObject, h, 100, 1000)
    assert data == want[100:1100] and response.params == (1000,)
    response, data = rig.ok(Op.GetPartialObject, h, len(want) - 10, 1000)
    assert data == want[-10:] and response.params == (10,)
    assert rig.op(Op.GetPartialObject, h, len(want) + 1, 10)[0].code == R.InvalidParameter
    assert rig.op(Op.GetObject, rig.handle("DCIM"))[0].code == R.InvalidObjectHandle


def test_thumbnails(rig):
    rig.open()
    from PIL import Image
    _, thumb = rig.ok(Op.GetThumb, rig.handle("DCIM/100TEST/IMG_0001.JPG"))
    with Image.open(io.BytesIO(thumb)) as im:
        assert im.format == "JPEG" and max(im.size) <= 160
    assert rig.op(Op.GetThumb, rig.handle("readme.txt"))[0].code == R.NoThumbnailPresent


def test_delete_removes_the_file_and_announces_it(rig):
    rig.open()
    h = rig.handle("readme.txt")
    rig.ok(Op.DeleteObject, h, 0)
    assert not os.path.exists(os.path.join(rig.root, "readme.txt"))
    assert Event(EventCode.ObjectRemoved, 0xFFFFFFFF, (h,)) in rig.events()
    assert rig.op(Op.GetObjectInfo, h)[0].code == R.InvalidObjectHandle


def test_delete_a_folder_deletes_its_contents(rig):
    rig.open()
    rig.ok(Op.DeleteObject, rig.handle("DCIM/101TEST"), 0)
    assert not os.path.exists(os.path.join(rig.root, "DCIM", "101TEST"))
    assert len(rig.camera.store.handles()) == 5


def test_protected_object_cannot_be_deleted(rig):
    rig.open()
    h = rig.handle("readme.txt")
    rig.ok(Op.SetObjectProtection, h, 1)
    assert ObjectInfo.decode(rig.ok(Op.GetObjectInfo, h)[1]).protection_status == 1
    assert rig.op(Op.DeleteObject, h, 0)[0].code == R.ObjectWriteProtected
    assert os.path.exists(os.path.join(rig.root, "readme.txt"))
    rig.ok(Op.SetObjectProtection, h, 0)
    rig.ok(Op.DeleteObject, h, 0)


def test_upload_lands_atomically_and_is_announced(rig):
    rig.open()
    folder = rig.handle("DCIM/100TEST")
    info = ObjectInfo(object_format=ObjectFormat.Text, object_compressed_size=5, filename="hi.txt")
    response, _ = rig.ok(Op.SendObjectInfo, 0x00010001, folder, data=info.encode())
    storage, parent, handle = response.params
    assert (storage, parent) == (0x00010001, folder)
    assert not os.path.exists(os.path.join(rig.root, "DCIM", "100TEST", "hi.txt"))
    rig.ok(Op.SendObject, data=b"hello")
    with open(os.path.join(rig.root, "DCIM", "100TEST", "hi.txt"), "rb") as f:
        assert f.read() == b"hello"
    assert Event(EventCode.ObjectAdded, 0xFFFFFFFF, (handle,)) in rig.events()
    assert ObjectInfo.decode(rig.ok(Op.GetObjectInfo, handle)[1]).filename == "hi.txt"


def test_upload_of_an_existing_name_gets_a_new_name(rig):
    rig.open()
    info = ObjectInfo(object_format=ObjectFormat.Text, object_compressed_size=2, filename="readme.txt")
    rig.ok(Op.SendObjectInfo, 0, 0, data=info.encode())
    rig.ok(Op.SendObject, data=b"v2")
    assert open(os.path.join(rig.root, "readme.txt"), "rb").read() == b"top level\n"
    assert open(os.path.join(rig.root, "readme_1.txt"), "rb").read() == b"v2"


def test_upload_stops_at_free_space(rig, monkeypatch):
    """StoreFull when the announced size exceeds the free space, nothing written."""
    import shutil
    real = shutil.disk_usage
    monkeypatch.setattr("ptpip.filestore.shutil.disk_usage",
                        lambda p: real(p)._replace(free=1000))
    rig.open()
    info = ObjectInfo(object_format=ObjectFormat.Undefined, object_compressed_size=5000, filename="big.bin")
    assert rig.op(Op.SendObjectInfo, 0, 0, data=info.encode())[0].code == R.StoreFull
    assert not os.path.exists(os.path.join(rig.root, "big.bin"))


@pytest.mark.parametrize("name", ["", "../escape.txt", "a/b.txt", "..", ".ptpip-upload-x"])
def test_bad_filenames_are_refused(rig, name):
    rig.open()
    info = ObjectInfo(object_format=ObjectFormat.Text, object_compressed_size=1, filename=name)
    assert rig.op(Op.SendObjectInfo, 0, 0, data=info.encode())[0].code == R.InvalidParameter
    assert sorted(os.listdir(rig.root)) == ["DCIM", "readme.txt"]


def test_send_object_without_object_info(rig):
    rig.open()
    assert rig.op(Op.SendObject, data=b"x")[0].code == R.NoValidObjectInfo


def test_malformed_object_info_is_no_valid_object_info(rig):
    rig.open()
    assert rig.op(Op.SendObjectInfo, 0, 0, data=b"\x01\x02")[0].code == R.NoValidObjectInfo


def test_folder_upload_creates_a_folder(rig):
    rig.open()
    info = ObjectInfo(object_format=ObjectFormat.Association, association_type=1, filename="NEW")
    response, _ = rig.ok(Op.SendObjectInfo, 0, 0, data=info.encode())
    assert os.path.isdir(os.path.join(rig.root, "NEW"))
    assert ObjectInfo.decode(rig.ok(Op.GetObjectInfo, response.params[2])[1]).object_format == 0x3001


def test_format_store_only_when_enabled(tmp_path):
    os.makedirs(tmp_path / "a")
    off = Rig(str(tmp_path / "a")).open()
    assert off.op(Op.FormatStore, 0x00010001)[0].code == R.OperationNotSupported
    os.makedirs(tmp_path / "b")
    on = Rig(str(tmp_path / "b"), allow_format=True).open()
    on.ok(Op.FormatStore, 0x00010001)
    assert os.listdir(on.root) == []


# -- capture -------------------------------------------------------------------

def test_capture_adds_an_object_then_completes(tmp_path):
    """InitiateCapture answers OK, then ObjectAdded and CaptureComplete (with its id) follow."""
    src = tmp_path / "src"
    src.mkdir()
    for p in sample_pictures()[:2]:
        (src / os.path.basename(p)).write_bytes(open(p, "rb").read())
    os.makedirs(tmp_path / "cam")
    rig = Rig(str(tmp_path / "cam"), capture_folder=str(src)).open()
    response, _ = rig.ok(Op.InitiateCapture, 0, 0)
    events = rig.events()
    added = [e for e in events if e.code == EventCode.ObjectAdded]
    assert len(added) == 1
    assert events[-1] == Event(EventCode.CaptureComplete, response.transaction_id, ())
    info = ObjectInfo.decode(rig.ok(Op.GetObjectInfo, added[0].params[0])[1])
    assert info.filename == "IMG_0001.JPG" and info.object_format == ObjectFormat.EXIF_JPEG
    assert os.path.exists(os.path.join(rig.root, "IMG_0001.JPG"))


def test_captured_pictures_keep_their_own_format(tmp_path):
    """A capture folder that hands out a PNG gives an object of format PNG, not JPEG."""
    src = tmp_path / "src"
    src.mkdir()
    png = next(p for p in sample_pictures() if p.endswith(".PNG"))
    (src / "SHOT.PNG").write_bytes(open(png, "rb").read())
    os.makedirs(tmp_path / "cam")
    rig = Rig(str(tmp_path / "cam"), capture_folder=str(src)).open()
    rig.ok(Op.InitiateCapture, 0, 0)
    added = [e for e in rig.events() if e.code == EventCode.ObjectAdded]
    info = ObjectInfo.decode(rig.ok(Op.GetObjectInfo, added[0].params[0])[1])
    assert (info.filename, info.object_format) == ("SHOT.PNG", ObjectFormat.PNG)


def test_capture_that_cannot_work_answers_store_not_available(tmp_path):
    """A capture folder that is empty, or removed while the camera runs, answers
    InitiateCapture with StoreNotAvailable: not OK followed by a CaptureComplete alone.
    (CaptureComplete still comes, for initiators that ignore the response code.)"""
    src = tmp_path / "src"
    src.mkdir()
    os.makedirs(tmp_path / "cam")
    rig = Rig(str(tmp_path / "cam"), capture_folder=str(src)).open()
    rig.events()
    before = set(os.listdir(rig.root))
    for _ in ("empty", "gone"):
        response, _ = rig.op(Op.InitiateCapture, 0, 0)
        assert response.code == R.StoreNotAvailable
        assert rig.events() == [Event(EventCode.CaptureComplete, response.transaction_id, ())]
        if src.exists():
            src.rmdir()
    assert set(os.listdir(rig.root)) == before                                         # no object
    src.mkdir()                                                                      # back again
    (src / "A.JPG").write_bytes(open(sample_pictures()[0], "rb").read())
    response, _ = rig.ok(Op.InitiateCapture, 0, 0)                                   # not DeviceBusy
    assert rig.events()[-1] == Event(EventCode.CaptureComplete, response.transaction_id, ())
    assert os.path.exists(os.path.join(rig.root, "A.JPG"))


def test_test_card_is_a_jpeg_with_a_time_stamp():
    from PIL import Image

    from ptpip.capture import draw_test_card
    a = draw_test_card(320, 240, "2026-01-01 00:00:00")
    b = draw_test_card(320, 240, "2026-01-01 00:00:01")
    assert a != b
    with Image.open(io.BytesIO(a)) as im:
        assert im.format == "JPEG" and im.size == (320, 240)


# -- properties ----------------------------------------------------------------

def test_property_get_set_reset_with_events(rig):
    rig.open()
    desc = DevicePropDesc.decode(rig.ok(Op.GetDevicePropDesc, 0x5007)[1])
    assert desc.datatype == 4 and desc.form == 2 and 800 in desc.enumeration
    rig.ok(Op.SetDevicePropValue, 0x5007, data=pack_value(4, 800))
    assert rig.ok(Op.GetDevicePropValue, 0x5007)[1] == pack_value(4, 800)
    assert Event(EventCode.DevicePropChanged, 0xFFFFFFFF, (0x5007,)) in rig.events()
    rig.ok(Op.ResetDevicePropValue, 0x5007)
    assert rig.ok(Op.GetDevicePropValue, 0x5007)[1] == pack_value(4, desc.default)


@pytest.mark.parametrize("code,data,expected", [
    (0x5007, pack_value(4, 801), R.InvalidDevicePropValue),        # not in the enumeration
    (0x5008, pack_value(6, 1850), R.InvalidDevicePropValue),       # off the range's step
    (0x5008, pack_value(6, 99999), R.InvalidDevicePropValue),      # beyond the range
    (0x5007, b"\x01", R.InvalidDevicePropFormat),                  # too short for a UINT16
    (0x5007, b"\x01\x02\x03", R.InvalidDevicePropFormat),          # too long
    (0x5001, pack_value(2, 50), R.AccessDenied),                   # BatteryLevel is read-only
    (0x50FF, pack_value(2, 1), R.DevicePropNotSupported),
])
def test_property_validation(rig, code, data, expected):
    rig.open()
    assert rig.op(Op.SetDevicePropValue, code, data=data)[0].code == expected


def test_datetime_property_is_settable(rig):
    rig.open()
    rig.ok(Op.SetDevicePropValue, 0x5011, data=pack_value(0xFFFF, "20200101T120000"))
    value = DevicePropDesc.decode(rig.ok(Op.GetDevicePropDesc, 0x5011)[1]).current
    assert value.startswith("20200101T12000")


def test_standard_properties_have_the_datatypes_gphoto2_expects():
    expected = {0x5001: 2, 0x5003: 0xFFFF, 0x5004: 2, 0x5005: 4, 0x5007: 4, 0x5008: 6, 0x5009: 4,
                0x500A: 4, 0x500C: 4, 0x500D: 6, 0x500E: 4, 0x500F: 4, 0x5010: 3, 0x5011: 0xFFFF,
                0x5012: 6, 0x5013: 4, 0x5014: 2, 0x5015: 2, 0x5016: 2}
    props = DeviceProperties()
    assert {c: props.describe(c).datatype for c in props.supported()} == expected


# -- providers ------------------------------------------------------------------

def test_providers_implement_their_interfaces(rig, tmp_path):
    assert verifyObject(IObjectStore, rig.camera.store)
    assert verifyObject(IDeviceProperties, rig.camera.properties)
    assert verifyObject(ICaptureSource, TestCardCapture())
    assert verifyObject(ICaptureSource, FolderCapture(str(tmp_path)))
    assert verifyObject(IResponderDevice, rig.camera)
    session = next(iter(rig.camera.sessions))
    assert verifyObject(IResponderSession, session)
    info = ObjectInfo(object_format=ObjectFormat.Text, object_compressed_size=1, filename="u.txt")
    upload = rig.camera.store.receive(rig.camera.store.reserve(info, 0))
    assert verifyObject(IUpload, upload)
    upload.abort()
    assert not [n for n in os.listdir(rig.root) if n.startswith(".ptpip")]


@pytest.mark.parametrize("head,name,fmt", [
    (b"\xff\xd8\xff\xe1", "x.jpg", ObjectFormat.EXIF_JPEG),
    (b"\x89PNG\r\n\x1a\n", "x", ObjectFormat.PNG),
    (b"GIF89a", "x", ObjectFormat.GIF),
    (b"II*\x00", "x.tif", ObjectFormat.TIFF),
    (b"II*\x00", "x.dng", ObjectFormat.DNG),
    (b"RIFF\x00\x00\x00\x00WAVE", "x", ObjectFormat.WAV),
    (b"RIFF\x00\x00\x00\x00AVI ", "x", ObjectFormat.AVI),
    (b"ID3\x03", "x", ObjectFormat.MP3),
    (b"hello world\n", "x.txt", ObjectFormat.Text),
    (b"\x00\x01\x02\x03", "x.bin", ObjectFormat.Undefined),
])
def test_format_comes_from_the_content(head, name, fmt):
    assert sniff_format(head, name) == fmt


def test_exif_thumbnail_is_found():
    """A JPEG whose EXIF APP1 carries a thumbnail in IFD1 yields that thumbnail."""
    thumb = b"\xff\xd8\xff\xdbTHUMB\xff\xd9"
    ifd0 = struct.pack("<H", 0) + struct.pack("<I", 8 + 6)       # no entries, IFD1 follows
    ifd1_entries = [struct.pack("<HHII", 0x0201, 4, 1, 8 + 6 + 2 + 24 + 4),
                    struct.pack("<HHII", 0x0202, 4, 1, len(thumb))]
    ifd1 = struct.pack("<H", 2) + b"".join(ifd1_entries) + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + ifd1 + thumb
    app1 = b"Exif\x00\x00" + tiff
    jpeg = b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + b"\xff\xda"
    assert exif_thumbnail(jpeg) == thumb
    assert exif_thumbnail(b"\xff\xd8\xff\xda") is None


@pytest.mark.parametrize("fmt,mode,options,depth", [
    ("JPEG", "RGB", {}, 24), ("JPEG", "L", {}, 8), ("JPEG", "RGB", {"progressive": True}, 24),
    ("JPEG", "CMYK", {}, 32), ("PNG", "RGB", {}, 24), ("PNG", "RGBA", {}, 32), ("PNG", "L", {}, 8),
    ("GIF", "P", {}, 8)])
def test_picture_sizes_come_from_the_header_as_pillow_reads_them(fmt, mode, options, depth):
    """ObjectInfo's pixel sizes are read from the first bytes, without Pillow (a listing
    of a large card costs no image decoding), and agree with Pillow."""
    from PIL import Image

    from ptpip.devices.images import header_size
    out = io.BytesIO()
    Image.new("RGB", (321, 123), (10, 200, 30)).convert(mode).save(out, fmt, **options)
    data = out.getvalue()
    assert header_size(data[:1 << 16]) == (321, 123, depth)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (321, 123)
    assert header_size(data[:8]) is None                  # the header is not all there
    assert header_size(b"\xff\xd8\xff\xda" + b"\0" * 40) is None
    assert header_size(b"not a picture") is None
