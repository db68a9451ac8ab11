"""The bridge: a PTP-IP camera seen through the CCCP interfaces.

A connected PTP-IP session (:class:`ptpip.client.PTPClient`, or a bare
:class:`ptpip.initiator.InitiatorSession`) adapts to :class:`~cccp.interfaces.ICamera`
and :class:`~cccp.interfaces.IMediaStore` with ``twisted.python.components``:

    camera = ICamera(client)          # IRIS ↔ FNumber, SENS ↔ ExposureIndex,
    store = IMediaStore(client)       # ZOOM ↔ FocalLength (or DigitalZoom), FOCU ↔ FocusDistance

The two protocols meet only here. Values are shown in CCCP in natural units:
IRIS as the f-number, SENS as ISO, ZOOM as the focal length in mm (or the digital
zoom factor), FOCU in mm. The draft's positive direction is kept for relative and
step arguments: ``IRIS +`` and ``IRIS +2`` open the iris (a smaller f-number), while
an absolute ``IRIS 8`` asks for f/8. Absolute, relative and bare ``+``/``-`` arguments land on the
property's range or enumeration (nearest allowed value; a step moves to the next one).
DevicePropChanged and ObjectAdded/ObjectRemoved events keep the view current.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from twisted.application import service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, error, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python import components
from twisted.python.failure import Failure
from zope.interface import implementer

from ptpip.client import PTPClient
from ptpip.initiator import InitiatorSession
from ptpip.wire.constants import DevicePropCode, EventCode, ObjectFormat
from ptpip.wire.datasets import FORM_ENUM, FORM_RANGE, DevicePropDesc, ObjectInfo
from ptpip.wire.errors import ConnectionClosed, PTPResponseError

from .camera_live import LIVE_CAMERA, CameraViewfinder
from .devices import Entry
from .devices.fanout import CLOSE_AFTER, LiveSources
from .devices.live import LIVE_DIR, ffmpeg_path
from .interfaces import ICamera, IMediaSource, IMediaStore, IRecording
from .wire.commands import CAMERA_CONTROLS, Number
from .wire.errors import FileUnavailable, NotImplementedHere, ParameterNotImplemented, RemoteProtocolError
from .wire.media import RTP_MP2T
from .wire.rtpjpeg import RTP_JPEG

log = Logger()


@dataclass(frozen=True)
class Mapping:
    """How one CCCP control maps onto one PTP property."""

    command: str
    code: int
    scale: Decimal          # CCCP value = PTP value / scale
    inverted: bool = False  # a positive CCCP direction lowers the PTP value

    def to_cccp(self, raw: int) -> Decimal:
        return Decimal(raw) / self.scale

    def to_ptp(self, value: Decimal) -> Decimal:
        return value * self.scale


#: Candidates per command, in order of preference.
MAPPINGS: dict[str, list[Mapping]] = {
    "IRIS": [Mapping("IRIS", DevicePropCode.FNumber, Decimal(100), inverted=True)],
    "SENS": [Mapping("SENS", DevicePropCode.ExposureIndex, Decimal(1))],
    "ZOOM": [Mapping("ZOOM", DevicePropCode.FocalLength, Decimal(100)),
             Mapping("ZOOM", DevicePropCode.DigitalZoom, Decimal(10))],
    "FOCU": [Mapping("FOCU", DevicePropCode.FocusDistance, Decimal(1))],
}


def allowed_values(desc: DevicePropDesc) -> list[int] | None:
    """Every allowed value of an enumeration (sorted), or None for a range/no form."""
    if desc.form == FORM_ENUM:
        return sorted(desc.enumeration)
    return None


def place(desc: DevicePropDesc, current: int, target: Decimal, direction: int) -> int:
    """The allowed value nearest to *target*; a request that would not move (but has a
    *direction*) moves one allowed step that way."""
    values = allowed_values(desc)
    if values is not None:
        best = min(values, key=lambda v: (abs(Decimal(v) - target), v))
        if best == current and direction:
            i = values.index(current) if current in values else 0
            i = max(0, min(len(values) - 1, i + direction))
            best = values[i]
        return best
    if desc.form == FORM_RANGE and desc.range is not None:
        lo, hi, step = desc.range
        step = step or 1
        t = max(Decimal(lo), min(Decimal(hi), target))
        k = ((t - lo) / step).to_integral_value()
        v = int(lo + k * step)
        if v == current and direction:
            v = max(lo, min(hi, current + direction * step))
        return v
    return int(target)


@implementer(ICamera)
class PTPCamera:
    """CCCP camera controls over the device properties of a PTP camera."""

    def __init__(self, client: PTPClient) -> None:
        self.client = client
        info = client.device_info
        supported = set(info.device_properties_supported) if info is not None else set()
        self.mappings: dict[str, Mapping] = {}
        for command in CAMERA_CONTROLS:
            for m in MAPPINGS.get(command, []):
                if m.code in supported:
                    self.mappings[command] = m
                    break
        self._descs: dict[int, DevicePropDesc] = {}
        client.subscribe(self._event)

    def _event(self, event: Any) -> None:
        if event.code == EventCode.DevicePropChanged and event.params:
            self._descs.pop(event.params[0], None)      # read it afresh next time

    def controls(self) -> list[str]:
        return list(self.mappings)

    def _mapping(self, name: str) -> Mapping:
        m = self.mappings.get(name)
        if m is None:
            raise NotImplementedHere(f"{name} is not supported by this camera (no matching PTP property)")
        return m

    @defer.inlineCallbacks
    def _desc(self, code: int) -> Any:
        desc = self._descs.get(code)
        if desc is None:
            desc = yield self.client.getDevicePropDesc(code)
            self._descs[code] = desc
        return desc

    @defer.inlineCallbacks
    def status(self, name: str) -> Any:
        m = self._mapping(name)
        desc = yield self._desc(m.code)
        values = allowed_values(desc)
        if values is not None:
            lo, hi = values[0], values[-1]
        elif desc.range is not None:
            lo, hi = desc.range[0], desc.range[1]
        else:
            lo = hi = desc.current
        a, b = m.to_cccp(lo), m.to_cccp(hi)
        return min(a, b), m.to_cccp(desc.current), max(a, b)

    @defer.inlineCallbacks
    def control(self, name: str, number: Number) -> Any:
        m = self._mapping(name)
        desc = yield self._desc(m.code)
        if not desc.writable:
            raise NotImplementedHere(f"{name}: the camera's property 0x{m.code:04X} is read-only")
        current = desc.current
        cccp_now = m.to_cccp(current)
        sign = -1 if m.inverted else 1
        if number.kind == "step":
            direction = int(number.value) * sign
            target = Decimal(current)
        else:
            if number.kind == "relative" and m.inverted:
                # "Positive direction makes iris more open": a smaller f-number.
                goal = cccp_now - number.value
            else:
                goal = number.apply(cccp_now, Decimal(0))
            target = m.to_ptp(goal)
            direction = 0 if goal == cccp_now else (1 if target > current else -1)
        value = place(desc, current, target, direction)
        if value != current:
            try:
                yield self.client.setDevicePropValue(m.code, value, desc.datatype)
            except PTPResponseError as e:
                raise RemoteProtocolError(f"{name}: the camera refused {value}: {e}", 501) from None
        self._descs.pop(m.code, None)
        fresh = yield self._desc(m.code)
        return m.to_cccp(fresh.current)


@dataclass
class _Node:
    handle: int
    info: ObjectInfo


@implementer(IMediaSource)
class _PTPObjectSource:
    """GetObject streamed into the data connection, with backpressure."""

    live = False
    rtp_input = False

    def __init__(self, client: PTPClient, handle: int, size: int) -> None:
        self.client = client
        self.handle = handle
        self.length = size
        self._request: defer.Deferred[Any] | None = None

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        self._request = self.client.getObject(self.handle, consumer)
        return self._request.addCallback(lambda _: None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        if self._request is not None and not self._request.called:
            self._request.cancel()


@implementer(IRecording)
class _PTPUpload:
    """Spools a STOR locally (SendObjectInfo needs the size first), then uploads it
    with SendObjectInfo + SendObject on commit; the camera lands it atomically."""

    def __init__(self, store: PTPMediaStore, parent: int, name: str) -> None:
        self.store = store
        self.parent = parent
        self.name = name
        fd, self.tmp = tempfile.mkstemp(prefix="cccp-bridge-")
        self._file: IO[bytes] | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise RemoteProtocolError("the upload was aborted", 451)
        self._file.write(data)

    @defer.inlineCallbacks
    def commit(self) -> Any:
        if self._file is None:
            raise RemoteProtocolError("the upload was aborted", 451)
        self._file.close()
        self._file = None
        try:
            handle = yield self.store.client.upload(self.tmp, parent=self.parent, filename=self.name)
            yield self.store.learn(handle)
        except PTPResponseError as e:
            raise RemoteProtocolError(f"the camera refused the upload: {e}", 451) from None
        finally:
            os.unlink(self.tmp)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


@implementer(IMediaStore)
class PTPMediaStore:
    """The camera's object tree as CCCP media: folders are Associations."""

    writable = True

    def __init__(self, client: PTPClient) -> None:
        self.client = client
        self.nodes: dict[str, _Node] = {}         # virtual path → node
        self.ready: defer.Deferred[None] = self.refresh()
        client.subscribe(self._event)

    @defer.inlineCallbacks
    def refresh(self) -> Any:
        tree = yield self.client.walk()
        self.nodes = {path: _Node(h, info) for path, h, info in tree}

    def _event(self, event: Any) -> None:
        if event.code == EventCode.ObjectAdded and event.params:
            self.learn(event.params[0]).addErrback(lambda f: log.failure("ObjectAdded lookup failed", f))
        elif event.code == EventCode.ObjectRemoved and event.params:
            gone = event.params[0]
            self.nodes = {p: n for p, n in self.nodes.items() if n.handle != gone}

    @defer.inlineCallbacks
    def learn(self, handle: int) -> Any:
        info = yield self.client.getObjectInfo(handle)
        parent = next((p for p, n in self.nodes.items() if n.handle == info.parent_object), "")
        self.nodes[f"{parent}/{info.filename}"] = _Node(handle, info)

    @staticmethod
    def _v(path: str) -> str:
        v = posixpath.normpath("/" + path.lstrip("/"))
        return "" if v == "/" else v

    def _entry(self, node: _Node) -> Entry:
        info = node.info
        folder = info.object_format == ObjectFormat.Association
        return Entry(info.filename, folder, info.object_compressed_size, _mtime(info.capture_date),
                     0o755 if folder else (0o444 if info.protection_status else 0o644))

    def isdir(self, path: str) -> bool:
        v = self._v(path)
        return v == "" or (v in self.nodes and self.nodes[v].info.object_format == ObjectFormat.Association)

    def stat(self, path: str) -> Entry:
        v = self._v(path)
        if v == "":
            return Entry("/", True, 0, 0.0, 0o755)
        if v not in self.nodes:
            raise FileUnavailable(f"{path}: no such object on the camera")
        return self._entry(self.nodes[v])

    def listdir(self, path: str) -> list[Entry]:
        v = self._v(path)
        if v and v in self.nodes and not self.isdir(v):
            return [self._entry(self.nodes[v])]
        if not self.isdir(v):
            raise FileUnavailable(f"{path}: no such folder on the camera")
        prefix = v + "/"
        return sorted((self._entry(n) for p, n in self.nodes.items()
                       if p.startswith(prefix) and "/" not in p[len(prefix):]), key=lambda e: e.name)

    def open(self, path: str, offset: int = 0, payload_type: int = 33) -> IMediaSource:
        v = self._v(path)
        node = self.nodes.get(v)
        if node is None or node.info.object_format == ObjectFormat.Association:
            raise FileUnavailable(f"{path}: no such picture on the camera")
        return _PTPObjectSource(self.client, node.handle, node.info.object_compressed_size)

    def receive(self, path: str) -> IRecording:
        v = self._v(path)
        parent_path, name = posixpath.split(v)
        if not name:
            raise RemoteProtocolError(f"{path}: file name not allowed", 553)
        parent = 0
        if parent_path not in ("", "/"):
            node = self.nodes.get(parent_path)
            if node is None or node.info.object_format != ObjectFormat.Association:
                raise RemoteProtocolError(f"{path}: no such folder on the camera", 553)
            parent = node.handle
        return _PTPUpload(self, parent, name)


