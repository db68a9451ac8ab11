"""The initiator's vendor paths: capture and properties on Canon EOS and Nikon cameras.

A real Canon EOS or Nikon does not capture with InitiateCapture, and keeps most of its
settings outside DeviceInfo. :func:`vendor_of` tells from DeviceInfo which path a camera
takes (as libgphoto2 does: VendorExtensionID, or Microsoft/MTP with the maker's name);
:class:`EOS` and :class:`Nikon` wrap a :class:`~ptpip.client.PTPClient` with the
maker's capture and properties. ``ptpip capture`` and ``ptpip props`` use them.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task

from .wire import eos
from .wire.constants import DataType, ResponseCode
from .wire.constants import OperationCode as Op
from .wire.datasets import DevicePropDesc, ObjectInfo
from .wire.errors import PTPIPError, PTPResponseError
from .wire.vendor import CanonEOSProp, CanonOp, NikonEvent, NikonOp, NikonProp, VendorExtension

#: GetEvent answers read before giving up on a camera that always has news.
MAX_POLLS = 256

#: The Nikon SDRAM picture.
NIKON_SDRAM = 0xFFFF0001

class VendorCaptureError(PTPIPError):
    """The camera took no picture, or did not say so in time."""


def vendor_of(device_info: Any) -> str | None:
    """``"canon-eos"``, ``"nikon"`` or None (a standard camera), from DeviceInfo."""
    vendor, maker = device_info.vendor_extension_id, device_info.manufacturer or ""
    if vendor in (VendorExtension.Microsoft, 0xFFFFFFFF):
        vendor = VendorExtension.Canon if "Canon" in maker else VendorExtension.Nikon if "Nikon" in maker else vendor
    ops = set(device_info.operations_supported)
    if vendor == VendorExtension.Canon and ops & {CanonOp.RemoteRelease, CanonOp.RemoteReleaseOn}:
        return "canon-eos"
    if vendor == VendorExtension.Nikon and NikonOp.GetEvent in ops:
        return "nikon"
    return None


def vendor_prop_name(code: int, vendor: str | None) -> str | None:
    enum_type = {"canon-eos": CanonEOSProp, "nikon": NikonProp}.get(vendor or "")
    try:
        return enum_type(code).name if enum_type else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Captured:
    """A picture a vendor capture made: on the card (a handle to download), or held in the
    camera and already fetched (its bytes)."""

    filename: str
    handle: int
    data: bytes | None = None


def _sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


class EOS:
    """A Canon EOS: remote mode, the GetEvent cache, the release."""

    def __init__(self, client: Any) -> None:
        self.client = client
        #: What GetEvent said so far: property code -> raw value, and the choices.
        self.values: dict[int, bytes] = {}
        self.choices: dict[int, tuple[int, ...]] = {}
        self._prepared = False

    @defer.inlineCallbacks
    def prepare(self) -> Generator[Any, Any, None]:
        if not self._prepared:
            yield self.client.call(CanonOp.SetRemoteMode, 1)
            yield self.client.call(CanonOp.SetEventMode, 1)
            self._prepared = True
            yield self.poll()

    @defer.inlineCallbacks
    def poll(self) -> Generator[Any, Any, list[Any]]:
        """GetEvent until an answer holds nothing; every record, the cache updated."""
        records: list[Any] = []
        for _ in range(MAX_POLLS):
            r = yield self.client.call(CanonOp.GetEvent)
            batch = eos.parse_events(r.data or b"")
            if not batch:
                return records
            for rec in batch:
                if isinstance(rec, eos.PropValue):
                    self.values[rec.code] = rec.raw
                elif isinstance(rec, eos.AvailList):
                    self.choices[rec.code] = rec.values
            records += batch
        raise PTPIPError(f"GetEvent still had news after {MAX_POLLS} answers (a camera that is never done)")

    def value(self, code: int) -> Any:
        return eos.decode_value(code, eos.DATATYPES.get(code, DataType.UINT32), self.values[code])

    @defer.inlineCallbacks
    def properties(self) -> Generator[Any, Any, list[DevicePropDesc]]:
        """The EOS properties as descriptions (current value and choices; the default is unknown)."""
        yield self.prepare()
        yield self.poll()
        out = []
        for code in sorted(self.values):
            value = self.value(code)
            choices = self.choices.get(code, ())
            out.append(DevicePropDesc(code, eos.DATATYPES.get(code, DataType.UINT32), True, value, value,
                                      2 if choices else 0, None, choices))
        return out

    @defer.inlineCallbacks
    def set(self, code: int, value: Any) -> Generator[Any, Any, None]:
        yield self.prepare()
        datatype = eos.DATATYPES.get(code, DataType.UINT32)
        yield self.client.call(CanonOp.SetDevicePropValueEx, data=eos.set_prop_value(code, datatype, value))
        yield self.poll()

    @defer.inlineCallbacks
    def capture(self, reactor: Any, timeout: float = 30.0) -> Generator[Any, Any, list[Captured]]:
        """Release the shutter (half and full press where the camera has them) and wait
        for the picture: fetched and freed when held for the host, a handle when on the card."""
        yield self.prepare()
        yield self.poll()
        info = self.client.device_info
        if CanonOp.RemoteReleaseOn in info.operations_supported:
            yield self.client.call(CanonOp.RemoteReleaseOn, 1, 0)
            yield self.client.call(CanonOp.RemoteReleaseOn, 2, 0)
            yield self.client.call(CanonOp.RemoteReleaseOff, 2)
            yield self.client.call(CanonOp.RemoteReleaseOff, 1)
        else:
            yield self.client.call(CanonOp.RemoteRelease)
        got: list[Captured] = []
        waited, pause = 0.0, 0.05
        while waited < timeout:
            for rec in (yield self.poll()):
                if isinstance(rec, eos.ObjectTransfer):
                    data = yield self._fetch(rec)
                    got.append(Captured(rec.filename, rec.handle, data))
                elif isinstance(rec, eos.ObjectAdded) and rec.object_format != 0x3001:
                    got.append(Captured(rec.filename, rec.handle))
                elif isinstance(rec, eos.CameraStatus) and rec.status == 0 and got:
                    return got
            yield _sleep(reactor, pause)
            waited += pause
            pause = min(0.2, pause + 0.05)
        if got:
            return got
        raise VendorCaptureError(f"no picture within {timeout} s of the release")

    @defer.inlineCallbacks
    def _fetch(self, rec: eos.ObjectTransfer) -> Generator[Any, Any, bytes]:
        parts, done = [], 0
        while done < rec.size:
            piece = yield self.client.getPartialObject(rec.handle, done, min(1 << 20, rec.size - done))
            if not piece:
                raise VendorCaptureError(f"the camera sent an empty piece at {done} of {rec.size}")
            parts.append(piece)
            done += len(piece)
        yield self.client.call(CanonOp.TransferComplete, rec.handle)
        return b"".join(parts)


class Nikon:
    """A Nikon: vendor property codes, GetEvent, capture into SDRAM."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @defer.inlineCallbacks
    def property_codes(self) -> Generator[Any, Any, list[int]]:
        codes = list(self.client.device_info.device_properties_supported)
        if NikonOp.GetVendorPropCodes in self.client.device_info.operations_supported:
            r = yield self.client.call(NikonOp.GetVendorPropCodes)
            data = r.data or b""
            if len(data) >= 4:
                (n,) = struct.unpack_from("<I", data)
                codes += [c for c in struct.unpack_from(f"<{min(n, (len(data) - 4) // 2)}H", data, 4)
                          if c not in codes]
        return codes

    @defer.inlineCallbacks
    def events(self) -> Generator[Any, Any, list[tuple[int, int]]]:
        r = yield self.client.call(NikonOp.GetEvent)
        data = r.data or b""
        if len(data) < 2:
            return []
        (n,) = struct.unpack_from("<H", data)
        n = min(n, (len(data) - 2) // 6)
        return [struct.unpack_from("<HI", data, 2 + 6 * i) for i in range(n)]

    @defer.inlineCallbacks
    def wait_ready(self, reactor: Any, timeout: float, pause: float) -> Generator[Any, Any, float]:
        """DeviceReady until the camera is no longer busy (0x2019, 0xA200); the seconds waited."""
        waited = 0.0
        while waited < timeout:
            r = yield self.client.session.request(NikonOp.DeviceReady)
            if r.code not in (ResponseCode.DeviceBusy, 0xA200):
                r.check(NikonOp.DeviceReady)
                break
            yield _sleep(reactor, pause)
            waited += pause
        return waited

    @defer.inlineCallbacks
    def capture(self, reactor: Any, timeout: float = 30.0) -> Generator[Any, Any, list[Captured]]:
        """InitiateCaptureRecInSdram, DeviceReady until not busy, then the SDRAM picture
        (fetched and freed) or the card's new object."""
        yield self.client.call(NikonOp.InitiateCaptureRecInSdram, 0xFFFFFFFF)
        waited = yield self.wait_ready(reactor, timeout, 0.1)
        got: list[Captured] = []
        while waited < timeout:
            for code, param in (yield self.events()):
                if code == NikonEvent.ObjectAddedInSDRAM:
                    handle = param or NIKON_SDRAM
                    oi: ObjectInfo = yield self.client.getObjectInfo(handle)
                    data = (yield self.client.call(Op.GetObject, handle)).data
                    try:
                        yield self.client.deleteObject(handle)
                    except PTPResponseError:
                        pass
                    got.append(Captured(oi.filename, handle, data))
                elif code == 0x4002:
                    oi = yield self.client.getObjectInfo(param)
                    if oi.object_format != 0x3001:
                        got.append(Captured(oi.filename, param))
                elif code in (0x400D, NikonEvent.CaptureCompleteRecInSdram) and got:
                    return got
            if got:
                return got
            yield _sleep(reactor, 0.1)
            waited += 0.1
        raise VendorCaptureError(f"no picture within {timeout} s of the capture")
