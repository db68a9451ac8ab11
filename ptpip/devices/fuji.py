"""Fujifilm X over Wi-Fi, as libgphoto2's Fuji path drives it ("Fuji X (WLAN)").

The transport is Fuji's own (:mod:`ptpip.wire.fuji`, :mod:`ptpip.fuji`); this is the
device behind it. What the driver does and checks (libgphoto2 2.5.30 and 2.5.34):

- after OpenSession it sets InitSequence 0xDF01 to 5, reads AppVersion 0xDF24 and writes
  it back, then InitiateOpenCapture 0x101C, and only then GetDeviceInfo (VendorExtensionID
  0x0E); with PriorityMode 0xD207 listed it sets 0xD38C to 1 and 0xD207 to 2 (the PC);
- it lists and downloads with the standard operations (one data container per object);
  the card is shown flat, as Fuji cameras show it over Wi-Fi: every picture at the top,
  no folders;
- a capture is: read ExposureTime 0x500D, CameraAction 0xD208 = 0x0200 and InitiateCapture
  (focus), AFStatus 0xD209 until it is not 1 (2: focused), 0xD208 = 0x0304 and
  InitiateCapture (the shot), then CurrentState 0xD212 (``u16 count`` and 6-byte
  ``u16 code, u32 value`` changes) and the event channel until ObjectAdded; the picture
  is downloaded and deleted unless ``--keep``;
- properties: ``aperture`` (0xD218, UINT16 index codes: 30 = 5.6), ``shutterspeed``
  (0x500D, UINT32 Fuji codes: 3906 = 1/250), ``iso`` (0x500F, INT32), ``f-number``
  (0x5007); at exit 0xD207 goes back to 1 (the camera).

Live view goes on the third port (:class:`ptpip.fuji.FujiLiveViewProtocol`). Not
emulated: the Fuji device info 0x902B (libgphoto2 2.5.34 misreads it), uploads, bulb and
movie.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any

from ..interfaces import Response
from ..wire.constants import DataType, ResponseCode
from ..wire.constants import OperationCode as Op
from ..wire.datasets import pack_u32_array
from ..wire.errors import OperationError
from ..wire.vendor import VendorExtension
from .personality import Profile, VendorSession
from .properties import Property, _enum, standard_properties

#: Fuji properties (libgphoto2's names).
INIT_SEQUENCE = 0xDF01
APP_VERSION = 0xDF24
PRIORITY_MODE = 0xD207
CAMERA_ACTION = 0xD208
AF_STATUS = 0xD209
CURRENT_STATE = 0xD212
APERTURE = 0xD218
UNKNOWN_D38C = 0xD38C

#: CameraAction values of a capture: focus, then shoot.
ACTION_FOCUS = 0x0200
ACTION_SHOOT = 0x0304

#: Aperture index codes (f/2.8 .. f/16).
APERTURES = (18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44, 46, 48)
#: ExposureTime codes, 1/4000 s .. 1 s.
SHUTTER_SPEEDS = (244, 307, 387, 488, 615, 775, 976, 1230, 1550, 1953, 2460, 3100, 3906, 4921, 6200, 7812,
                  9843, 12401, 15625, 31250, 62500, 125000, 250000, 500000, 1000000)
ISO_SPEEDS = (160, 200, 250, 320, 400, 500, 640, 800, 1000, 1250, 1600, 3200, 6400, 12800)


def fuji_properties() -> list[Property]:
    return [
        _enum(0x5007, DataType.UINT16, 560, (280, 320, 350, 400, 450, 500, 560, 630, 710, 800, 900, 1000,
                                             1100, 1300, 1400, 1600)),
        _enum(0x500D, DataType.UINT32, 3906, SHUTTER_SPEEDS),
        _enum(0x500F, DataType.INT32, 200, ISO_SPEEDS),
        _enum(APERTURE, DataType.UINT16, 30, APERTURES),
        _enum(PRIORITY_MODE, DataType.UINT16, 1, (1, 2)),
        _enum(CAMERA_ACTION, DataType.UINT16, 0, (0, ACTION_FOCUS, ACTION_SHOOT, 0x0004, 0x0005, 0x9300,
                                                  0x0500, 0x000C)),
        _enum(AF_STATUS, DataType.UINT16, 2, (0, 1, 2, 3), writable=False),
        _enum(CURRENT_STATE, DataType.UINT16, 0, (0,), writable=False),
        _enum(UNKNOWN_D38C, DataType.UINT16, 0, (0, 1)),
        Property(INIT_SEQUENCE, DataType.UINT16, 0, True),
        Property(APP_VERSION, DataType.UINT32, 0x00020006, True),
    ]


class FujiSession(VendorSession):
    """Fuji's half of a PTP session: the two-step InitiateCapture and CurrentState."""

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        #: Property changes since the last CurrentState read.
        self.changes: dict[int, None] = {}

    def handlers(self) -> dict[int, Callable[..., Any]]:
        s = self.session
        return {
            Op.InitiateOpenCapture: self._ok,
            Op.TerminateOpenCapture: self._ok,
            Op.GetDevicePropValue: self.getDevicePropValue,
            Op.InitiateCapture: self._capture(s.initiateCapture),
            Op.GetObjectHandles: self.getObjectHandles,
            Op.GetObjectInfo: self.getObjectInfo,
        }

    # -- the card, flat: a Fuji over Wi-Fi shows its pictures, not its folders -----------
    def getObjectHandles(self, storage_id: int, object_format: int, parent: int, *_: int) -> Response:
        self.session._checkStorage(storage_id)
        if parent not in (0, 0xFFFFFFFF):
            return Response(data=pack_u32_array([]))
        store = self.session.store
        handles = [h for h in store.handles(object_format, 0) if not store.objectInfo(h).is_folder]
        return Response(data=pack_u32_array(handles))

    def getObjectInfo(self, handle: int, *_: int) -> Response:
        info = self.session.store.objectInfo(handle)
        if info.is_folder:
            raise OperationError(ResponseCode.InvalidObjectHandle, f"0x{handle:08X} is a folder")
        return Response(data=dataclasses.replace(info, parent_object=0).encode())

    def _ok(self, *_: int) -> Response:
        return Response()

    def event(self, code: int, params: tuple[int, ...], transaction_id: int) -> bool:
        if code in (0x4002, 0x4003) and params:
            if code == 0x4002 and self.session.capture_transaction is None:
                # libgphoto2 finds new files by polling the handles; an event as well would
                # report each twice. A capture's picture is announced (it waits for that).
                return True
            try:
                if self.session.store.objectInfo(params[0]).is_folder:
                    return True          # folders are not shown
            except OperationError:
                pass
        if code == 0x4006 and params:
            self.changes[params[0]] = None
            if len(self.changes) > 256:
                self.changes.pop(next(iter(self.changes)))
        return False                     # every event also goes on the event channel

    def getDevicePropValue(self, code: int, *params: int) -> Response:
        if code == CURRENT_STATE:
            props = self.camera.properties
            changes = [(c, int(props.get(c)) & 0xFFFFFFFF) for c in self.changes
                       if isinstance(props.get(c), int)]
            self.changes.clear()
            return Response(data=struct.pack("<H", len(changes))
                            + b"".join(struct.pack("<HI", c, v) for c, v in changes))
        return self.session.getDevicePropValue(code, *params)

    def _capture(self, standard: Callable[..., Any]) -> Callable[..., Any]:
        def handler(tid: int, *params: int) -> Any:
            action = self.camera.properties.get(CAMERA_ACTION)
            if action == ACTION_FOCUS:
                return Response()        # focusing: AFStatus says 2 (in focus) at once
            if action != ACTION_SHOOT:
                raise OperationError(ResponseCode.InvalidParameter,
                                     f"InitiateCapture with CameraAction 0x{action:04X}")
            return standard(tid, *params)
        return handler


