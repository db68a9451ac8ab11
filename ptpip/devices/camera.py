"""A virtual PTP camera: session semantics and operations over device interfaces.

:class:`Camera` is an :class:`~ptpip.interfaces.IResponderDevice`. It speaks
PTP (ISO 15740): GetDeviceInfo outside a session, OpenSession/CloseSession,
transaction id checks, and every operation it advertises, dispatched to an
:class:`~ptpip.interfaces.IObjectStore`, :class:`~ptpip.interfaces.IDeviceProperties`
and :class:`~ptpip.interfaces.ICaptureSource`. Anything not advertised answers
OperationNotSupported.

:func:`filesystem_camera` builds the default device of ``twistd ptpip-responder``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from importlib import resources
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import (
    ICaptureSource,
    IDeviceProperties,
    IEventSink,
    IIncomingData,
    IInitiatorInfo,
    IObjectStore,
    IResponderDevice,
    IResponderSession,
    Response,
)
from ..streams import FileSource
from ..wire.constants import (
    NO_TRANSACTION,
    STREAM_VIDEO,
    DevicePropCode,
    EventCode,
    ObjectFormat,
    code_name,
)
from ..wire.constants import (
    OperationCode as Op,
)
from ..wire.constants import (
    ResponseCode as R,
)
from ..wire.datasets import DeviceInfo, ObjectInfo, StreamInfo, pack_u32_array, pack_value, unpack_value
from ..wire.errors import OperationError
from ..wire.packets import OperationRequest
from .filestore import ALL, FilesystemStore
from .liveview import MAX_FRAME
from .personality import Profile
from .properties import DeviceProperties

#: Largest SetDevicePropValue / SendObjectInfo dataset accepted.
MAX_DATASET = 1 << 16


@implementer(IResponderDevice)
class Camera:
    """A PTP camera built from a store, properties and a capture source.

    :param max_sessions: open PTP sessions at once; more get DeviceBusy (spec 1.6.3).
    """

    log = Logger()

    def __init__(self, store: IObjectStore, properties: IDeviceProperties | None = None,
                 capture: ICaptureSource | None = None, *, manufacturer: str | None = None,
                 model: str | None = None, device_version: str | None = None,
                 serial_number: str | None = None, vendor_extension_id: int | None = None,
                 vendor_extension_desc: str | None = None, scan_interval: float | None = 2.0,
                 reactor: Any = None, cooperator: Any = task, profile: Profile | None = None) -> None:
        #: The personality (DeviceInfo, vendor operations and event flow); generic by default.
        self.profile = profile if profile is not None else Profile()
        self.store = IObjectStore(store)
        if properties is None:
            properties = DeviceProperties(self.profile.make_properties())
        self.properties = IDeviceProperties(properties)
        self.capture_source = ICaptureSource(capture) if capture is not None else None
        #: The viewfinder (an :class:`~ptpip.interfaces.ILiveViewSource`) of the vendor
        #: live view paths; None for a camera without one.
        self.live_view: Any = None
        p = self.profile
        self.manufacturer = manufacturer if manufacturer is not None else p.manufacturer
        self.model = model if model is not None else p.model
        self.device_version = device_version if device_version is not None else p.device_version
        self.serial_number = serial_number if serial_number is not None else p.serial_number
        self.vendor_extension_id = vendor_extension_id if vendor_extension_id is not None else p.vendor_extension_id
        self.vendor_extension_desc = (vendor_extension_desc if vendor_extension_desc is not None
                                      else p.vendor_extension_desc)
        self.sessions: set[CameraSession] = set()
        #: State a personality keeps for the whole camera, across sessions (picture counters).
        self.vendor_state: dict[str, Any] = {}
        #: How many times each operation code was asked for (whatever the answer).
        self.operations_seen: Counter[int] = Counter()
        self._operations: frozenset[int] | None = None
        #: Schedules the file reads of data-in phases (a ``task.Cooperator``).
        self.cooperator = cooperator
        self.store.subscribe(self._storeChanged)
        self.properties.subscribe(self._propertyChanged)
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.reactor = reactor
        self._scanner: task.LoopingCall | None = None
        if scan_interval:
            self._scanner = task.LoopingCall(self.store.scan)
            self._scanner.clock = reactor
            self._scanner.start(scan_interval, now=False).addErrback(
                lambda f: self.log.failure("folder scan failed", f))

    def stop(self) -> None:
        if self._scanner is not None and self._scanner.running:
            self._scanner.stop()

    # -- what it can do -----------------------------------------------------------
    def operations(self) -> frozenset[int]:
        """The operations advertised in DeviceInfo (computed once: they do not change)."""
        if self._operations is None:
            self._operations = frozenset(self._compute_operations())
        return self._operations

    def _compute_operations(self) -> list[int]:
        ops: list[int] = [Op.GetDeviceInfo, Op.OpenSession, Op.CloseSession, Op.GetStorageIDs,
               Op.GetStorageInfo, Op.GetNumObjects, Op.GetObjectHandles, Op.GetObjectInfo,
               Op.GetObject, Op.GetThumb, Op.DeleteObject, Op.SendObjectInfo, Op.SendObject,
               Op.SetObjectProtection, Op.GetDevicePropDesc, Op.GetDevicePropValue,
               Op.SetDevicePropValue, Op.ResetDevicePropValue, Op.GetPartialObject]
        if self.capture_source is not None:
            ops.append(Op.InitiateCapture)
        if self.store.allow_format:
            ops.append(Op.FormatStore)
        ops.extend(self.profile.operations(self))
        return sorted(set(ops) - set(self.profile.hidden_operations))

    def deviceInfo(self) -> DeviceInfo:
        return DeviceInfo(
            standard_version=100, vendor_extension_id=self.vendor_extension_id,
            vendor_extension_version=(self.profile.vendor_extension_version or 100)
            if self.vendor_extension_id else 0,
            vendor_extension_desc=self.vendor_extension_desc, functional_mode=0,
            operations_supported=tuple(sorted(self.operations())),
            events_supported=self.profile.events(),
            device_properties_supported=tuple(self.profile.advertised_properties(self)),
            capture_formats=(ObjectFormat.EXIF_JPEG,) if self.capture_source is not None else (),
            image_formats=(ObjectFormat.EXIF_JPEG, ObjectFormat.JFIF, ObjectFormat.PNG, ObjectFormat.TIFF,
                           ObjectFormat.GIF, ObjectFormat.BMP, ObjectFormat.DNG, ObjectFormat.Association,
                           ObjectFormat.Text, ObjectFormat.WAV, ObjectFormat.MP3, ObjectFormat.AVI,
                           ObjectFormat.MPEG, ObjectFormat.Undefined),
            manufacturer=self.manufacturer, model=self.model,
            device_version=self.device_version, serial_number=self.serial_number)

    # -- IResponderDevice ---------------------------------------------------------
    def newSession(self, initiator: IInitiatorInfo, events: IEventSink) -> CameraSession:
        s = CameraSession(self, initiator, events)
        self.sessions.add(s)
        return s

    def broadcast(self, code: int, params: tuple[int, ...] = (), transaction_id: int = NO_TRANSACTION) -> None:
        """Send an event to every open PTP session."""
        for s in list(self.sessions):
            if s.session_id:
                s.sendEvent(code, params, transaction_id)

    def folder(self, path: str) -> int:
        """The handle of the folder *path* (``DCIM/100CANON``), made if missing; 0 for ""."""
        parent = 0
        for part in [p for p in path.split("/") if p]:
            level = ALL if parent == 0 else parent
            found = [h for h in self.store.handles(ObjectFormat.Association, level)
                     if self.store.objectInfo(h).filename == part]
            if found:
                parent = found[0]
            else:
                parent = int(self.store.reserve(ObjectInfo(storage_id=self.store.storage_id,
                                                           object_format=ObjectFormat.Association,
                                                           association_type=1, filename=part), parent))
        return parent

    def keep(self, name: str, data: bytes) -> int:
        """Write a new picture to the store, in the profile's capture folder (the store
        announces ObjectAdded); its handle."""
        info = ObjectInfo(storage_id=self.store.storage_id, object_format=ObjectFormat.EXIF_JPEG,
                          object_compressed_size=len(data), filename=name)
        handle = self.store.reserve(info, self.folder(self.profile.capture_folder))
        upload = self.store.receive(handle)
        try:
            upload.write(data)
            upload.commit()
        except BaseException:
            upload.abort()
            raise
        return int(handle)

    def _storeChanged(self, code: int, handle: int) -> None:
        self.broadcast(code, (handle,))

    def _propertyChanged(self, code: int) -> None:
        self.broadcast(EventCode.DevicePropChanged, (code,))


@implementer(IResponderSession)
class CameraSession:
    """One initiator's PTP session with a :class:`Camera`."""

    log = Logger()

    def __init__(self, camera: Camera, initiator: IInitiatorInfo, events: IEventSink) -> None:
        self.camera = camera
        self.initiator = initiator
        self.events = events
        self.session_id = 0
        self._last_tid = 0
        self._pending_upload: tuple[int, ObjectInfo] | None = None
        self._captures: dict[int, defer.Deferred[Any]] = {}
        #: The InitiateCapture transaction whose picture is being stored (its events belong
        #: to it: a vendor flow may route them differently).
        self.capture_transaction: int | None = None
        self._handlers: dict[int, Callable[..., Any]] = {
            Op.GetDeviceInfo: self.getDeviceInfo, Op.OpenSession: self.openSession,
            Op.CloseSession: self.closeSession, Op.GetStorageIDs: self.getStorageIDs,
            Op.GetStorageInfo: self.getStorageInfo, Op.GetNumObjects: self.getNumObjects,
            Op.GetObjectHandles: self.getObjectHandles, Op.GetObjectInfo: self.getObjectInfo,
            Op.GetObject: self.getObject, Op.GetPartialObject: self.getPartialObject,
            Op.GetThumb: self.getThumb, Op.DeleteObject: self.deleteObject,
            Op.SendObjectInfo: self.sendObjectInfo, Op.SendObject: self.sendObject,
            Op.SetObjectProtection: self.setObjectProtection, Op.InitiateCapture: self.initiateCapture,
            Op.FormatStore: self.formatStore, Op.GetDevicePropDesc: self.getDevicePropDesc,
            Op.GetDevicePropValue: self.getDevicePropValue, Op.SetDevicePropValue: self.setDevicePropValue,
            Op.ResetDevicePropValue: self.resetDevicePropValue,
            Op.GetStreamInfo: self.getStreamInfo, Op.GetStream: self.getStream,
        }
        #: The vendor half of the session (the profile's handlers and event flow).
        self.vendor = camera.profile.newSession(self)
        self._vendor_codes = frozenset(self.vendor.handlers())
        self._handlers.update(self.vendor.handlers())
        self._data_out = frozenset((Op.SendObjectInfo, Op.SendObject, Op.SetDevicePropValue)) | self.vendor.data_out

    @property
    def store(self) -> IObjectStore:
        return self.camera.store

    # -- IResponderSession --------------------------------------------------------
    def handleOperation(self, request: OperationRequest, incoming: IIncomingData | None) -> Any:
        code, tid = request.code, request.transaction_id
        self.camera.operations_seen[code] += 1
        # Vendor operations are answered even when DeviceInfo does not list them: libgphoto2
        # sends some (Nikon DeviceReady, Canon EOS GetStorageIDs) without looking.
        if code not in self._handlers or (code not in self.camera.operations()
                                          and code not in self._vendor_codes):
            raise OperationError(R.OperationNotSupported, f"operation 0x{code:04X}")
        if code == Op.GetDeviceInfo:
            return self.getDeviceInfo()
        if code != Op.OpenSession:
            if not self.session_id:
                raise OperationError(R.SessionNotOpen)
            if tid in (0, NO_TRANSACTION) or tid <= self._last_tid:
                raise OperationError(R.InvalidTransactionID, f"transaction id {tid} after {self._last_tid}")
            self._last_tid = tid
        params = tuple(request.params) + (0,) * (5 - len(request.params))
        handler = self._handlers[code]
        if code in self._data_out:
            if incoming is None:
                raise OperationError(R.IncompleteTransfer, "this operation needs a data-out phase")
            return handler(incoming, *params)
        if code == Op.InitiateCapture:
            return handler(tid, *params)
        return handler(*params)

    def cancelTransaction(self, transaction_id: int) -> None:
        d = self._captures.pop(transaction_id, None)
        if d is not None:
            d.cancel()

    def sendEvent(self, code: int, params: tuple[int, ...] = (), transaction_id: int = NO_TRANSACTION) -> None:
        """An event for this session: the vendor flow takes it, or the PTP-IP event channel."""
        if not self.vendor.event(code, tuple(params), transaction_id):
            self.events.sendEvent(code, params, transaction_id)

    def connectionLost(self, reason: Failure) -> None:
        if self.session_id:
            self.vendor.closed()
        self.camera.sessions.discard(self)
        for d in list(self._captures.values()):
            d.cancel()
        self._captures.clear()
        self._forgetUpload()

    def _forgetUpload(self) -> None:
        """An ObjectInfo sent and never followed by its SendObject: its reservation (the
        name it holds, its space) is given back."""
        if self._pending_upload is not None:
            self.store.release(self._pending_upload[0])
            self._pending_upload = None

    # -- session ------------------------------------------------------------------
    def getDeviceInfo(self, *_: int) -> Response:
        return Response(data=self.camera.deviceInfo().encode())

    def openSession(self, session_id: int, *_: int) -> Response:
        if session_id == 0:
            raise OperationError(R.InvalidParameter, "SessionID 0 is reserved")
        if self.session_id:
            return Response(R.SessionAlreadyOpen, (self.session_id,))
        self.session_id = session_id
        self._last_tid = 0
        self.vendor.opened()
        return Response()

    def closeSession(self, *_: int) -> Response:
        if self.session_id:
            self.vendor.closed()
        self.session_id = 0
        self._forgetUpload()
        return Response()

    # -- storage ------------------------------------------------------------------
    def _checkStorage(self, storage_id: int, wildcard: bool = True) -> None:
        if storage_id == self.store.storage_id or (wildcard and storage_id in (0, ALL)):
            return
        raise OperationError(R.InvalidStorageID, f"storage 0x{storage_id:08X}")

    def getStorageIDs(self, *_: int) -> Response:
        return Response(data=pack_u32_array([self.store.storage_id]))

    def getStorageInfo(self, storage_id: int, *_: int) -> Response:
        self._checkStorage(storage_id, wildcard=False)
        return Response(data=self.store.storageInfo().encode())

    def _handles(self, storage_id: int, object_format: int, parent: int) -> list[int]:
        self._checkStorage(storage_id)
        return self.store.handles(object_format, parent)

    def getNumObjects(self, storage_id: int, object_format: int, parent: int, *_: int) -> Response:
        return Response(params=(len(self._handles(storage_id, object_format, parent)),))

    def getObjectHandles(self, storage_id: int, object_format: int, parent: int, *_: int) -> Response:
        return Response(data=pack_u32_array(self._handles(storage_id, object_format, parent)))

    def getObjectInfo(self, handle: int, *_: int) -> Response:
        return Response(data=self.store.objectInfo(handle).encode())

    def getObject(self, handle: int, *_: int) -> Response:
        return Response(data=FileSource(self.store.open(handle), cooperator=self.camera.cooperator))

    def getPartialObject(self, handle: int, offset: int, max_bytes: int, *_: int) -> Response:
        f = self.store.open(handle)
        size = os.fstat(f.fileno()).st_size
        if offset > size:
            f.close()
            raise OperationError(R.InvalidParameter, f"offset {offset} beyond {size} bytes")
        length = min(max_bytes, size - offset)
        return Response(params=(length,), data=FileSource(f, length, offset, cooperator=self.camera.cooperator))

    def getThumb(self, handle: int, *_: int) -> Any:
        # A thumbnail may take a thread's time to make: the store answers with a Deferred then.
        return defer.maybeDeferred(self.store.thumbnail, handle).addCallback(lambda data: Response(data=data))

    def deleteObject(self, handle: int, object_format: int, *_: int) -> Response:
        if handle == 0:
            raise OperationError(R.InvalidObjectHandle, "handle 0")
        self.store.delete(handle, object_format)
        return Response()

    def setObjectProtection(self, handle: int, status: int, *_: int) -> Response:
        self.store.setProtection(handle, status)
        return Response()

    def formatStore(self, storage_id: int, *_: int) -> Response:
        self._checkStorage(storage_id, wildcard=False)
        self.store.format()
        return Response()

    # -- upload (SendObjectInfo + SendObject) ---------------------------------------
    @defer.inlineCallbacks
    def sendObjectInfo(self, incoming: IIncomingData, storage_id: int, parent: int, *_: int) -> Any:
        data = yield incoming.readAll(MAX_DATASET)
        if storage_id not in (0, self.store.storage_id):
            raise OperationError(R.InvalidStorageID, f"storage 0x{storage_id:08X}")
        info = ObjectInfo.decode(data)
        self._forgetUpload()                  # a new ObjectInfo replaces one never sent
        handle = self.store.reserve(info, parent)
        if info.object_format == ObjectFormat.Association:
            self._pending_upload = None
        else:
            self._pending_upload = (handle, info)
        return Response(params=(self.store.storage_id, parent if parent != ALL else 0, handle))

    @defer.inlineCallbacks
    def sendObject(self, incoming: IIncomingData, *_: int) -> Any:
        if self._pending_upload is None:
            raise OperationError(R.NoValidObjectInfo, "SendObject without SendObjectInfo")
        handle, info = self._pending_upload
        self._pending_upload = None
        size = info.object_compressed_size
        if incoming.length is not None and size != 0xFFFFFFFF and incoming.length != size:
            self.store.release(handle)
            raise OperationError(R.IncompleteTransfer,
                                 f"Start Data announces {incoming.length} bytes, ObjectInfo {size}")
        upload = self.store.receive(handle)
        try:
            received = yield incoming.deliverTo(upload)
        except BaseException:
            upload.abort()
            raise
        if received != info.object_compressed_size and info.object_compressed_size != 0xFFFFFFFF:
            upload.abort()
            raise OperationError(R.IncompleteTransfer,
                                 f"{received} bytes sent, ObjectInfo announced {info.object_compressed_size}")
        upload.commit()
        return Response()

    # -- capture ------------------------------------------------------------------
    def initiateCapture(self, tid: int, storage_id: int, object_format: int, *_: int) -> Response:
        source = self.camera.capture_source
        assert source is not None
        if storage_id not in (0, self.store.storage_id):
            raise OperationError(R.InvalidStorageID, f"storage 0x{storage_id:08X}")
        if self._captures:
            raise OperationError(R.DeviceBusy, "a capture is in progress")
        d = defer.maybeDeferred(source.capture, object_format)
        d.addCallback(self._captured, tid)
        outcome: list[Any] = []

        def seen(result: Any) -> Any:
            outcome.append(result)
            return result
        d.addBoth(seen)
        if outcome:
            # Over before we answer (a synchronous source such as FolderCapture): a failure
            # is the answer to InitiateCapture, not OK followed by a CaptureComplete alone.
            d.addErrback(lambda _: None)
            if isinstance(outcome[0], Failure):
                # CaptureComplete too: libgphoto2 up to 2.5.30 ignores the response code of
                # InitiateCapture (later ones still ignore GeneralError) and would wait for
                # it forever.
                self.sendEvent(EventCode.CaptureComplete, (), tid)
                raise self._captureRefused(outcome[0])
            return Response()
        self._captures[tid] = d
        d.addErrback(self._captureFailed, tid)
        return Response()

    def _captureRefused(self, failure: Failure) -> OperationError:
        """The response for a capture that failed before InitiateCapture was answered."""
        error = failure.value
        if isinstance(error, OperationError):
            self.log.warn("capture refused: {code}: {error}",
                          code=code_name(error.response_code or R.GeneralError), error=error)
            return error
        self.log.failure("capture failed", failure)
        return OperationError(R.GeneralError, f"capture failed: {error}")

    def _captured(self, result: tuple[str, bytes], tid: int) -> None:
        self._captures.pop(tid, None)
        name, data = result
        self.capture_transaction = tid
        try:
            self.camera.keep(name, data)     # the store announces ObjectAdded
        finally:
            self.capture_transaction = None
        self.sendEvent(EventCode.CaptureComplete, (), tid)

    def _captureFailed(self, failure: Failure, tid: int) -> None:
        self._captures.pop(tid, None)
        if not failure.check(defer.CancelledError):
            self.log.failure("capture failed", failure)
        # InitiateCapture was answered OK already and the initiator waits for CaptureComplete:
        # end the operation either way (2.7.3), without ObjectAdded.
        self.sendEvent(EventCode.CaptureComplete, (), tid)

    # -- properties -----------------------------------------------------------------
    def getDevicePropDesc(self, code: int, *_: int) -> Response:
        return Response(data=self.camera.properties.describe(code).encode())

    def getDevicePropValue(self, code: int, *_: int) -> Response:
        desc = self.camera.properties.describe(code)
        return Response(data=pack_value(desc.datatype, self.camera.properties.get(code)))

    @defer.inlineCallbacks
    def setDevicePropValue(self, incoming: IIncomingData, code: int, *_: int) -> Any:
        data = yield incoming.readAll(MAX_DATASET)
        desc = self.camera.properties.describe(code)
        self.camera.properties.set(code, unpack_value(desc.datatype, data))
        return Response()

    def resetDevicePropValue(self, code: int, *_: int) -> Response:
        self.camera.properties.reset(code)
        return Response()

    # -- PTP 1.1 streams: the standard camera's live view ---------------------------------
    def getStreamInfo(self, stream: int = 0, *_: int) -> Response:
        """The video stream's StreamInfo: libgphoto2 asks with 1 for its preview and with
        the bit index (0 video, 1 audio) for its summary; this camera has video only."""
        if stream not in (0, 1):
            raise OperationError(R.InvalidParameter, f"no stream {stream} (video only)")
        return Response(data=StreamInfo(frame_max_size=MAX_FRAME, packet_max_size=MAX_FRAME).encode())

    def getStream(self, *_: int) -> Any:
        """One live view frame, a bare JPEG, while video is enabled (EnabledStreams bit 0)."""
        if not self.camera.properties.get(DevicePropCode.EnabledStreams) & STREAM_VIDEO:
            raise OperationError(R.AccessDenied, "the video stream is not enabled (EnabledStreams 0x5021)")
        return self.camera.live_view.frame().addCallback(lambda jpeg: Response(data=jpeg))