def _mtime(date: str) -> float:
    import time
    try:
        return time.mktime(time.strptime(date[:15], "%Y%m%dT%H%M%S"))
    except (ValueError, TypeError):
        return 0.0


def _client(session: InitiatorSession) -> PTPClient:
    client = getattr(session, "_ptp_client", None)
    if client is None:
        client = session._ptp_client = PTPClient(session)  # type: ignore[attr-defined]
    return client


components.registerAdapter(PTPCamera, PTPClient, ICamera)
components.registerAdapter(PTPMediaStore, PTPClient, IMediaStore)
components.registerAdapter(lambda s: PTPCamera(_client(s)), InitiatorSession, ICamera)
components.registerAdapter(lambda s: PTPMediaStore(_client(s)), InitiatorSession, IMediaStore)


# -- the bridge service: connect, reconnect, and stand in while disconnected -----------

class CameraUnavailable(RemoteProtocolError):
    """421: the bridged camera is not connected (the bridge is reconnecting). Not 502,
    which says that the camera has no such control."""

    code = 421


def _lost_to_unavailable(failure: Failure, bridge: PTPBridge) -> Failure:
    """The session went away during a request: say so with 421, as before it."""
    if failure.check(ConnectionClosed, error.ConnectionLost, error.ConnectionDone):
        return Failure(bridge.unavailable())
    return failure