class FujiProfile(Profile):
    """The Fuji personality."""

    def operations(self, camera: Any) -> list[int]:
        return [Op.InitiateOpenCapture, Op.TerminateOpenCapture]

    def make_properties(self) -> list[Property]:
        own = self.vendor_properties()
        codes = {p.code for p in own}
        return [p for p in standard_properties() if p.code not in codes] + own


def fuji(model: str = "X-T4") -> Profile:
    """A Fujifilm X camera over Wi-Fi (gphoto2 model "Fuji X (WLAN)"); it needs Fuji's
    transport (:class:`ptpip.fuji.FujiResponderFactory`), not the PTP-IP responder."""
    return FujiProfile(
        name="fuji", manufacturer="FUJIFILM", model=model, device_version="1.21", serial_number="93A12345",
        vendor_extension_id=VendorExtension.Fuji, vendor_extension_version=100,
        vendor_extension_desc="fujifilm.co.jp: 1.0;", gphoto2_model="Fuji X (WLAN)",
        summary="a Fujifilm X (Fuji's own PTP/IP on ports P, P+1, P+2; two-step capture; Fuji properties)",
        capture_folder="DCIM/100_FUJI",
        hidden_operations=frozenset({Op.SendObjectInfo, Op.SendObject, Op.FormatStore, Op.ResetDevicePropValue,
                                     Op.SetObjectProtection, Op.GetNumObjects}),
        vendor_properties=fuji_properties, session_class=FujiSession, streams=False)
