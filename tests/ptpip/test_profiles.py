"""The vendor personalities below the transport: their records and flows, byte for byte.

Known answers come from libgphoto2's parsers (``ptp-pack.c``: ``ptp_unpack_CANON_changes``,
``ptp_unpack_EOS_ImageFormat``, ``ptp_unpack_Nikon_EC``) and what its config code sends.
The flows are driven through ``CameraSession.handleOperation`` as the responder drives it.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from zope.interface import implementer

from ptpip.devices.camera import filesystem_camera
from ptpip.devices.canon_eos import HELD_BASE, IMAGE_FORMATS
from ptpip.devices.nikon import SDRAM_HANDLE
from ptpip.devices.profiles import PROFILES, get_profile
from ptpip.interfaces import ICaptureSource, IIncomingData
from ptpip.wire.constants import EventCode, ResponseCode
from ptpip.wire.constants import OperationCode as Op
from ptpip.wire.datasets import ObjectInfo
from ptpip.wire.eos import TERMINATOR, pack_image_format, unpack_image_format
from ptpip.wire.errors import OperationError
from ptpip.wire.packets import OperationRequest
from ptpip.wire.vendor import CanonEOSEvent, CanonEOSProp, CanonOp, NikonEvent, NikonOp


@implementer(ICaptureSource)
class Shutter:
    """Captures synchronously, or holds each capture until ``finish``."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.pending: list[defer.Deferred[Any]] = []

    def capture(self, object_format: int = 0) -> Any:
        if not self.hold:
            return "SHOT.JPG", b"\xff\xd8picture\xff\xd9"
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append(d)
        return d

    def finish(self) -> None:
        self.pending.pop(0).callback(("SHOT.JPG", b"\xff\xd8held\xff\xd9"))


@implementer(IIncomingData)
class Incoming:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def readAll(self, limit: int) -> defer.Deferred[bytes]:
        return defer.succeed(self.data)

    def deliverTo(self, consumer: Any) -> defer.Deferred[int]:
        consumer.write(self.data)
        return defer.succeed(len(self.data))


class Events:
    def __init__(self) -> None:
        self.sent: list[tuple[int, tuple[int, ...], int]] = []

    def sendEvent(self, code: int, params: tuple[int, ...] = (), transaction_id: int = 0xFFFFFFFF) -> None:
        self.sent.append((code, tuple(params), transaction_id))


class Driver:
    """One PTP session with a camera of a profile, driven operation by operation."""

    def __init__(self, tmp_path: Any, profile: str, shutter: Shutter | None = None) -> None:
        root = tmp_path / "card"
        (root / "DCIM" / "100TEST").mkdir(parents=True)
        (root / "DCIM" / "100TEST" / "IMG_0001.JPG").write_bytes(b"\xff\xd8one\xff\xd9")
        self.camera = filesystem_camera(str(root), scan_interval=None, profile=get_profile(profile))
        self.camera.capture_source = shutter or Shutter()
        self.events = Events()
        self.session = self.camera.newSession(object(), self.events)
        self.tid = 0
        self.op(Op.OpenSession, 1)

    def op(self, code: int, *params: int, data: bytes | None = None) -> Any:
        request = OperationRequest(code=code, transaction_id=self.tid, params=params,
                                   data_phase=2 if data is not None else 1)
        self.tid += 1
        result = self.session.handleOperation(request, Incoming(data) if data is not None else None)
        if isinstance(result, defer.Deferred):
            out: list[Any] = []
            result.addBoth(out.append)
            result = out[0]
            if hasattr(result, "raiseException"):
                result.raiseException()
        if isinstance(getattr(result, "data", None), tuple):
            # gathered parts go out one after another
            result = dataclasses.replace(result, data=b"".join(result.data))
        return result


# -- Canon EOS ---------------------------------------------------------------------------
def eos_records(data: bytes) -> list[tuple[int, bytes]]:
    """Split a GetEvent answer as libgphoto2 does; it must end with the terminator."""
    assert data.endswith(TERMINATOR), "a GetEvent answer ends with the 8-byte terminator"
    out, pos = [], 0
    while True:
        size, kind = struct.unpack_from("<II", data, pos)
        if (size, kind) == (8, 0):
            assert pos + 8 == len(data)
            return out
        assert size >= 8 and pos + size < len(data)
        out.append((kind, data[pos + 8:pos + size]))
        pos += size