@implementer(ICamera)
class BridgeCamera:
    """Delegates to the camera of the current PTP-IP connection. While there is none,
    every method raises :class:`CameraUnavailable` (421), :meth:`controls` included:
    the controls of a camera that is away are unknown, not absent."""

    #: Its values come from the camera over the network (metrics do not ask it at each scrape).
    remote = True

    def __init__(self, bridge: PTPBridge) -> None:
        self.bridge = bridge

    def _cam(self) -> PTPCamera:
        if self.bridge.camera is None:
            raise self.bridge.unavailable()
        return self.bridge.camera

    def controls(self) -> list[str]:
        return self._cam().controls()

    def status(self, name: str) -> Any:
        return self._cam().status(name).addErrback(_lost_to_unavailable, self.bridge)

    def control(self, name: str, number: Number) -> Any:
        return self._cam().control(name, number).addErrback(_lost_to_unavailable, self.bridge)


@implementer(IMediaStore)
class BridgeStore:
    """Delegates to the media store of the current PTP-IP connection; refuses every
    STOR when the bridge is not *writable* (``--read-only``). A camera with live view
    also has the live source ``/live/camera`` (:mod:`cccp.camera_live`)."""

    def __init__(self, bridge: PTPBridge) -> None:
        self.bridge = bridge

    @property
    def writable(self) -> bool:
        return self.bridge.writable

    def _store(self) -> PTPMediaStore:
        if self.bridge.store is None:
            raise self.bridge.unavailable()
        return self.bridge.store

    def _live(self, path: str) -> str | None:
        """``"dir"`` for /live, ``"camera"`` for /live/camera (when the camera has live
        view), None for the camera's own objects."""
        v = posixpath.normpath("/" + path.lstrip("/"))
        if not self.bridge.viewfinder.available():
            return None
        return {LIVE_DIR: "dir", LIVE_CAMERA: "camera"}.get(v)

    def isdir(self, path: str) -> bool:
        live = self._live(path)
        return live == "dir" if live else self._store().isdir(path)

    def stat(self, path: str) -> Entry:
        live = self._live(path)
        if live:
            return Entry("live", True, 0, time.time(), 0o555) if live == "dir" else \
                Entry("camera", False, 0, time.time(), 0o444)
        return self._store().stat(path)

    def listdir(self, path: str) -> list[Entry]:
        live = self._live(path)
        if live:
            return [Entry("camera", False, 0, time.time(), 0o444)]
        entries = self._store().listdir(path)
        if posixpath.normpath("/" + path.lstrip("/")) == "/" and self.bridge.viewfinder.available():
            entries = sorted([*entries, Entry("live", True, 0, time.time(), 0o555)], key=lambda e: e.name)
        return entries

    def open(self, path: str, offset: int = 0, payload_type: int = 33) -> IMediaSource:
        live = self._live(path)
        if live == "camera":
            from .camera_live import CameraEncoderSource, RTPJPEGSource
            b = self.bridge
            if payload_type == RTP_JPEG:
                return b.live.open("camera", payload_type, lambda: RTPJPEGSource(b.reactor, b.viewfinder),
                                   rtp_input=True)
            if payload_type in (RTP_MP2T, 32):
                if not ffmpeg_path():
                    raise FileUnavailable("MPEG from the camera's live view needs ffmpeg, which is not installed "
                                          "(TYPE I R 26 sends its JPEGs as they are)")
                return b.live.open("camera", payload_type,
                                   lambda: CameraEncoderSource(b.reactor, b.viewfinder, payload_type),
                                   rtp_input=payload_type != RTP_MP2T)
            raise ParameterNotImplemented(f"the camera's live view is sent as RTP payload type 26 (JPEG), "
                                          f"32 (MPV) or 33 (MP2T), not {payload_type}")
        if live == "dir":
            raise FileUnavailable(f"{path} is a folder")
        return self._store().open(path, offset, payload_type)

    def receive(self, path: str) -> IRecording:
        if self._live(path):
            raise RemoteProtocolError(f"{path} is a live source: it cannot be stored to", 553)
        if not self.writable:
            raise RemoteProtocolError(f"{path}: this store is read-only", 553)
        return self._store().receive(path)


