"""Nikon DSLR over Wi-Fi, as libgphoto2's Nikon path drives it ("Nikon DSLR (WLAN)").

What the driver does and checks (libgphoto2 2.5.30 and 2.5.34, ``camlibs/ptp2``):

- it takes the Nikon path for VendorExtensionID 0x0A (or MTP with "Nikon" in the
  Manufacturer); model names starting J/V (Nikon 1), "COOLPIX A" and D3xxx get other
  quirks, so the default model is "D750";
- at start it reads GetVendorPropCodes (0x90CA: the vendor properties, appended to
  DeviceInfo's), then lists the card with the standard operations;
- events are polled with GetEvent (0x90C7: ``u16 count`` and 6-byte ``u16 code, u32
  param`` records) and never come over the PTP-IP event channel, which libgphoto2 would
  read as well (each event twice);
- a capture is InitiateCaptureRecInSdram (0x90C0) or AfCaptureSDRAM (0x90CB), then
  DeviceReady (0x90C8) every 100 ms until it stops answering DeviceBusy, then GetEvent
  until ObjectAddedInSDRAM (0xC101) names the picture held in the camera's memory as
  0xFFFF0001; GetObjectInfo and GetObject fetch it and DeleteObject frees the buffer.
  With capturetarget=card the driver falls back to the standard InitiateCapture, and
  the picture lands on the card (DCIM/100NIKON) with ObjectAdded and CaptureComplete;
- properties are the standard f-number (0x5007), shutter speed (0x500D) and ISO (0x500F),
  plus Nikon's own listed by 0x90CA (ExposureTime 0xD100 as numerator<<16|denominator,
  RecordingMedia, MaximumShots, ...), each with a GetDevicePropDesc.

Live view: StartLiveView 0x9201 sets LiveViewStatus 0xD1A2 to 1, GetLiveViewImg 0x9203
answers a frame behind a 384-byte header (NotLiveView 0xA00B while off), EndLiveView 0x9202
(sent at every exit) answers OK.

Not advertised, because the driver changes its path for them and they are not emulated:
GetEventEx 0x941C, GetVendorCodes 0x9439, CurveDownload 0x90C5, the Wi-Fi profile
operations and InitiateCaptureRecInMedia 0x9207.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from ..interfaces import Response
from ..wire.constants import NO_TRANSACTION, DataType, EventCode, ResponseCode
from ..wire.constants import OperationCode as Op
from ..wire.errors import OperationError
from ..wire.vendor import NikonEvent, NikonOp, NikonProp, VendorExtension
from .personality import HeldObject, Profile, VendorSession
from .properties import Property, _enum, _range

#: The handle of the picture held in SDRAM.
SDRAM_HANDLE = 0xFFFF0001

#: Shutter speeds of 0xD100 as (numerator, denominator) seconds.
SHUTTER_SPEEDS = ((1, 4000), (1, 2000), (1, 1000), (1, 500), (1, 250), (1, 125), (1, 60), (1, 30),
                  (1, 15), (1, 8), (1, 4), (1, 2), (1, 1), (2, 1), (4, 1), (8, 1), (15, 1), (30, 1))

#: GetLiveViewImg while live view is off.
NIKON_NOT_LIVE_VIEW = 0xA00B
#: Bytes before the JPEG of a live view frame (newer bodies' header size; zeros here).
LIVE_VIEW_HEADER = 384
_NIKON_FRAME_HEADER = bytes(LIVE_VIEW_HEADER)

#: Events kept for a GetEvent that does not come.
MAX_EVENTS = 1024

#: DeviceReady answers DeviceBusy at least this many times after a capture starts.
BUSY_POLLS = 2


def nikon_properties() -> list[Property]:
    """Nikon's vendor properties (listed by GetVendorPropCodes), with their datatypes."""
    return [
        _enum(NikonProp.ExposureTime, DataType.UINT32, (1 << 16) | 250,
              tuple((n << 16) | d for n, d in SHUTTER_SPEEDS)),
        _enum(NikonProp.RecordingMedia, DataType.UINT8, 0, (0, 1)),
        _range(NikonProp.MaximumShots, DataType.UINT16, 100, 0, 0xFFFF, 1, writable=False),
        _enum(NikonProp.ACPower, DataType.UINT8, 0, (0, 1), writable=False),
        _enum(NikonProp.AutofocusMode, DataType.UINT8, 0, (0, 1, 2, 3, 4)),
        _enum(NikonProp.LongExposureNoiseReduction, DataType.UINT8, 0, (0, 1)),
        _enum(NikonProp.LiveViewStatus, DataType.UINT8, 0, (0, 1), writable=False),
        _enum(NikonProp.CameraOrientation, DataType.UINT8, 0, (0, 1, 2, 3), writable=False),
    ]