def test_eos_image_format_known_answers():
    # Large Fine JPEG, one entry: {0x10, type 1 (JPEG), size 0 (L), compression 3 (fine)}
    assert pack_image_format(0x0300).hex() == "01000000" "10000000" "01000000" "00000000" "03000000"
    # RAW + Large Fine JPEG: two entries, RAW first
    assert pack_image_format(0x0C03) == struct.pack("<IIIIIIIII", 2, 0x10, 6, 0, 4, 0x10, 1, 0, 3)
    assert unpack_image_format(struct.pack("<IIIII", 1, 0x10, 1, 2, 3))[0] == 0x2300     # Small Fine


@given(st.sampled_from(IMAGE_FORMATS))
def test_eos_image_format_round_trips(code):
    assert unpack_image_format(pack_image_format(code))[0] == code


def test_eos_first_get_event_reports_every_property_then_nothing(tmp_path):
    d = Driver(tmp_path, "canon-eos")
    records = eos_records(d.op(CanonOp.GetEvent).data)
    values = {struct.unpack_from("<I", p)[0]: p[4:] for k, p in records if k == CanonEOSEvent.PropValueChanged}
    assert values[CanonEOSProp.Aperture] == struct.pack("<I", 0x30)                  # f/5.6
    assert values[CanonEOSProp.AvailableShots] == struct.pack("<I", 999)
    assert values[CanonEOSProp.CaptureDestination] == struct.pack("<I", 1)            # the card
    assert values[0xD1D8].endswith(b"\0")                                              # strings end with NUL
    lists = {struct.unpack_from("<I", p)[0]: p for k, p in records if k == CanonEOSEvent.AvailListChanged}
    prop, form, count = struct.unpack_from("<III", lists[CanonEOSProp.Aperture])
    assert form == 3 and count == len(lists[CanonEOSProp.Aperture][12:]) // 4
    # Each AvailList comes after its property's value (libgphoto2 ignores it otherwise).
    order = [(k, struct.unpack_from("<I", p)[0]) for k, p in records]
    for i, (kind, code) in enumerate(order):
        if kind == CanonEOSEvent.AvailListChanged:
            assert (CanonEOSEvent.PropValueChanged, code) in order[:i]
    assert eos_records(d.op(CanonOp.GetEvent).data) == []          # everything was said once
    assert d.events.sent == []                                     # nothing on the event channel


def test_eos_set_aperture_as_gphoto2_sends_it(tmp_path):
    d = Driver(tmp_path, "canon-eos")
    d.op(CanonOp.GetEvent)
    # What `gphoto2 --set-config aperture=8` sends: size 12, 0xD101, 0x38
    d.op(CanonOp.SetDevicePropValueEx, data=bytes.fromhex("0c000000" "01d10000" "38000000"))
    assert d.camera.properties.get(CanonEOSProp.Aperture) == 0x38
    assert eos_records(d.op(CanonOp.GetEvent).data) == [
        (CanonEOSEvent.PropValueChanged, struct.pack("<II", CanonEOSProp.Aperture, 0x38))]
    with pytest.raises(OperationError) as e:
        d.op(CanonOp.SetDevicePropValueEx, data=struct.pack("<III", 12, CanonEOSProp.Aperture, 0x31))
    assert e.value.response_code == ResponseCode.InvalidDevicePropValue
    d.op(CanonOp.SetDevicePropValueEx, data=struct.pack("<II", 8 + 6, CanonEOSProp.Artist) + b"Ansel\0")
    assert d.camera.properties.get(CanonEOSProp.Artist) == "Ansel"


