"""Canon EOS over Wi-Fi, as libgphoto2's EOS path drives it ("Canon EOS (WLAN)").

What the driver does and checks (libgphoto2 2.5.30 and 2.5.34, ``camlibs/ptp2``):

- it takes the EOS path for VendorExtensionID 0x0B with RemoteRelease (0x910F) or
  RemoteReleaseOn (0x9128) advertised; "Canon EOS M..." models take another, so the
  default model is "Canon EOS 5D Mark IV";
- the EOS properties (Aperture 0xD101, ShutterSpeed 0xD102, ISO 0xD103, ImageFormat
  0xD120, CaptureDestination 0xD11C, AvailableShots 0xD11B, EVFOutputDevice 0xD1B0...)
  are never in DeviceInfo: GetEvent (0x9116) reports them as PropValueChanged records
  (and their choices as AvailListChanged), libgphoto2 keeps them in a cache and sets
  them with SetDevicePropValueEx (0x9110);
- GetEvent answers ``u32 size, u32 type, payload`` records ending with an 8-byte zero
  record; libgphoto2 asks again until an answer holds no record, so each change is
  reported once;
- folders are listed with GetObjectInfoEx (0x9109: 56-byte entries, 8.3 names);
- a capture is RemoteRelease, or RemoteReleaseOn/Off half and full press; with the
  capture destination "PC" (4, libgphoto2's default "Internal RAM") the picture is held
  in memory and announced by RequestObjectTransfer, fetched in 1 MiB GetPartialObject
  pieces and freed by TransferComplete (0x9117); with the card (1) it is written to
  DCIM/100CANON and announced by ObjectAddedEx. CameraStatus 0 ends either.

Live view: with EVFOutputDevice 0xD1B0 set to 2 (the PC, as gphoto2 sets it) GetViewFinderData
0x9153 answers a frame as a ``u32 size, u32 type 1, JPEG`` record (NotReady 0xA102 before);
InitiateViewfinder/TerminateViewfinder 0x9151/0x9152 switch it.

Not emulated (and not advertised, since the driver changes its path for them): the OLC
info group (0x913D), bulb, movie recording and RAW files (an ImageFormat of RAW still
makes a JPEG).
"""

from __future__ import annotations

import calendar
import struct
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from ..interfaces import IIncomingData, Response
from ..wire.constants import DataType, EventCode, ObjectFormat, ResponseCode
from ..wire.constants import OperationCode as Op
from ..wire.datasets import pack_u32_array
from ..wire.eos import (
    IMAGE_FORMAT_PROPS,
    TERMINATOR,
    decode_value,
    pack_image_format,
    record,
    value_bytes,
    value_width,
)
from ..wire.errors import OperationError
from ..wire.vendor import CanonEOSEvent as Ev
from ..wire.vendor import CanonEOSProp as P
from ..wire.vendor import CanonOp, VendorExtension
from .filestore import ALL
from .personality import HeldObject, Profile, VendorSession
from .properties import Property, _enum, _range

#: CaptureDestination values: the card, or the host ("Internal RAM" in gphoto2).
DESTINATION_CARD = 1
DESTINATION_PC = 4

#: Records kept for a GetEvent that does not come (property changes are kept apart, one each).
MAX_RECORDS = 1024

#: Pictures held for the host at once; a release beyond answers DeviceBusy.
MAX_HELD = 8

#: EVFOutputDevice: the viewfinder goes to the PC (live view over the network).
EVF_PC = 2
#: GetViewFinderData before the viewfinder is on (libgphoto2 retries it for 3 s).
EOS_NOT_READY = 0xA102

#: Handles of pictures held in memory for the host (outside the card's range).
HELD_BASE = 0x7F000000

#: EOS aperture codes (f/2.8 .. f/22 in third stops).
APERTURES = (0x20, 0x23, 0x25, 0x28, 0x2B, 0x2D, 0x30, 0x33, 0x35, 0x38, 0x3B, 0x3D, 0x40, 0x43, 0x45,
             0x48, 0x4B, 0x4D, 0x50)