class NikonSession(VendorSession):
    """Nikon's half of a PTP session: GetEvent's queue, DeviceReady and SDRAM captures."""

    data_out = frozenset()

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        #: Events waiting for the next GetEvent, oldest first.
        self.queue: list[tuple[int, int]] = []
        self.sdram: HeldObject | None = None
        self._capture: defer.Deferred[Any] | None = None
        self._busy = 0
        self._shots = 0
        self.control_mode = 0
        #: Events dropped because the initiator stopped asking for them.
        self.dropped = 0

    def handlers(self) -> dict[int, Callable[..., Any]]:
        s = self.session
        return {
            NikonOp.GetVendorPropCodes: self.getVendorPropCodes,
            NikonOp.GetEvent: self.getEvent,
            NikonOp.DeviceReady: self.deviceReady,
            NikonOp.InitiateCaptureRecInSdram: self.captureInSdram,
            NikonOp.AfCaptureSDRAM: self.afCaptureSdram,
            NikonOp.ChangeCameraMode: self.changeCameraMode,
            NikonOp.DelImageSDRAM: self.delImageSdram,
            NikonOp.StartLiveView: self.startLiveView,
            NikonOp.EndLiveView: self.endLiveView,
            NikonOp.GetLiveViewImg: self.getLiveViewImg,
            # The picture in SDRAM is an object too; anything else goes to the card.
            Op.GetObjectInfo: self._sdramOr(Op.GetObjectInfo, s.getObjectInfo),
            Op.GetObject: self._sdramOr(Op.GetObject, s.getObject),
            Op.GetPartialObject: self._sdramOr(Op.GetPartialObject, s.getPartialObject),
            Op.DeleteObject: self._sdramOr(Op.DeleteObject, s.deleteObject),
        }

    # -- events: all of them wait for GetEvent -----------------------------------------
    def event(self, code: int, params: tuple[int, ...], transaction_id: int) -> bool:
        if transaction_id != NO_TRANSACTION or self.session.capture_transaction is not None:
            # A standard InitiateCapture (capturetarget=card): libgphoto2 waits for its
            # ObjectAdded and CaptureComplete on the PTP-IP event channel, as PTP says.
            return False
        event = (code, params[0] if params else 0)
        if code == EventCode.DevicePropChanged and event in self.queue:
            return True                   # said already: GetDevicePropDesc reads the last value
        self._queue(event)
        return True

    def _queue(self, event: tuple[int, int]) -> None:
        self.queue.append(event)
        if len(self.queue) > MAX_EVENTS:  # an initiator that never polls: the oldest go
            del self.queue[0]
            self.dropped += 1

    def getEvent(self, *_: int) -> Response:
        # An answer ends with the end of a capture: libgphoto2 would take a new file that
        # follows it in the same answer for the picture it waits for (and delete it).
        end = next((i + 1 for i, (c, _) in enumerate(self.queue)
                    if c == NikonEvent.CaptureCompleteRecInSdram), len(self.queue))
        events, self.queue = self.queue[:end], self.queue[end:]
        return Response(data=struct.pack("<H", len(events))
                        + b"".join(struct.pack("<HI", code, param) for code, param in events))

    def getVendorPropCodes(self, *_: int) -> Response:
        codes = [c for c in self.camera.properties.supported() if c >= 0xD000]
        return Response(data=struct.pack(f"<I{len(codes)}H", len(codes), *codes))

    def changeCameraMode(self, mode: int, *_: int) -> Response:
        self.control_mode = mode
        return Response()

    # -- live view --------------------------------------------------------------------
    def startLiveView(self, *_: int) -> Response:
        props: Any = self.camera.properties          # the device side changes a read-only value
        props.setInternal(NikonProp.LiveViewStatus, 1)
        return Response()

    def endLiveView(self, *_: int) -> Response:
        # libgphoto2 sends it at every exit once it is advertised: OK even when off.
        props: Any = self.camera.properties
        props.setInternal(NikonProp.LiveViewStatus, 0)
        return Response()

    def getLiveViewImg(self, *_: int) -> Any:
        """A frame behind a 384-byte header (libgphoto2 finds the JPEG by its markers);
        NotLiveView (0xA00B) while live view is off."""
        source = self.camera.live_view
        if source is None or not self.camera.properties.get(NikonProp.LiveViewStatus):
            return Response(NIKON_NOT_LIVE_VIEW)
        return defer.maybeDeferred(source.frame).addCallback(
            lambda jpeg: Response(data=(_NIKON_FRAME_HEADER, jpeg)))

    # -- capture into SDRAM -----------------------------------------------------------
    def captureInSdram(self, *_: int) -> Response:
        return self._startCapture()

    def afCaptureSdram(self, *_: int) -> Response:
        return self._startCapture()

    def _startCapture(self) -> Response:
        source = self.camera.capture_source
        if source is None:
            raise OperationError(ResponseCode.OperationNotSupported, "this camera has no capture source")
        if self._capture is not None:
            raise OperationError(ResponseCode.DeviceBusy, "a capture is in progress")
        self._busy = BUSY_POLLS
        d = self._capture = defer.maybeDeferred(source.capture, 0)
        d.addCallback(self._captured).addErrback(self._captureFailed)
        return Response()

    def _captured(self, result: tuple[str, bytes]) -> None:
        self._capture = None
        name, data = result
        self._shots += 1
        self.sdram = HeldObject(SDRAM_HANDLE, f"DSC_{self._shots:04d}.JPG", data)
        self._queue((NikonEvent.ObjectAddedInSDRAM, SDRAM_HANDLE))
        self._queue((NikonEvent.CaptureCompleteRecInSdram, 0))

    def _captureFailed(self, failure: Failure) -> None:
        self._capture = None
        self._busy = 0
        if not failure.check(defer.CancelledError):
            self.session.log.failure("capture failed", failure)
        # The driver waits for events after DeviceReady: end the capture with no picture.
        self._queue((NikonEvent.CaptureCompleteRecInSdram, 0))

    def deviceReady(self, *_: int) -> Response:
        if self._capture is not None or self._busy > 0:
            self._busy -= 1
            return Response(ResponseCode.DeviceBusy)
        return Response()

    # -- the SDRAM object -------------------------------------------------------------
    def _sdramOr(self, code: int, card: Callable[..., Any]) -> Callable[..., Any]:
        def handler(handle: int, *params: int) -> Any:
            if handle != SDRAM_HANDLE:
                return card(handle, *params)
            held = self.sdram
            if held is None:
                raise OperationError(ResponseCode.InvalidObjectHandle, "no picture in SDRAM")
            if code == Op.DeleteObject:
                self.sdram = None        # the buffer is free again
                return Response()
            return held.respond(code, params)
        return handler

    def delImageSdram(self, handle: int, *_: int) -> Response:
        if handle != SDRAM_HANDLE or self.sdram is None:
            raise OperationError(ResponseCode.InvalidObjectHandle, f"no picture 0x{handle:08X} in SDRAM")
        self.sdram = None
        return Response()

    def closed(self) -> None:
        if self._capture is not None:
            self._capture.cancel()
        self.queue.clear()
        self.sdram = None
        self._busy = 0