def test_eos_release_to_the_host_holds_the_picture_until_transfer_complete(tmp_path):
    shutter = Shutter(hold=True)
    d = Driver(tmp_path, "canon-eos", shutter)
    before = sorted(d.camera.store.handles())
    d.op(CanonOp.GetEvent)
    d.op(CanonOp.SetDevicePropValueEx, data=struct.pack("<III", 12, CanonEOSProp.CaptureDestination, 4))
    d.op(CanonOp.GetEvent)
    d.op(CanonOp.RemoteReleaseOn, 1, 0)                            # half press: focus only
    assert not shutter.pending
    d.op(CanonOp.RemoteReleaseOn, 2, 0)                            # full press: the shutter
    with pytest.raises(OperationError) as e:
        d.op(CanonOp.RemoteRelease)
    assert e.value.response_code == ResponseCode.DeviceBusy
    assert eos_records(d.op(CanonOp.GetEvent).data) == [
        (CanonEOSEvent.CameraStatusChanged, struct.pack("<I", 1))]
    shutter.finish()
    records = eos_records(d.op(CanonOp.GetEvent).data)
    assert [k for k, _ in records] == [CanonEOSEvent.RequestObjectTransfer, CanonEOSEvent.CameraStatusChanged]
    handle, ofc = struct.unpack_from("<IH", records[0][1])
    size = struct.unpack_from("<I", records[0][1], 0x0C)[0]
    # IMG_0001.JPG is on the card already: the camera numbers on from there.
    assert handle == HELD_BASE + 2 and ofc == 0x3801 and size == len(b"\xff\xd8held\xff\xd9")
    assert records[0][1][0x14:] == b"IMG_0002.JPG\0"
    got = b""
    while len(got) < size:
        r = d.op(Op.GetPartialObject, handle, len(got), 4)
        assert r.params == (len(r.data),) and r.data
        got += r.data
    assert got == b"\xff\xd8held\xff\xd9"
    with pytest.raises(OperationError):                            # never an empty piece
        d.op(Op.GetPartialObject, handle, size, 4)
    d.op(CanonOp.TransferComplete, handle)
    with pytest.raises(OperationError):
        d.op(CanonOp.TransferComplete, handle)
    assert sorted(d.camera.store.handles()) == before              # nothing was written to the card


def test_eos_release_to_the_card_announces_object_added_ex(tmp_path):
    d = Driver(tmp_path, "canon-eos-classic")
    assert CanonOp.RemoteReleaseOn not in d.camera.operations()
    assert Op.InitiateCapture not in d.camera.operations()        # EOS cameras do not offer it
    d.op(CanonOp.GetEvent)
    d.op(CanonOp.RemoteRelease)
    records = eos_records(d.op(CanonOp.GetEvent).data)
    added = [p for k, p in records if k == CanonEOSEvent.ObjectAddedEx]
    folders = [p for p in added if struct.unpack_from("<H", p, 8)[0] == 0x3001]
    files = [p for p in added if struct.unpack_from("<H", p, 8)[0] != 0x3001]
    assert [p[0x20:] for p in folders] == [b"100CANON\0"]
    (picture,) = files
    handle, storage = struct.unpack_from("<II", picture)
    size, parent = struct.unpack_from("<II", picture, 0x14)
    info: ObjectInfo = d.camera.store.objectInfo(handle)
    assert (storage, size, parent) == (info.storage_id, info.object_compressed_size, info.parent_object)
    assert picture[0x20:] == b"IMG_0002.JPG\0" and info.filename == "IMG_0002.JPG"
    assert records[-1] == (CanonEOSEvent.CameraStatusChanged, struct.pack("<I", 0))


def test_eos_folder_listing_entries(tmp_path):
    d = Driver(tmp_path, "canon-eos")
    store = d.camera.store
    (dcim,) = [h for h in store.handles(0x3001, 0xFFFFFFFF)]
    data = d.op(CanonOp.GetObjectInfoEx, store.storage_id, 0xFFFFFFFF, 0x100000).data
    assert struct.unpack_from("<I", data)[0] == 1
    size, handle, _, ofc = struct.unpack_from("<IIIH", data, 4)
    assert (size, handle, ofc) == (0x38, dcim, 0x3001) and data[4 + 36:4 + 52].rstrip(b"\0") == b"DCIM"
    (folder,) = store.handles(0x3001, dcim)
    data = d.op(CanonOp.GetObjectInfoEx, store.storage_id, folder, 0x100000).data
    assert struct.unpack_from("<I", data, 4 + 24)[0] == len(b"\xff\xd8one\xff\xd9")
    # A name longer than 8.3 does not fit: the listing is refused, gphoto2 lists the standard way.
    (tmp_path / "card" / "DCIM" / "100TEST" / "a-long-file-name.jpg").write_bytes(b"x")
    store.scan(announce=False)
    with pytest.raises(OperationError):
        d.op(CanonOp.GetObjectInfoEx, store.storage_id, folder, 0x100000)