#: EOS shutter speed codes (30 s .. 1/8000 s in full stops and the common thirds).
SHUTTER_SPEEDS = (0x10, 0x18, 0x20, 0x28, 0x30, 0x38, 0x40, 0x48, 0x50, 0x58, 0x60, 0x68, 0x6B, 0x6D,
                  0x70, 0x73, 0x75, 0x78, 0x7B, 0x7D, 0x80, 0x83, 0x85, 0x88, 0x8B, 0x8D, 0x90, 0x93,
                  0x95, 0x98, 0x9B, 0x9D, 0xA0)
#: EOS ISO codes: Auto, then 100 .. 25600.
ISO_SPEEDS = (0x00, 0x48, 0x4B, 0x4D, 0x50, 0x53, 0x55, 0x58, 0x5B, 0x5D, 0x60, 0x63, 0x65, 0x68, 0x6B,
              0x6D, 0x70, 0x78, 0x80, 0x88)
#: ImageFormat as libgphoto2 condenses it: size<<12 | compression<<8 per entry (RAW: 0xC).
IMAGE_FORMATS = (0x0300, 0x0200, 0x1300, 0x1200, 0x2300, 0x2200, 0x0C00, 0x0C03)


#: ExpCompensation 0xD104: signed eighths of a stop, thirds from -3 to +3 (libgphoto2's table).
EXP_COMPENSATION = (0xE8, 0xEB, 0xED, 0xF0, 0xF3, 0xF5, 0xF8, 0xFB, 0xFD, 0x00,
                    0x03, 0x05, 0x08, 0x0B, 0x0D, 0x10, 0x13, 0x15, 0x18)


def eos_properties(model: str, serial: str) -> list[Property]:
    """The EOS properties a camera of *model* reports, with the datatypes libgphoto2 reads."""
    return [
        _enum(P.Aperture, DataType.UINT16, 0x30, APERTURES),
        _enum(P.ShutterSpeed, DataType.UINT16, 0x78, SHUTTER_SPEEDS),
        _enum(P.ISOSpeed, DataType.UINT16, 0x48, ISO_SPEEDS),
        _enum(P.ImageFormat, DataType.UINT16, 0x0300, IMAGE_FORMATS),
        _enum(P.AutoExposureMode, DataType.UINT16, 2, (0, 1, 2, 3, 4)),
        _enum(P.DriveMode, DataType.UINT16, 0, (0, 1, 0x10)),
        _enum(P.MeteringMode, DataType.UINT8, 3, (1, 3, 4, 5)),
        _enum(P.ExpCompensation, DataType.UINT8, 0, EXP_COMPENSATION),
        # Manual focus: libgphoto2 does not wait for focus information at half press.
        _enum(P.FocusMode, DataType.UINT16, 3, (0, 1, 2, 3)),
        _enum(P.WhiteBalance, DataType.UINT8, 0, (0, 1, 2, 3, 4, 5, 6, 8, 9)),
        _enum(P.ColorSpace, DataType.UINT16, 1, (1, 2)),
        _enum(P.BatteryPower, DataType.UINT16, 2, (0, 1, 2, 4, 5), writable=False),   # 2: full
        _range(P.AvailableShots, DataType.UINT32, 999, 0, 0xFFFFFFFF, 1, writable=False),
        _enum(P.CaptureDestination, DataType.UINT32, DESTINATION_CARD, (DESTINATION_CARD, DESTINATION_PC)),
        _enum(P.EVFOutputDevice, DataType.UINT16, 0, (0, 1, EVF_PC)),
        _enum(P.EVFMode, DataType.UINT16, 0, (0, 1)),
        Property(P.Owner, DataType.STR, "", True),
        Property(P.Artist, DataType.STR, "", True),
        Property(P.Copyright, DataType.STR, "", True),
        Property(0xD1AF, DataType.STR, serial, False),          # SerialNumber
        Property(0xD1D8, DataType.STR, "EF24-70mm f/2.8L II USM", False),   # LensName
    ]