def sample_pictures() -> list[str]:
    """Paths of the sample pictures shipped with the package."""
    folder = resources.files("ptpip") / "samples"
    return sorted(str(p) for p in folder.iterdir() if p.name.lower().endswith((".jpg", ".png")))


def demo_root() -> str:
    """A fresh temporary folder holding the built-in sample pictures."""
    root = tempfile.mkdtemp(prefix="ptpip-demo-")
    dcim = os.path.join(root, "DCIM", "100PTPIP")
    os.makedirs(dcim)
    for path in sample_pictures():
        shutil.copy(path, dcim)
    return root


def filesystem_camera(root: str | None = None, *, capture_folder: str | None = None,
                      allow_format: bool = False, read_only: bool = False, live_view: str = "testcard",
                      **kwargs: Any) -> Camera:
    """The default device: a camera serving *root* (or the built-in samples), with the live
    view source *live_view* names (see :func:`~ptpip.devices.liveview.live_view_source`)."""
    from .capture import FolderCapture, TestCardCapture
    if root is None:
        root = demo_root()
    store = FilesystemStore(root, allow_format=allow_format, read_only=read_only)
    from .liveview import live_view_source
    capture = FolderCapture(capture_folder) if capture_folder else TestCardCapture()
    camera = Camera(store, None, capture, **kwargs)
    camera.live_view = live_view_source(camera.reactor, live_view, camera)
    return camera