# -- Nikon -------------------------------------------------------------------------------
def nikon_events(data: bytes) -> list[tuple[int, int]]:
    (n,) = struct.unpack_from("<H", data)
    assert len(data) == 2 + 6 * n
    return [struct.unpack_from("<HI", data, 2 + 6 * i) for i in range(n)]


def test_nikon_vendor_prop_codes_and_device_info(tmp_path):
    d = Driver(tmp_path, "nikon")
    data = d.op(NikonOp.GetVendorPropCodes).data
    (n,) = struct.unpack_from("<I", data)
    codes = struct.unpack_from(f"<{n}H", data, 4)
    assert 0xD100 in codes and len(data) == 4 + 2 * n
    info = d.camera.deviceInfo()
    assert not set(codes) & set(info.device_properties_supported)   # never listed twice
    for code in codes:
        d.op(Op.GetDevicePropDesc, code)                            # each has a description
    for op in (0x941C, 0x9439, 0x9207, 0x90C5):
        assert op not in info.operations_supported


def test_nikon_sdram_capture_busy_then_ready(tmp_path):
    shutter = Shutter(hold=True)
    d = Driver(tmp_path, "nikon", shutter)
    before = sorted(d.camera.store.handles())
    d.op(NikonOp.InitiateCaptureRecInSdram, 0xFFFFFFFF)
    assert d.op(NikonOp.DeviceReady).code == ResponseCode.DeviceBusy
    shutter.finish()
    assert d.op(NikonOp.DeviceReady).code == ResponseCode.DeviceBusy   # at least twice busy
    assert d.op(NikonOp.DeviceReady).code == ResponseCode.OK
    assert nikon_events(d.op(NikonOp.GetEvent).data) == [
        (NikonEvent.ObjectAddedInSDRAM, SDRAM_HANDLE), (NikonEvent.CaptureCompleteRecInSdram, 0)]
    assert d.op(NikonOp.GetEvent).data == b"\0\0"
    info = ObjectInfo.decode(d.op(Op.GetObjectInfo, SDRAM_HANDLE).data)
    assert (info.parent_object, info.storage_id, info.object_compressed_size) == (0, 0, len(b"\xff\xd8held\xff\xd9"))
    assert d.op(Op.GetObject, SDRAM_HANDLE).data == b"\xff\xd8held\xff\xd9"
    d.op(Op.DeleteObject, SDRAM_HANDLE, 0)
    with pytest.raises(OperationError):
        d.op(Op.GetObject, SDRAM_HANDLE)
    assert sorted(d.camera.store.handles()) == before              # the card never saw it
    assert d.events.sent == []


def test_nikon_events_wait_for_get_event_except_initiate_capture(tmp_path):
    d = Driver(tmp_path, "nikon")
    d.camera.properties.setInternal(0x5007, 800)
    assert nikon_events(d.op(NikonOp.GetEvent).data) == [(EventCode.DevicePropChanged, 0x5007)]
    assert d.events.sent == []
    d.op(Op.InitiateCapture, 0, 0)                                 # gphoto2's capturetarget=card
    codes = [code for code, _, _ in d.events.sent]
    assert codes == [EventCode.ObjectAdded, EventCode.ObjectAdded, EventCode.CaptureComplete]
    (folder, picture) = [p[0] for _, p, _ in d.events.sent[:2]]
    assert d.camera.store.objectInfo(folder).filename == "100NIKON"
    assert d.camera.store.objectInfo(picture).parent_object == folder
    assert d.op(NikonOp.GetEvent).data == b"\0\0"                  # not twice


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_answers_what_it_advertises(tmp_path, name):
    """No advertised operation is left without a handler (it would answer OperationNotSupported)."""
    d = Driver(tmp_path, name)
    for code in d.camera.operations():
        assert code in d.session._handlers, f"{name} advertises 0x{code:04X} and cannot answer it"