class CanonEOSSession(VendorSession):
    """Canon EOS's half of a PTP session: the GetEvent records and the release."""

    data_out = frozenset({CanonOp.SetDevicePropValueEx})

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        self.records: list[bytes] = []
        #: Properties changed since the last GetEvent (each reported once, with its last value).
        self._dirty: dict[int, None] = {}
        #: Records dropped because the initiator stopped asking for them.
        self.dropped = 0
        self.remote_mode = 0
        self.event_mode = 0
        self._reported = False
        self._capture: defer.Deferred[Any] | None = None
        self.held: dict[int, HeldObject] = {}
        #: ObjectAddedEx of others' files held back while our capture is on its way (else
        #: libgphoto2 would take the first new file for the picture it waits for).
        self._later: list[bytes] = []
        self._precious: list[bytes] = []

    def handlers(self) -> dict[int, Callable[..., Any]]:
        s = self.session
        return {
            CanonOp.GetStorageIDs: s.getStorageIDs,
            CanonOp.GetStorageInfo: s.getStorageInfo,
            CanonOp.GetDeviceInfoEx: self.getDeviceInfoEx,
            CanonOp.GetObjectInfoEx: self.getObjectInfoEx,
            CanonOp.SetRemoteMode: self.setRemoteMode,
            CanonOp.SetEventMode: self.setEventMode,
            CanonOp.GetEvent: self.getEvent,
            CanonOp.SetDevicePropValueEx: self.setDevicePropValueEx,
            CanonOp.RemoteRelease: self.remoteRelease,
            CanonOp.RemoteReleaseOn: self.remoteReleaseOn,
            CanonOp.RemoteReleaseOff: self.remoteReleaseOff,
            CanonOp.TransferComplete: self.transferComplete,
            CanonOp.InitiateViewfinder: self.initiateViewfinder,
            CanonOp.TerminateViewfinder: self.terminateViewfinder,
            CanonOp.GetViewFinderData: self.getViewFinderData,
            CanonOp.PCHDDCapacity: self._ok,
            CanonOp.KeepDeviceOn: self._ok,
            CanonOp.SetUILock: self._ok,
            CanonOp.ResetUILock: self._ok,
            Op.GetObjectInfo: self._heldOr(Op.GetObjectInfo, s.getObjectInfo),
            Op.GetObject: self._heldOr(Op.GetObject, s.getObject),
            Op.GetPartialObject: self._heldOr(Op.GetPartialObject, s.getPartialObject),
        }

    def _ok(self, *_: int) -> Response:
        return Response()

    # -- GetEvent ---------------------------------------------------------------------
    def _propRecords(self, code: int, with_choices: bool) -> list[bytes]:
        props = self.camera.properties
        desc = props.describe(code)
        out = [record(Ev.PropValueChanged, struct.pack("<I", code)
                      + value_bytes(code, desc.datatype, props.get(code)))]
        if with_choices and desc.enumeration:
            if code == P.ImageFormat:
                values = b"".join(pack_image_format(v) for v in desc.enumeration)
            else:
                values = b"".join(struct.pack("<I", int(v)) for v in desc.enumeration)
            out.append(record(Ev.AvailListChanged,
                              struct.pack("<III", code, 3, len(desc.enumeration)) + values))
        return out

    def _reportAll(self) -> None:
        """The first GetEvent of a session reports every property and its choices."""
        self._reported = True
        bulk: list[bytes] = []
        for code in self.camera.properties.supported():
            bulk += self._propRecords(code, True)
        bulk.append(record(Ev.CameraStatusChanged, struct.pack("<I", 0)))
        self.records[:0] = bulk

    def _queue(self, rec: bytes) -> None:
        """A record for the next GetEvent; an initiator that never asks does not make the
        list grow without bound (the oldest go, and are counted)."""
        self.records.append(rec)
        if len(self.records) > MAX_RECORDS:
            del self.records[0]
            self.dropped += 1

    def getEvent(self, *_: int) -> Response:
        if not self._reported:
            self._reportAll()
        records = [r for code in self._dirty for r in self._propRecords(code, False)]
        records += self._precious + self.records
        self._dirty, self._precious, self.records = {}, [], []
        return Response(data=b"".join(records) + TERMINATOR)

    def event(self, code: int, params: tuple[int, ...], transaction_id: int) -> bool:
        handle = params[0] if params else 0
        if code == EventCode.DevicePropChanged:
            if self._reported:
                self._dirty[handle] = None
        elif code == EventCode.ObjectAdded:
            try:
                rec = self._objectAdded(handle)
                if self._capture is not None:
                    self._later.append(rec)
                else:
                    self._queue(rec)
            except OperationError:
                pass                      # gone again before anyone asked
        elif code == EventCode.ObjectRemoved:
            self._queue(record(Ev.ObjectRemoved, struct.pack("<I", handle)))
        return True                      # EOS cameras never use the PTP-IP event channel

    def _objectAdded(self, handle: int) -> bytes:
        info = self.session.store.objectInfo(handle)
        payload = struct.pack("<IIH", handle, info.storage_id, info.object_format).ljust(0x14, b"\0")
        payload += struct.pack("<II", min(info.object_compressed_size, 0xFFFFFFFF), info.parent_object)
        payload = payload.ljust(0x20, b"\0") + info.filename.encode("latin-1", "replace") + b"\0"
        return record(Ev.ObjectAddedEx, payload)

    # -- modes, device info, listing --------------------------------------------------
    def setRemoteMode(self, mode: int, *_: int) -> Response:
        self.remote_mode = mode
        return Response()

    def setEventMode(self, mode: int, *_: int) -> Response:
        self.event_mode = mode
        return Response()

    def getDeviceInfoEx(self, *_: int) -> Response:
        events = [Ev.ObjectAddedEx, Ev.ObjectRemoved, Ev.RequestObjectTransfer, Ev.PropValueChanged,
                  Ev.AvailListChanged, Ev.CameraStatusChanged]
        props = list(self.camera.properties.supported())
        body = pack_u32_array(events) + pack_u32_array(props) + pack_u32_array([0x0000])
        return Response(data=struct.pack("<I", 4 + len(body)) + body)

    def getObjectInfoEx(self, storage_id: int, parent: int, *_: int) -> Response:
        store = self.session.store
        if storage_id != store.storage_id:
            raise OperationError(ResponseCode.InvalidStorageID, f"storage 0x{storage_id:08X}")
        entries = []
        for h in store.handles(0, ALL if parent in (0, ALL) else parent):
            info = store.objectInfo(h)
            name = info.filename.encode("latin-1", "replace")
            if len(name) > 12:
                # EOS names are 8.3: libgphoto2 would cut this one short. Refusing the
                # listing makes it list with GetObjectHandles and GetObjectInfo instead.
                raise OperationError(ResponseCode.OperationNotSupported,
                                     f"{info.filename!r} is longer than an EOS folder entry holds")
            entry = struct.pack("<IIIH", 0x38, h, storage_id, info.object_format).ljust(20, b"\0")
            entry += struct.pack("<B", 1 if info.protection_status else 0).ljust(4, b"\0")
            entry += struct.pack("<I", min(info.object_compressed_size, 0xFFFFFFFF)).ljust(12, b"\0")
            entry += name.ljust(16, b"\0") + struct.pack("<I", _epoch(info.modification_date))
            entries.append(entry.ljust(0x38, b"\0"))
        return Response(data=struct.pack("<I", len(entries)) + b"".join(entries))

    # -- properties ---------------------------------------------------------------------
    @defer.inlineCallbacks
    def setDevicePropValueEx(self, incoming: IIncomingData, *_: int) -> Any:
        data = yield incoming.readAll(1 << 12)
        # u32 size, u32 code, value: 8 + strlen + 1 bytes for a string, 12 for an integer.
        if len(data) < 9:
            raise OperationError(ResponseCode.InvalidDevicePropFormat, f"{len(data)} bytes")
        size, code = struct.unpack_from("<II", data)
        if not 9 <= size <= len(data):
            raise OperationError(ResponseCode.InvalidDevicePropFormat, f"size {size} of {len(data)} bytes")
        props = self.camera.properties
        desc = props.describe(code)
        raw = data[8:size]
        if desc.datatype == DataType.STR:
            if b"\0" not in raw:
                raise OperationError(ResponseCode.InvalidDevicePropFormat, "a string without its NUL")
        elif code not in IMAGE_FORMAT_PROPS:
            if len(raw) < 4 or int.from_bytes(raw[:4], "little") >> (8 * value_width(desc.datatype)):
                raise OperationError(ResponseCode.InvalidDevicePropValue,
                                     f"{raw[:4].hex()} does not fit property 0x{code:04X}")
        props.set(code, decode_value(code, desc.datatype, raw))
        return Response()

    # -- live view ----------------------------------------------------------------------
    def initiateViewfinder(self, *_: int) -> Response:
        self.camera.properties.set(P.EVFOutputDevice, EVF_PC)
        return Response()

    def terminateViewfinder(self, *_: int) -> Response:
        if self.camera.properties.get(P.EVFOutputDevice) & EVF_PC:
            self.camera.properties.set(P.EVFOutputDevice, 0)
        return Response()

    def getViewFinderData(self, *_: int) -> Any:
        """One viewfinder frame as a ``u32 size, u32 type 1, JPEG`` record, while the
        viewfinder goes to the PC (EVFOutputDevice 2); NotReady (0xA102) otherwise."""
        source = self.camera.live_view
        if source is None or not self.camera.properties.get(P.EVFOutputDevice) & EVF_PC:
            return Response(EOS_NOT_READY)
        return defer.maybeDeferred(source.frame).addCallback(
            lambda jpeg: Response(data=(struct.pack("<II", 8 + len(jpeg), 1), jpeg)))      # one record

    # -- release ------------------------------------------------------------------------
    def remoteRelease(self, *_: int) -> Response:
        return self._release()

    def remoteReleaseOn(self, press: int, *_: int) -> Response:
        if press & 2:                     # full press: the shutter; half press only focuses
            return self._release()
        return Response()

    def remoteReleaseOff(self, press: int, *_: int) -> Response:
        return Response()

    def _release(self) -> Response:
        source = self.camera.capture_source
        if source is None:
            raise OperationError(ResponseCode.OperationNotSupported, "this camera has no capture source")
        if self._capture is not None:
            raise OperationError(ResponseCode.DeviceBusy, "a capture is in progress")
        destination = self.camera.properties.get(P.CaptureDestination)
        if destination == DESTINATION_PC and len(self.held) >= MAX_HELD:
            raise OperationError(ResponseCode.DeviceBusy,
                                 f"{len(self.held)} pictures wait for the host already (TransferComplete)")
        self._queue(record(Ev.CameraStatusChanged, struct.pack("<I", 1)))
        d = self._capture = defer.maybeDeferred(source.capture, 0)
        # An errback after the callback: a card that refuses the picture ends the capture too.
        d.addCallback(self._captured, destination).addErrback(self._captureFailed)
        return Response()

    def _captured(self, result: tuple[str, bytes], destination: int) -> None:
        self._capture = None
        name, data = result
        number = next_shot(self.camera)
        eos_name = f"IMG_{number:04d}.JPG"
        if destination == DESTINATION_PC:
            handle = HELD_BASE + number
            held = self.held[handle] = HeldObject(handle, eos_name, data, self.session.store.storage_id)
            payload = struct.pack("<IH", handle, ObjectFormat.EXIF_JPEG).ljust(0x0C, b"\0")
            payload += struct.pack("<I", len(held.data)).ljust(8, b"\0")
            self._precious.append(record(Ev.RequestObjectTransfer, payload + eos_name.encode() + b"\0"))
        else:
            self.camera.keep(eos_name, data)      # ObjectAddedEx through the store's event
        self._queue(record(Ev.CameraStatusChanged, struct.pack("<I", 0)))
        self._flushLater()

    def _captureFailed(self, failure: Failure) -> None:
        self._capture = None
        if not failure.check(defer.CancelledError):
            self.session.log.failure("capture failed", failure)
        self._queue(record(Ev.CameraStatusChanged, struct.pack("<I", 0)))
        self._flushLater()

    def _flushLater(self) -> None:
        later, self._later = self._later, []
        for rec in later:
            self._queue(rec)

    # -- pictures held for the host -------------------------------------------------------
    def _heldOr(self, code: int, card: Callable[..., Any]) -> Callable[..., Any]:
        def handler(handle: int, *params: int) -> Any:
            held = self.held.get(handle)
            return card(handle, *params) if held is None else held.respond(code, params)
        return handler

    def transferComplete(self, handle: int, *_: int) -> Response:
        if self.held.pop(handle, None) is None:
            raise OperationError(ResponseCode.InvalidObjectHandle, f"no transfer of 0x{handle:08X}")
        return Response()

    def closed(self) -> None:
        if self._capture is not None:
            self._capture.cancel()
        self.held.clear()
        self.records.clear()
        self._later.clear()
        self._precious.clear()
        self._dirty.clear()
        self._reported = False