@implementer(IStreamClientEndpoint)
class _CameraEndpoint:
    """A whole PTP-IP session (both channels, DeviceInfo, OpenSession and the object
    tree) as one connection, so that Twisted's ``ClientService`` keeps it up."""

    def __init__(self, bridge: PTPBridge) -> None:
        self.bridge = bridge

    def __repr__(self) -> str:
        return f"<the PTP-IP camera at {self.bridge.host}:{self.bridge.port}>"

    @defer.inlineCallbacks
    def connect(self, protocolFactory: Any) -> Any:
        b = self.bridge
        try:
            client = yield PTPClient.connect(b.reactor, b.host, b.port, timeout=10,
                                             friendly_name=b.friendly_name, probe_interval=b.probe_interval,
                                             probe_timeout=b.probe_timeout)
        except Exception as e:
            if not isinstance(e, defer.CancelledError):
                log.warn("PTP-IP camera at {host}:{port} unavailable: {e}", host=b.host, port=b.port, e=e)
            raise
        try:
            store = PTPMediaStore(client)
            yield store.ready
        except BaseException:
            yield client.close()
            raise
        proto = protocolFactory.buildProtocol(IPv4Address("TCP", b.host, b.port))
        proto.makeConnection(_SessionTransport(client, store))

        def lost(_: Any) -> None:
            proto.connectionLost(Failure(error.ConnectionDone("the PTP-IP session ended")))
        client.session.whenClosed.addBoth(lost)
        return proto