@given(st.lists(st.tuples(st.integers(0xD100, 0xD1FF).filter(lambda c: c not in (0xD120, 0xD121, 0xD122, 0xD123)),
                          st.integers(0, 0xFFFF)), max_size=20),
       st.integers(0, 80))
def test_eos_records_parse_back_split_anywhere(values, cut):
    """What the device writes, the initiator's parser reads back; any truncation is an error,
    never a wrong record."""
    from ptpip.wire import eos
    from ptpip.wire.errors import RemoteProtocolError
    data = b"".join(eos.record(CanonEOSEvent.PropValueChanged, struct.pack("<II", c, v)) for c, v in values)
    data += eos.TERMINATOR
    parsed = eos.parse_events(data)
    assert [(p.code, eos.decode_value(p.code, 6, p.raw)) for p in parsed] == values
    if cut < len(data):
        with pytest.raises(RemoteProtocolError):
            eos.parse_events(data[:len(data) - 1 - cut])


def test_eos_parser_reads_what_the_device_says_after_a_capture(tmp_path):
    from ptpip.wire import eos
    d = Driver(tmp_path, "canon-eos")
    bulk = eos.parse_events(d.op(CanonOp.GetEvent).data)
    assert eos.AvailList(CanonEOSProp.ImageFormat, IMAGE_FORMATS) in bulk
    d.op(CanonOp.RemoteRelease)
    records = eos.parse_events(d.op(CanonOp.GetEvent).data)
    added = [r for r in records if isinstance(r, eos.ObjectAdded) and r.object_format != 0x3001]
    assert [a.filename for a in added] == ["IMG_0002.JPG"]
    assert records[-1] == eos.CameraStatus(0)


@pytest.mark.parametrize("name", ["canon-eos", "nikon"])
def test_an_initiator_that_never_polls_does_not_grow_the_queue(tmp_path, name):
    """Thousands of changes while a session never asks GetEvent: property changes are kept
    once each (with the last value), other events up to a bound, the oldest dropped."""
    from ptpip.devices import canon_eos, nikon
    d = Driver(tmp_path, name)
    if name == "canon-eos":
        d.op(CanonOp.GetEvent)
    code, values = (CanonEOSProp.Aperture, (0x30, 0x38)) if name == "canon-eos" else (0x5007, (560, 800))
    for i in range(3000):
        d.camera.properties.setInternal(code, values[i % 2])
        d.camera.store._notify(EventCode.ObjectRemoved, 1_000_000 + i)
    vendor = d.session.vendor
    if name == "canon-eos":
        assert len(vendor.records) == canon_eos.MAX_RECORDS and list(vendor._dirty) == [code]
        records = eos_records(d.op(CanonOp.GetEvent).data)
        props = [p for k, p in records if k == CanonEOSEvent.PropValueChanged]
        assert props == [struct.pack("<II", code, values[1])]
    else:
        assert len(vendor.queue) == nikon.MAX_EVENTS
        events = nikon_events(d.op(NikonOp.GetEvent).data)
        assert events.count((EventCode.DevicePropChanged, code)) == 1
    assert vendor.dropped > 0


def test_eos_short_strings_and_out_of_range_values(tmp_path):
    """libgphoto2 sends 8 + strlen + 1 bytes for a string: "" and "Me" are 9 and 11 bytes."""
    d = Driver(tmp_path, "canon-eos")
    d.op(CanonOp.GetEvent)
    for text in ("", "A", "Me"):
        raw = text.encode() + b"\0"
        d.op(CanonOp.SetDevicePropValueEx, data=struct.pack("<II", 8 + len(raw), CanonEOSProp.Owner) + raw)
        assert d.camera.properties.get(CanonEOSProp.Owner) == text
    for bad in (struct.pack("<III", 12, CanonEOSProp.Aperture, 0x10030),      # high bits set
                struct.pack("<II", 9, CanonEOSProp.Aperture) + b"\x30",         # an integer in 1 byte
                struct.pack("<II", 40, CanonEOSProp.Owner) + b"x\0",             # size past the data
                struct.pack("<II", 11, CanonEOSProp.Owner) + b"abc"):            # no NUL
        with pytest.raises(OperationError):
            d.op(CanonOp.SetDevicePropValueEx, data=bad)
    assert d.camera.properties.get(CanonEOSProp.Aperture) == 0x30