def next_shot(camera: Any) -> int:
    """The number of the next IMG_nnnn.JPG: one counter per camera (not per session, so two
    sessions never make the same name), starting after the highest on the card."""
    if "eos_shots" not in camera.vendor_state:
        highest = 0
        for h in camera.store.handles():
            name = camera.store.objectInfo(h).filename
            if len(name) == 12 and name[:4] == "IMG_" and name[4:8].isdigit():
                highest = max(highest, int(name[4:8]))
        camera.vendor_state["eos_shots"] = highest
    camera.vendor_state["eos_shots"] = camera.vendor_state["eos_shots"] % 9999 + 1
    return int(camera.vendor_state["eos_shots"])


def _epoch(ptp_date: str) -> int:
    try:
        return calendar.timegm(time.strptime(ptp_date[:15], "%Y%m%dT%H%M%S"))
    except ValueError:
        return 0


class CanonEOSProfile(Profile):
    """The Canon EOS personality."""

    #: With RemoteReleaseOn/Off (0x9128/0x9129) advertised, gphoto2 presses half and full
    #: instead of sending RemoteRelease (0x910F).
    release_on_off: bool = True

    def operations(self, camera: Any) -> list[int]:
        ops: list[int] = [CanonOp.GetStorageIDs, CanonOp.GetStorageInfo, CanonOp.GetDeviceInfoEx,
               CanonOp.GetObjectInfoEx, CanonOp.SetDevicePropValueEx, CanonOp.SetRemoteMode,
               CanonOp.SetEventMode, CanonOp.GetEvent, CanonOp.TransferComplete, CanonOp.PCHDDCapacity,
               CanonOp.KeepDeviceOn, CanonOp.SetUILock, CanonOp.ResetUILock, CanonOp.RemoteRelease]
        if camera.live_view is not None:
            ops += [CanonOp.InitiateViewfinder, CanonOp.TerminateViewfinder, CanonOp.GetViewFinderData]
        if self.release_on_off:
            ops += [CanonOp.RemoteReleaseOn, CanonOp.RemoteReleaseOff]
        return ops

    def make_properties(self) -> list[Property]:
        return self.vendor_properties()

    def advertised_properties(self, camera: Any) -> list[int]:
        # The EOS properties live in libgphoto2's GetEvent cache: listing them here would
        # make it use GetDevicePropDesc on them instead.
        return []


def canon_eos(model: str = "Canon EOS 5D Mark IV", *, release_on_off: bool = True,
              serial: str = "083021001234") -> Profile:
    """A Canon EOS camera over Wi-Fi (gphoto2 model "Canon EOS (WLAN)")."""
    profile = CanonEOSProfile(
        name="canon-eos" if release_on_off else "canon-eos-classic", manufacturer="Canon Inc.",
        model=model, device_version="1-1.0.4", serial_number=serial, vendor_extension_id=VendorExtension.Canon,
        vendor_extension_version=100, vendor_extension_desc="", gphoto2_model="Canon EOS (WLAN)",
        summary=("a Canon EOS (GetEvent 0x9116, RemoteReleaseOn/Off, held pictures, EOS properties)"
                 if release_on_off else "an older Canon EOS that releases with RemoteRelease 0x910F only"),
        capture_folder="DCIM/100CANON",
        hidden_operations=frozenset({Op.InitiateCapture}),
        vendor_properties=lambda: eos_properties(model, serial), session_class=CanonEOSSession, streams=False)
    profile.release_on_off = release_on_off
    return profile


__all__ = ["CanonEOSProfile", "CanonEOSSession", "canon_eos"]