class _SessionTransport:
    """What ``ClientService`` sees of a bridged PTP-IP session: closing it closes the session."""

    def __init__(self, client: PTPClient, store: PTPMediaStore) -> None:
        self.client = client
        self.store = store

    def loseConnection(self) -> None:
        self.client.close()

    abortConnection = loseConnection


class _BridgeProtocol(protocol.Protocol):
    transport: Any           # a _SessionTransport

    def __init__(self, bridge: PTPBridge) -> None:
        self.bridge = bridge

    def connectionMade(self) -> None:
        self.bridge._up(self.transport.client, self.transport.store)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.bridge._down()


class PTPBridge(service.Service):
    """Keeps a PTP-IP session to *host*:*port* open and serves it through
    :attr:`cccp_camera` and :attr:`cccp_store`.

    Reconnecting is Twisted's ``ClientService`` with ``backoffPolicy``: the first
    retry after *retry* seconds, doubling up to *max_retry*.

    :param writable: whether :attr:`cccp_store` takes STOR (uploads to the camera).
    :param probe_interval: during a transaction that has heard nothing from the camera
        for this many seconds, probe it (PTP-IP Probe Request); a camera that does not
        answer within *probe_timeout* seconds is taken as gone, so commands answer 421
        and the bridge reconnects instead of hanging on a camera that vanished without
        closing.
    """

    def __init__(self, reactor: Any, host: str, port: int = 15740, *, retry: float = 2.0,
                 max_retry: float = 30.0, friendly_name: str = "cccp bridge", writable: bool = True,
                 probe_interval: float | None = 10.0, probe_timeout: float = 10.0,
                 close_after: float = CLOSE_AFTER) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.writable = writable
        self.friendly_name = friendly_name
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.client: PTPClient | None = None
        self.camera: PTPCamera | None = None
        self.store: PTPMediaStore | None = None
        self.cccp_camera = BridgeCamera(self)
        self.cccp_store = BridgeStore(self)
        #: The camera's live view, shared by the viewers of ``/live/camera``.
        self.viewfinder = CameraViewfinder(reactor, lambda: self.client)
        #: What is made of it: one RTP/JPEG packetiser and one encoder per payload type, for
        #: every viewer; stopped *close_after* seconds after the last one left.
        self.live = LiveSources(reactor, close_after)
        #: Fires when the camera is connected (set a new Deferred to wait for a reconnection).
        self.connected: defer.Deferred[None] = defer.Deferred()
        self._service = ClientService(_CameraEndpoint(self), protocol.Factory.forProtocol(lambda: _BridgeProtocol(self)), clock=reactor,
                                      retryPolicy=backoffPolicy(retry, max_retry, 2.0, jitter=lambda: 0))

    def startService(self) -> None:
        super().startService()
        self._service.startService()

    def _up(self, client: PTPClient, store: PTPMediaStore) -> None:
        self.client, self.store, self.camera = client, store, PTPCamera(client)
        log.info("bridging the PTP-IP camera at {host}:{port} ({model})", host=self.host, port=self.port,
                 model=client.device_info.model if client.device_info else "?")
        if not self.connected.called:
            self.connected.callback(None)

    def _down(self) -> None:
        self.client = self.store = self.camera = None
        if self.running:
            log.warn("lost the PTP-IP camera at {host}:{port}; reconnecting", host=self.host, port=self.port)

    def unavailable(self) -> CameraUnavailable:
        """The 421 to answer while the camera is not connected."""
        return CameraUnavailable(f"Service not available: the PTP-IP camera at {self.host}:{self.port} "
                                 "is not connected (reconnecting)")

    def stopService(self) -> Any:
        super().stopService()
        self.live.close()
        return self._service.stopService()


def parse_camera_spec(spec: str) -> tuple[str, int]:
    """``ptpip:HOST[:PORT]`` → (host, port)."""
    rest = spec[len("ptpip:"):]
    host, _, port = rest.partition(":")
    if not host:
        raise ValueError(f"no host in {spec!r}")
    return host, int(port) if port else 15740


__all__ = ["MAPPINGS", "PTPBridge", "PTPCamera", "PTPMediaStore", "parse_camera_spec", "place"]
