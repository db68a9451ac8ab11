"""Typed PTP operations over an :class:`~ptpip.initiator.InitiatorSession`.

>>> client = yield PTPClient.connect(reactor, "127.0.0.1")         # doctest: +SKIP
>>> info = yield client.getDeviceInfo()
>>> for path, handle, oi in (yield client.walk()):
...     print(path, oi.object_compressed_size)
>>> yield client.download(handle, "photo.jpg", progress=print)

Every method returns a Deferred; a response other than OK fails it with
:class:`~ptpip.wire.errors.PTPResponseError` naming the code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from typing import IO, TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer
from zope.interface import implementer

from .initiator import InitiatorSession, OperationResult, connect
from .streams import FileSource
from .wire.constants import (
    DEFAULT_PORT,
    EventCode,
    ObjectFormat,
)
from .wire.constants import (
    OperationCode as Op,
)
from .wire.datasets import (
    DeviceInfo,
    DevicePropDesc,
    ObjectInfo,
    StorageInfo,
    pack_value,
    unpack_u32_array,
    unpack_value,
)
from .wire.errors import PTPIPError
from .wire.packets import Event

if TYPE_CHECKING:
    from .liveview import LiveView

ALL = 0xFFFFFFFF
ROOT = 0xFFFFFFFF

Progress = Callable[[int, int | None], Any]


@implementer(IConsumer)
class _CountingConsumer:
    """Writes into a file and reports progress."""

    def __init__(self, f: IO[bytes], done: int, total: int | None, progress: Progress | None) -> None:
        self.f = f
        self.done = done
        self.total = total
        self.progress = progress

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.done += len(data)
        if self.progress is not None:
            self.progress(self.done, self.total)


class _ProgressSource(FileSource):
    def __init__(self, f: IO[bytes], progress: Progress | None) -> None:
        super().__init__(f)
        self._progress = progress
        self._sent = 0

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        outer = self

        @implementer(IConsumer)
        class _Tap:
            def registerProducer(self, p: Any, s: bool) -> None:
                consumer.registerProducer(p, s)

            def unregisterProducer(self) -> None:
                consumer.unregisterProducer()

            def write(self, data: bytes) -> None:
                consumer.write(data)
                outer._sent += len(data)
                if outer._progress is not None:
                    outer._progress(outer._sent, outer.length)

        return super().startProducing(_Tap())


class CaptureTimeout(PTPIPError):
    """No CaptureComplete arrived in time."""


def _path_of(h: int, infos: dict[int, ObjectInfo], paths: dict[int, str], prefix: str, depth: int = 0) -> str:
    """The ``/`` joined path of object *h*, memoised in *paths*; cycles end at depth 64."""
    if h in paths:
        return paths[h]
    oi = infos[h]
    parent = oi.parent_object
    base = _path_of(parent, infos, paths, prefix, depth + 1) if parent in infos and depth < 64 else prefix
    paths[h] = f"{base}/{oi.filename}"
    return paths[h]


class PTPClient:
    """PTP operations with typed results, over one PTP-IP session."""

    def __init__(self, session: InitiatorSession) -> None:
        self.session = session
        self.device_info: DeviceInfo | None = None

    @classmethod
    @defer.inlineCallbacks
    def connect(cls, reactor: Any, host: str, port: int = DEFAULT_PORT, *, open_session: bool = True,
                **kwargs: Any) -> Generator[Any, Any, PTPClient]:
        """Connect, read DeviceInfo and (by default) open a session."""
        session = yield connect(reactor, host, port, **kwargs)
        client = cls(session)
        try:
            client.device_info = yield client.getDeviceInfo()
            if open_session:
                yield client.openSession()
        except BaseException:
            yield session.close()
            raise
        return client

    @defer.inlineCallbacks
    def close(self) -> Generator[Any, Any, None]:
        """CloseSession (if open), then close both channels."""
        if self.session.session_open and not self.session.closed:
            try:
                yield self.call(Op.CloseSession)
            except PTPIPError:
                pass
        yield self.session.close()

    def call(self, code: int, *params: int, data: Any = None,
             into: IConsumer | None = None) -> defer.Deferred[OperationResult]:
        """One transaction; fails with PTPResponseError unless the answer is OK."""
        return self.session.request(code, *params, data=data, into=into).addCallback(
            lambda r: r.check(code))

    def supports(self, code: int) -> bool:
        """Whether the device lists *code* among its operations (True before DeviceInfo is known)."""
        return self.device_info is None or code in self.device_info.operations_supported

    # -- device and session ----------------------------------------------------
    @defer.inlineCallbacks
    def getDeviceInfo(self) -> Generator[Any, Any, DeviceInfo]:
        """GetDeviceInfo: the device's :class:`~ptpip.wire.datasets.DeviceInfo` (also kept in :attr:`device_info`)."""
        r = yield self.call(Op.GetDeviceInfo)
        self.device_info = DeviceInfo.decode(r.data)
        return self.device_info

    def openSession(self, session_id: int = 1) -> defer.Deferred[OperationResult]:
        """OpenSession with *session_id*; transaction ids count from 1 afterwards."""
        return self.call(Op.OpenSession, session_id)

    def closeSession(self) -> defer.Deferred[OperationResult]:
        """CloseSession; the connection stays open."""
        return self.call(Op.CloseSession)

    # -- storage and objects ------------------------------------------------------
    @defer.inlineCallbacks
    def getStorageIDs(self) -> Generator[Any, Any, list[int]]:
        """GetStorageIDs: a list of storage ids."""
        r = yield self.call(Op.GetStorageIDs)
        return unpack_u32_array(r.data)

    @defer.inlineCallbacks
    def getStorageInfo(self, storage_id: int) -> Generator[Any, Any, StorageInfo]:
        """GetStorageInfo: a :class:`~ptpip.wire.datasets.StorageInfo` (capacity, free space, description)."""
        r = yield self.call(Op.GetStorageInfo, storage_id)
        return StorageInfo.decode(r.data)

    @defer.inlineCallbacks
    def getObjectHandles(self, storage_id: int = ALL, object_format: int = 0, parent: int = 0) -> Generator[Any, Any, list[int]]:
        """GetObjectHandles: handles on *storage_id*, of *object_format* (0 = any), under *parent*.

        *parent* 0 means every object; ``0xFFFFFFFF`` means the objects in the root.
        """
        r = yield self.call(Op.GetObjectHandles, storage_id, object_format, parent)
        return unpack_u32_array(r.data)

    @defer.inlineCallbacks
    def getNumObjects(self, storage_id: int = ALL, object_format: int = 0, parent: int = 0) -> Generator[Any, Any, int]:
        """GetNumObjects: how many handles :meth:`getObjectHandles` would return."""
        r = yield self.call(Op.GetNumObjects, storage_id, object_format, parent)
        return r.params[0]

    @defer.inlineCallbacks
    def getObjectInfo(self, handle: int) -> Generator[Any, Any, ObjectInfo]:
        """GetObjectInfo: the :class:`~ptpip.wire.datasets.ObjectInfo` of *handle* (name, format, size, parent...)."""
        r = yield self.call(Op.GetObjectInfo, handle)
        return ObjectInfo.decode(r.data)

    @defer.inlineCallbacks
    def walk(self, storage_id: int = ALL) -> Generator[Any, Any, list[tuple[str, int, ObjectInfo]]]:
        """Every object as ``(path, handle, ObjectInfo)``, folders before their contents.

        Paths are ``/`` joined filenames from the storage root, prefixed by the
        storage as ``store_XXXXXXXX`` when the device has several.
        """
        storages = [storage_id] if storage_id != ALL else (yield self.getStorageIDs())
        out: list[tuple[str, int, ObjectInfo]] = []
        for sid in storages:
            prefix = f"/store_{sid:08X}" if len(storages) > 1 else ""
            handles = yield self.getObjectHandles(sid, 0, 0)
            infos: dict[int, ObjectInfo] = {}
            for h in handles:
                infos[h] = yield self.getObjectInfo(h)
            paths: dict[int, str] = {}
            for h in handles:
                out.append((_path_of(h, infos, paths, prefix), h, infos[h]))
        out.sort(key=lambda t: t[0])
        return out

    @defer.inlineCallbacks
    def findPath(self, path: str) -> Generator[Any, Any, int]:
        """The handle of the object at *path* (as :meth:`walk` names it)."""
        want = "/" + path.strip("/")
        for p, h, _ in (yield self.walk()):
            if p == want:
                return h
        raise FileNotFoundError(path)

    def getObject(self, handle: int, into: IConsumer) -> defer.Deferred[OperationResult]:
        """Stream the object's bytes into *into*."""
        return self.call(Op.GetObject, handle, into=into)

    @defer.inlineCallbacks
    def getPartialObject(self, handle: int, offset: int, max_bytes: int, into: IConsumer | None = None) -> Generator[Any, Any, bytes | int]:
        """GetPartialObject: up to *max_bytes* from *offset*.

        Returns the bytes, or with *into* streams them into that consumer and returns the
        count the device reports.
        """
        r = yield self.call(Op.GetPartialObject, handle, offset, max_bytes, into=into)
        return r.data if into is None else r.params[0] if r.params else r.received

    @defer.inlineCallbacks
    def download(self, handle: int, path: str, *, resume: bool = True,
                 progress: Progress | None = None, sync: bool = False) -> Generator[Any, Any, int]:
        """Download *handle* to *path* atomically (``path.part``, then rename).

        A ``.part`` left by an interrupted download is continued with
        GetPartialObject when the device supports it. *sync* forces the bytes to
        disk (fsync) before the rename. Returns the byte count.
        """
        info = yield self.getObjectInfo(handle)
        total = info.object_compressed_size
        part = path + ".part"
        have = os.path.getsize(part) if resume and os.path.exists(part) else 0
        partial = self.supports(Op.GetPartialObject) and total < 0xFFFFFFFF
        if have and (not partial or have > total):
            have = 0
        with open(part, "ab" if have else "wb") as f:
            consumer = _CountingConsumer(f, have, total, progress)
            if have or partial:
                yield self.call(Op.GetPartialObject, handle, have, 0xFFFFFFFF, into=consumer)
            else:
                yield self.getObject(handle, consumer)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        size = os.path.getsize(part)
        if total != 0xFFFFFFFF and size != total:
            raise PTPIPError(f"downloaded {size} bytes of {total}; kept {part} to resume")
        os.replace(part, path)
        return size

    @defer.inlineCallbacks
    def getThumb(self, handle: int) -> Generator[Any, Any, bytes]:
        """GetThumb: the object's thumbnail (usually a small JPEG) as bytes."""
        r = yield self.call(Op.GetThumb, handle)
        return r.data

    @defer.inlineCallbacks
    def upload(self, path: str, *, parent: int = 0, storage_id: int = 0, filename: str | None = None,
               object_format: int | None = None, progress: Progress | None = None) -> Generator[Any, Any, int]:
        """SendObjectInfo + SendObject of a local file; returns the new handle."""
        from .devices.filestore import sniff_format
        name = filename or os.path.basename(path)
        size = os.path.getsize(path)
        if object_format is None:
            with open(path, "rb") as f:
                object_format = sniff_format(f.read(4096), name)
        info = ObjectInfo(storage_id=storage_id, object_format=object_format,
                          object_compressed_size=size, parent_object=parent, filename=name)
        r = yield self.call(Op.SendObjectInfo, storage_id, parent, data=info.encode())
        handle = r.params[2] if len(r.params) > 2 else 0
        yield self.call(Op.SendObject, data=_ProgressSource(open(path, "rb"), progress))
        return handle

    @defer.inlineCallbacks
    def makeFolder(self, name: str, *, parent: int = 0, storage_id: int = 0) -> Generator[Any, Any, int]:
        """SendObjectInfo of an Association (a folder) named *name*; returns its handle."""
        info = ObjectInfo(storage_id=storage_id, object_format=ObjectFormat.Association,
                          association_type=1, parent_object=parent, filename=name)
        r = yield self.call(Op.SendObjectInfo, storage_id, parent, data=info.encode())
        return r.params[2] if len(r.params) > 2 else 0

    def deleteObject(self, handle: int, object_format: int = 0) -> defer.Deferred[OperationResult]:
        """DeleteObject; *handle* ``0xFFFFFFFF`` deletes every object (of *object_format*, if given)."""
        return self.call(Op.DeleteObject, handle, object_format)

    # -- capture --------------------------------------------------------------
    @defer.inlineCallbacks
    def capture(self, reactor: Any, storage_id: int = 0, object_format: int = 0,
                timeout: float = 30.0) -> Generator[Any, Any, list[int]]:
        """InitiateCapture, then wait for CaptureComplete; returns the new handles."""
        added: list[int] = []
        done: defer.Deferred[None] = defer.Deferred()
        tid_box: list[int] = []

        def on_event(e: Event) -> None:
            if e.code == EventCode.ObjectAdded and e.params:
                added.append(e.params[0])
            elif e.code == EventCode.CaptureComplete and not done.called and (
                    not tid_box or e.transaction_id in (tid_box[0], 0xFFFFFFFF)):
                done.callback(None)

        unsubscribe = self.session.subscribe(on_event)
        try:
            r = yield self.call(Op.InitiateCapture, storage_id, object_format)
            tid_box.append(r.transaction_id)
            done.addTimeout(timeout, reactor)
            try:
                yield done
            except defer.TimeoutError:
                raise CaptureTimeout(f"no CaptureComplete within {timeout} s") from None
        finally:
            unsubscribe()
        return added

    # -- properties ---------------------------------------------------------------
    @defer.inlineCallbacks
    def getDevicePropDesc(self, code: int) -> Generator[Any, Any, DevicePropDesc]:
        """GetDevicePropDesc: the :class:`~ptpip.wire.datasets.DevicePropDesc` of *code* (datatype,
        factory default, current value, allowed range or enumeration).
        """
        r = yield self.call(Op.GetDevicePropDesc, code)
        return DevicePropDesc.decode(r.data)

    @defer.inlineCallbacks
    def getDevicePropValue(self, code: int, datatype: int | None = None) -> Generator[Any, Any, Any]:
        """GetDevicePropValue, decoded; the datatype is read from the description unless given."""
        if datatype is None:
            datatype = (yield self.getDevicePropDesc(code)).datatype
        r = yield self.call(Op.GetDevicePropValue, code)
        return unpack_value(datatype, r.data)

    @defer.inlineCallbacks
    def setDevicePropValue(self, code: int, value: Any, datatype: int | None = None) -> Generator[Any, Any, None]:
        """SetDevicePropValue, encoded with the property's datatype (read from its
        description unless given). Fails with the device's response, e.g. InvalidDevicePropValue.
        """
        if datatype is None:
            datatype = (yield self.getDevicePropDesc(code)).datatype
        yield self.call(Op.SetDevicePropValue, code, data=pack_value(datatype, value))

    def resetDevicePropValue(self, code: int) -> defer.Deferred[OperationResult]:
        """ResetDevicePropValue: back to the factory default."""
        return self.call(Op.ResetDevicePropValue, code)

    def liveview(self, reactor: Any = None, *, frames: int = 0, duration: float = 0.0) -> LiveView:
        """The camera's live view as an async iterator of JPEG frames (Canon EOS, Nikon or
        PTP 1.1 streams); see :class:`ptpip.liveview.LiveView`. Other calls interleave
        with it; leaving ``async with`` (or *frames*, *duration*) switches it off."""
        from .liveview import LiveView
        return LiveView(self, reactor, frames=frames, duration=duration)

    def subscribe(self, callback: Callable[[Event], Any]) -> Callable[[], None]:
        """Call *callback* with every :class:`~ptpip.wire.packets.Event` from the device; returns an unsubscribe function."""
        return self.session.subscribe(callback)