class NikonProfile(Profile):
    """The Nikon personality: vendor operations and the properties 0x90CA lists."""

    def operations(self, camera: Any) -> list[int]:
        ops: list[int] = [NikonOp.GetVendorPropCodes, NikonOp.GetEvent, NikonOp.DeviceReady,
               NikonOp.ChangeCameraMode, NikonOp.DelImageSDRAM]
        if camera.capture_source is not None:
            ops += [NikonOp.InitiateCaptureRecInSdram, NikonOp.AfCaptureSDRAM]
        if camera.live_view is not None:
            ops += [NikonOp.StartLiveView, NikonOp.EndLiveView, NikonOp.GetLiveViewImg]
        return ops

    def advertised_properties(self, camera: Any) -> list[int]:
        # Nikon's own come from GetVendorPropCodes; listing them here too would show
        # each twice in gphoto2's summary and configuration.
        return [c for c in camera.properties.supported() if c < 0xD000]


def nikon(model: str = "D750") -> Profile:
    """A Nikon DSLR over Wi-Fi (gphoto2 model "Nikon DSLR (WLAN)")."""
    return NikonProfile(
        name="nikon", manufacturer="Nikon Corporation", model=model, device_version="V1.10", serial_number="3012345",
        vendor_extension_id=VendorExtension.Nikon, vendor_extension_version=100,
        vendor_extension_desc="microsoft.com: 1.0", gphoto2_model="Nikon DSLR (WLAN)",
        summary="a Nikon DSLR (GetEvent 0x90C7, captures into SDRAM, DeviceReady, vendor properties)",
        capture_folder="DCIM/100NIKON",
        vendor_events=(NikonEvent.ObjectAddedInSDRAM, NikonEvent.CaptureCompleteRecInSdram,
                       EventCode.StoreAdded, EventCode.StoreRemoved),
        vendor_properties=nikon_properties, session_class=NikonSession, streams=False)