def test_eos_a_card_that_refuses_the_picture_ends_the_capture(tmp_path):
    d = Driver(tmp_path, "canon-eos")
    d.op(CanonOp.GetEvent)
    d.camera.store.read_only = True
    d.op(CanonOp.RemoteRelease)
    records = eos_records(d.op(CanonOp.GetEvent).data)
    assert records[-1] == (CanonEOSEvent.CameraStatusChanged, struct.pack("<I", 0))   # not busy for ever
    d.camera.store.read_only = False
    d.op(CanonOp.RemoteRelease)                                     # and the next release works


def test_eos_another_file_waits_until_the_capture_is_announced(tmp_path):
    """A file that lands while the picture is on its way is reported after it, or
    libgphoto2 would download (and delete) it as the capture."""
    shutter = Shutter(hold=True)
    d = Driver(tmp_path, "canon-eos", shutter)
    d.op(CanonOp.GetEvent)
    d.op(CanonOp.SetDevicePropValueEx, data=struct.pack("<III", 12, CanonEOSProp.CaptureDestination, 4))
    d.op(CanonOp.RemoteRelease)
    (tmp_path / "card" / "DCIM" / "100TEST" / "OTHER.JPG").write_bytes(b"\xff\xd8other\xff\xd9")
    d.camera.store.scan()
    kinds = [k for k, _ in eos_records(d.op(CanonOp.GetEvent).data)]
    assert CanonEOSEvent.ObjectAddedEx not in kinds
    shutter.finish()
    kinds = [k for k, _ in eos_records(d.op(CanonOp.GetEvent).data)]
    assert kinds.index(CanonEOSEvent.RequestObjectTransfer) < kinds.index(CanonEOSEvent.ObjectAddedEx)


def test_eos_held_pictures_are_bounded_and_two_sessions_never_share_a_name(tmp_path):
    from ptpip.devices.canon_eos import MAX_HELD
    d = Driver(tmp_path, "canon-eos")
    d.op(CanonOp.GetEvent)
    d.op(CanonOp.SetDevicePropValueEx, data=struct.pack("<III", 12, CanonEOSProp.CaptureDestination, 4))
    for _ in range(MAX_HELD):
        d.op(CanonOp.RemoteRelease)
    with pytest.raises(OperationError) as e:
        d.op(CanonOp.RemoteRelease)
    assert e.value.response_code == ResponseCode.DeviceBusy
    names = {HELD_BASE + n for n in range(2, 2 + MAX_HELD)}
    assert set(d.session.vendor.held) == names
    other = d.camera.newSession(object(), Events())
    other.handleOperation(OperationRequest(code=Op.OpenSession, transaction_id=0, params=(1,), data_phase=1), None)
    other.handleOperation(OperationRequest(code=CanonOp.RemoteRelease, transaction_id=1, params=(), data_phase=1),
                          None)
    assert not set(other.vendor.held) & names                       # the camera counts, not the session


def test_nikon_get_event_ends_with_the_capture(tmp_path):
    shutter = Shutter(hold=True)
    d = Driver(tmp_path, "nikon", shutter)
    d.op(NikonOp.InitiateCaptureRecInSdram, 0xFFFFFFFF)
    shutter.finish()
    d.camera.properties.setInternal(0x5007, 800)
    assert nikon_events(d.op(NikonOp.GetEvent).data) == [
        (NikonEvent.ObjectAddedInSDRAM, SDRAM_HANDLE), (NikonEvent.CaptureCompleteRecInSdram, 0)]
    assert nikon_events(d.op(NikonOp.GetEvent).data) == [(EventCode.DevicePropChanged, 0x5007)]
    with pytest.raises(OperationError):                             # never an empty piece
        d.op(Op.GetPartialObject, SDRAM_HANDLE, 10, 4)
    d.op(Op.CloseSession)
    d.op(Op.OpenSession, 2)
    with pytest.raises(OperationError):                             # the picture went with the session
        d.op(Op.GetObject, SDRAM_HANDLE)


def test_nikon_af_capture_sdram_takes_the_same_path(tmp_path):
    """AfCaptureSDRAM (0x90CB, what libgphoto2 sends with autofocus on) focuses and shoots
    into SDRAM like InitiateCaptureRecInSdram."""
    d = Driver(tmp_path, "nikon")
    d.op(NikonOp.AfCaptureSDRAM)
    while d.op(NikonOp.DeviceReady).code == ResponseCode.DeviceBusy:
        pass
    assert nikon_events(d.op(NikonOp.GetEvent).data)[0] == (NikonEvent.ObjectAddedInSDRAM, SDRAM_HANDLE)
    assert d.op(Op.GetObject, SDRAM_HANDLE).data == b"\xff\xd8picture\xff\xd9"


class _Frames:
    """A live view source whose frames are known."""

    def __init__(self) -> None:
        self.count = 0

    def frame(self) -> Any:
        self.count += 1
        return defer.succeed(b"\xff\xd8frame%d\xff\xd9" % self.count)


def test_eos_viewfinder_frames_once_sent_to_the_pc(tmp_path):
    d = Driver(tmp_path, "canon-eos")
    d.camera.live_view = _Frames()
    assert CanonOp.GetViewFinderData in d.camera.operations()
    d.op(CanonOp.GetEvent)
    r = d.op(CanonOp.GetViewFinderData, 0x00200000, 0, 0)
    assert r.code == 0xA102 and r.data is None                     # not ready: no data phase
    d.op(CanonOp.SetDevicePropValueEx, data=bytes.fromhex("0c000000" "b0d10000" "02000000"))
    r = d.op(CanonOp.GetViewFinderData, 0x00200000, 0, 0)
    jpeg = b"\xff\xd8frame1\xff\xd9"
    assert r.data == struct.pack("<II", 8 + len(jpeg), 1) + jpeg
    d.op(CanonOp.TerminateViewfinder)
    assert d.op(CanonOp.GetViewFinderData, 0x00200000, 0, 0).code == 0xA102


def test_nikon_live_view_frames_behind_their_header(tmp_path):
    from ptpip.devices.nikon import LIVE_VIEW_HEADER
    d = Driver(tmp_path, "nikon")
    d.camera.live_view = _Frames()
    assert d.op(NikonOp.GetLiveViewImg).code == 0xA00B            # NotLiveView
    d.op(NikonOp.StartLiveView)
    assert d.op(Op.GetDevicePropValue, 0xD1A2).data == b"\x01"     # LiveViewStatus on
    data = d.op(NikonOp.GetLiveViewImg).data
    assert data[:LIVE_VIEW_HEADER] == bytes(LIVE_VIEW_HEADER) and data[LIVE_VIEW_HEADER:] == b"\xff\xd8frame1\xff\xd9"
    assert d.op(NikonOp.EndLiveView).code == ResponseCode.OK
    assert d.op(NikonOp.EndLiveView).code == ResponseCode.OK      # OK when off too (sent at every exit)
    assert d.op(NikonOp.GetLiveViewImg).code == 0xA00B


def test_live_view_frames_are_plain_jpegs_that_move():
    import io

    from PIL import Image

    from ptpip.devices.liveview import draw_live_frame
    a, b = draw_live_frame(320, 240, 1), draw_live_frame(320, 240, 2)
    assert a != b and a[:2] == b"\xff\xd8" and a.count(b"\xff\xd8") == 1 and a.endswith(b"\xff\xd9")
    with Image.open(io.BytesIO(a)) as im:
        assert im.size == (320, 240) and "exif" not in im.info     # no EXIF thumbnail to confuse a search
