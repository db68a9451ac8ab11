"""The responder side of Fuji's PTP/IP variant: a Fujifilm X camera on three ports.

:class:`FujiResponderFactory` serves an :class:`~ptpip.interfaces.IResponderDevice`
(normally a camera with the ``fuji`` profile) the way a Fuji X camera does over Wi-Fi:
commands on port P (55740), events on P+1 (55741, no handshake: the first connection
from the initiator's address is its event channel), live view on P+2 (frames a
second of the camera's viewfinder, as long as the initiator reads them). The framing is
:mod:`ptpip.wire.fuji`: each init request answered with an ack, then one transaction at
a time, each data phase one data container, and a data container before every answer of
a data-in operation, even an error (libgphoto2 would otherwise read the response as the
data and wait 2.5 s).
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .interfaces import IDataSource, IEventSink, IIncomingData, IInitiatorInfo, Response
from .wire import fuji
from .wire.constants import FailReason, ResponseCode, code_name
from .wire.constants import OperationCode as Op
from .wire.errors import PTPIPError, RemoteProtocolError
from .wire.packets import OperationRequest

#: Operations whose answer has a data phase (an empty one when they fail).
DATA_IN = frozenset({Op.GetDeviceInfo, Op.GetStorageIDs, Op.GetStorageInfo, Op.GetObjectHandles,
                     Op.GetObjectInfo, Op.GetObject, Op.GetThumb, Op.GetPartialObject, Op.GetDevicePropDesc,
                     Op.GetDevicePropValue, 0x902B})
#: Operations followed by a data container from the initiator.
DATA_OUT = frozenset({Op.SetDevicePropValue, Op.SendObjectInfo, Op.SendObject})
#: Bytes between a live view blob's length and its JPEG.
LIVE_VIEW_HEADER = 14
#: Live view frames a second while the peer keeps reading (a frame the socket cannot
#: take waits: the transport pauses this producer).
LIVE_VIEW_RATE = 15
#: The live view socket's send buffer (bytes; the kernel doubles it).
LIVE_VIEW_SNDBUF = 16384

#: Events kept for an event channel that is not there yet.
MAX_PENDING_EVENTS = 64


@implementer(IInitiatorInfo)
class _Initiator:
    def __init__(self, guid: bytes, name: str, address: Any, number: int) -> None:
        self.guid = guid
        self.friendly_name = name
        self.version = 0
        self.address = address
        self.connection_number = number


@implementer(IIncomingData)
class _IncomingBytes:
    """A data-out phase that arrived whole, in one data container."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def readAll(self, limit: int) -> defer.Deferred[bytes]:
        if len(self.data) > limit:
            return defer.fail(RemoteProtocolError(f"{len(self.data)} bytes of data, more than {limit}",
                                                  response_code=ResponseCode.GeneralError))
        return defer.succeed(self.data)

    def deliverTo(self, consumer: Any) -> defer.Deferred[int]:
        consumer.write(self.data)
        return defer.succeed(len(self.data))


@implementer(IEventSink)
class _Events:
    """Events for one initiator: on its event channel once it has connected. Events for a
    channel that is not there yet, or whose peer does not read, are dropped (counted)."""

    def __init__(self) -> None:
        self.channel: FujiEventProtocol | None = None
        self.pending: list[bytes] = []
        self.closed = False
        self.dropped = 0

    def sendEvent(self, code: int, params: tuple[int, ...] = (), transaction_id: int = 0xFFFFFFFF) -> None:
        if self.closed:
            return
        packet = fuji.Container(fuji.EVENT, code, transaction_id, params=tuple(params)[:4]).encode()
        channel = self.channel
        if channel is not None and channel.transport is not None:
            if channel.paused:
                self.dropped += 1
            else:
                channel.transport.write(packet)
        elif len(self.pending) < MAX_PENDING_EVENTS:
            self.pending.append(packet)
        else:
            self.dropped += 1

    def attach(self, channel: FujiEventProtocol) -> None:
        old, self.channel = self.channel, channel
        if old is not None and old.transport is not None:
            old.transport.loseConnection()
        for packet in self.pending:
            channel.transport.write(packet)
        self.pending.clear()


@implementer(IPushProducer)
class FujiCommandProtocol(protocol.Protocol):
    """The command channel of one initiator. It is its own transport's producer: while
    the peer does not read, no command is taken (and after the stall timeout, the
    connection is closed); a streamed object is paused and resumed with it."""

    log = Logger()
    transport: Any

    def __init__(self, factory: FujiResponderFactory) -> None:
        self.factory = factory
        self.decoder = fuji.FujiDecoder(max_packet=factory.max_packet, side="responder")
        self.session: Any = None
        self.events = _Events()
        self.liveview: FujiLiveViewProtocol | None = None
        self.number = 0
        self.busy = False
        self.paused = False
        self.commanded = False
        #: InitiateOpenCapture answered: libgphoto2 connects its event channel after it.
        self.open_capture = False
        self._waiting_data: OperationRequest | None = None
        self._queue: list[fuji.InitRequest | fuji.Container] = []
        self._source: Any = None
        self.closed = False
        self._timer: Any = None
        self._stall: Any = None

    def connectionMade(self) -> None:
        f = self.factory
        self.number = next(f.numbers)
        f.metrics.connections.labels(f.friendly_name).inc()
        host = self.transport.getPeer().host
        if (len(f.commands) >= f.max_sessions + f.max_pending
                or sum(1 for c in f.commands if c.host == host) >= f.max_per_address):
            # Sockets that never send their init request must not lock the camera up.
            self._init_fail(FailReason.BUSY)
            self.transport.loseConnection()
            self.closed = True
            return
        self.host = host
        f.commands.append(self)
        self.transport.registerProducer(self, True)
        self._timer = f.reactor.callLater(f.init_timeout, self._initTimedOut)

    host = ""

    def _initTimedOut(self) -> None:
        self._timer = None
        if self.session is None and self.transport is not None:
            self.log.info("Fuji initiator {peer} sent no init request in time", peer=self.transport.getPeer())
            self.transport.abortConnection()

    def _stalled(self) -> None:
        self._stall = None
        if self.transport is not None:
            self.log.warn("Fuji initiator {peer} stopped reading: closed", peer=self.transport.getPeer())
            self.transport.abortConnection()

    # -- IPushProducer: the peer's reading paces us -------------------------------------
    def pauseProducing(self) -> None:
        self.paused = True
        if self._source is not None:
            self._source.pauseProducing()
        self.transport.pauseProducing()          # and stop reading its commands meanwhile
        f = self.factory
        if self._stall is None and f.stall_timeout:
            self._stall = f.reactor.callLater(f.stall_timeout, self._stalled)

    def resumeProducing(self) -> None:
        self.paused = False
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None
        if self._source is not None:
            self._source.resumeProducing()
        if not self.closed:
            self.transport.resumeProducing()
            self._next()

    def stopProducing(self) -> None:
        if self._source is not None:
            self._source.stopProducing()
            self._source = None

    def dataReceived(self, data: bytes) -> None:
        try:
            packets = self.decoder.feed(data)
        except PTPIPError as e:
            self.log.warn("Fuji initiator {peer} sent garbage: {error}", peer=self.transport.getPeer(), error=e)
            self.transport.loseConnection()
            return
        for packet in packets:               # init requests too: answered in their turn
            if not isinstance(packet, (fuji.InitRequest, fuji.Container)):
                self.transport.loseConnection()
                return
            self._queue.append(packet)
        if len(self._queue) > 16:            # libgphoto2 waits for each answer: a flood is no initiator
            self.transport.loseConnection()
            return
        self._next()

    def _init(self, request: fuji.InitRequest) -> None:
        f = self.factory
        if self.commanded:
            self.transport.loseConnection()  # an init request in the middle of a session
            return
        if self.session is None:
            if len([c for c in f.commands if c.session is not None]) >= f.max_sessions:
                self._init_fail(FailReason.BUSY)
                self.transport.loseConnection()
                return
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            info = _Initiator(request.guid, request.host_name, self.transport.getPeer(), self.number)
            self.busy = True
            d = defer.maybeDeferred(f.policy.accept, info) if f.policy is not None else defer.succeed(True)
            d.addBoth(self._admitted, info)
            return
        # libgphoto2 sends its init request twice: each gets its ack.
        self.transport.write(fuji.InitAck(self.number, f.guid, f.friendly_name).encode())

    def _admitted(self, accepted: Any, info: _Initiator) -> None:
        self.busy = False
        if self.closed:
            return
        if accepted is not True:
            if isinstance(accepted, Failure):
                self.log.failure("the initiator policy failed", accepted)
            self.log.info("Fuji initiator {name!r} refused", name=info.friendly_name)
            self._init_fail(FailReason.REJECTED_INITIATOR)
            self.transport.loseConnection()
            return
        self.session = self.factory.device.newSession(info, self.events)
        self.log.info("Fuji initiator {name!r} connected from {peer}", name=info.friendly_name,
                      peer=self.transport.getPeer())
        self.transport.write(fuji.InitAck(self.number, self.factory.guid, self.factory.friendly_name).encode())
        self._next()

    def _next(self) -> None:
        while self._queue and not self.busy and not self.closed and not self.paused:
            c = self._queue.pop(0)
            if isinstance(c, fuji.InitRequest):
                self._init(c)
                continue
            if self._waiting_data is not None:
                request, self._waiting_data = self._waiting_data, None
                if c.kind != fuji.DATA:
                    # Not the data it announced: there is no telling where it is now.
                    self.transport.loseConnection()
                    return
                self._dispatch(request, _IncomingBytes(c.payload))
            elif c.kind != fuji.COMMAND or self.session is None:
                self.transport.loseConnection()
                return
            else:
                try:
                    params = fuji.command_params(c)
                except PTPIPError:
                    self.transport.loseConnection()
                    return
                self.commanded = True
                data_out = c.code in self._data_out()
                request = OperationRequest(data_phase=2 if data_out else 1, code=c.code,
                                           transaction_id=c.transaction_id, params=params)
                if data_out:
                    self._waiting_data = request
                else:
                    self._dispatch(request, None)

    def _data_out(self) -> frozenset[int]:
        extra: frozenset[int] = getattr(getattr(self.session, "vendor", None), "data_out", frozenset())
        return DATA_OUT | extra

    def _dispatch(self, request: OperationRequest, incoming: Any) -> None:
        self.busy = True
        d = defer.maybeDeferred(self.session.handleOperation, request, incoming)
        d.addCallbacks(self._answer, self._failed, callbackArgs=(request,), errbackArgs=(request,))
        d.addErrback(self._broken)

    def _broken(self, failure: Failure) -> None:
        self.log.failure("answering a Fuji initiator failed", failure)
        if self.transport is not None:
            self.transport.abortConnection()     # half an answer: no way back in step

    def _failed(self, failure: Failure, request: OperationRequest) -> None:
        code = getattr(failure.value, "response_code", None)
        if code is None:
            self.log.failure("device failed on {op}", failure, op=code_name(request.code))
            code = ResponseCode.GeneralError
        self._answer(Response(code), request)

    def _answer(self, response: Response, request: OperationRequest) -> None:
        if self.closed:
            if response.data is not None and hasattr(response.data, "stopProducing"):
                response.data.stopProducing()
            return
        op, tid = request.code, request.transaction_id
        source = response.data
        if source is not None and not isinstance(source, (bytes, bytearray, memoryview)):
            source = IDataSource(source)
            length = source.length
            if not isinstance(length, int) or fuji.HEADER.size + length > 0xFFFFFFFF:
                # One container holds at most 4 GiB, and its length comes first.
                source.stopProducing()
                self.log.warn("{op}: an object of {n} bytes does not fit a Fuji container", op=code_name(op), n=length)
                source, response = b"", Response(ResponseCode.GeneralError)
        if source is None and op in DATA_IN:
            source = b""                 # an empty data container, even before an error
        if source is None or isinstance(source, (bytes, bytearray, memoryview)):
            if source is not None:
                self.transport.write(fuji.Container(fuji.DATA, op, tid, bytes(source)).encode())
            self._respond(response, request)
            return
        self.transport.write(fuji.container_header(fuji.DATA, op, tid, source.length))
        self._source = source
        if self.paused:
            source.pauseProducing()
        d = source.startProducing(self.transport)

        def sent(result: Any) -> Any:
            self._source = None
            if self.transport is not None and not self.closed:
                if isinstance(result, Failure):
                    self.log.failure("sending an object failed", result)
                    self.transport.abortConnection()      # the container is short: no way back
                else:
                    self._respond(response, request)
            return None
        d.addBoth(sent)

    def _init_fail(self, reason: FailReason) -> None:
        self.transport.write(fuji.InitFail(reason).encode())
        self.factory.metrics.init_fail(self.factory.friendly_name, reason)

    def _respond(self, response: Response, request: OperationRequest) -> None:
        params = tuple(p & 0xFFFFFFFF for p in response.params)[:5]
        self.transport.write(fuji.Container(fuji.RESPONSE, response.code, request.transaction_id,
                                            params=params).encode())
        self.factory.metrics.transaction(self.factory.friendly_name, request.code, response.code)
        self.busy = False
        if request.code == Op.InitiateOpenCapture and response.code == ResponseCode.OK:
            self.open_capture = True
        if request.code == Op.CloseSession:
            # The session is over: libgphoto2 closes its sockets now, and so do we.
            self.events.closed = True
            self.transport.loseConnection()
            return
        self._next()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        self.events.closed = True
        for timer in (self._timer, self._stall):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = self._stall = None
        if self._source is not None:
            self._source.stopProducing()
            self._source = None
        if self in self.factory.commands:
            self.factory.commands.remove(self)
        if self.session is not None:
            self.session.connectionLost(reason)
            self.session = None
        for channel in (self.events.channel, self.liveview):
            if channel is not None and channel.transport is not None:
                channel.transport.loseConnection()


def _owner(factory: FujiResponderFactory, transport: Any, *, kind: str) -> FujiCommandProtocol | None:
    """The command channel a new event or live view connection belongs to: from the same
    address, with a session, past InitiateOpenCapture (libgphoto2 connects both only then);
    the newest such channel without one of its kind."""
    host = transport.getPeer().host
    for c in reversed(factory.commands):
        if c.host == host and c.session is not None and c.open_capture:
            current = c.events.channel if kind == "event" else c.liveview
            if current is None:
                return c
    return None


@implementer(IPushProducer)
class FujiEventProtocol(protocol.Protocol):
    """The event channel of one command channel; events are dropped while its peer does not read."""

    transport: Any

    def __init__(self, factory: FujiResponderFactory) -> None:
        self.factory = factory
        self.command: FujiCommandProtocol | None = None
        self.paused = False

    def connectionMade(self) -> None:
        self.command = _owner(self.factory, self.transport, kind="event")
        if self.command is None:
            self.transport.loseConnection()  # no initiator of ours is waiting for it
            return
        self.transport.registerProducer(self, True)
        self.command.events.attach(self)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True

    def dataReceived(self, data: bytes) -> None:
        pass                             # libgphoto2 never writes here

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.command is not None and self.command.events.channel is self:
            self.command.events.channel = None


@implementer(IPushProducer)
class FujiLiveViewProtocol(protocol.Protocol):
    """The live view channel of one command channel: frames as ``u32 length, 14-byte
    header, JPEG`` blobs, :data:`LIVE_VIEW_RATE` a second while the peer reads them (libgphoto2 reads one
    per preview); closed with its command channel."""

    transport: Any

    def __init__(self, factory: FujiResponderFactory) -> None:
        self.factory = factory
        self.command: FujiCommandProtocol | None = None
        self.paused = False
        self._next: Any = None
        self._busy = False

    def connectionMade(self) -> None:
        self.command = _owner(self.factory, self.transport, kind="liveview")
        if self.command is None:
            self.transport.loseConnection()
            return
        self.command.liveview = self
        # Frames wait in socket buffers until the peer reads one (libgphoto2 reads one per
        # preview): a small send buffer keeps the frame it reads next a recent one.
        with contextlib.suppress(AttributeError, OSError):
            self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LIVE_VIEW_SNDBUF)
        self.transport.registerProducer(self, True)
        self._send()

    def _send(self) -> None:
        self._next = None
        source = getattr(self.factory.device, "live_view", None)
        if source is None or self.paused or self._busy or self.transport is None or self.command is None:
            return
        self._busy = True
        d = defer.maybeDeferred(source.frame)
        d.addCallback(self._frame)
        d.addErrback(lambda f: self.log.failure("a live view frame failed", f))
        d.addBoth(self._sent)

    def _frame(self, jpeg: bytes) -> None:
        if self.transport is not None and self.command is not None:
            self.transport.write(struct.pack("<I", 4 + LIVE_VIEW_HEADER + len(jpeg)) + bytes(LIVE_VIEW_HEADER) + jpeg)

    def _sent(self, _: Any) -> None:
        self._busy = False
        if self.command is not None and not self.paused:
            self._next = self.factory.reactor.callLater(1 / LIVE_VIEW_RATE, self._send)

    log = Logger()

    def pauseProducing(self) -> None:
        self.paused = True
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None

    def resumeProducing(self) -> None:
        self.paused = False
        if self._next is None and not self._busy:
            self._send()

    def stopProducing(self) -> None:
        self.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.pauseProducing()
        if self.command is not None and self.command.liveview is self:
            self.command.liveview = None
        self.command = None


class _Sub(protocol.Factory):
    def __init__(self, parent: FujiResponderFactory, kind: type[protocol.Protocol]) -> None:
        self.parent = parent
        self.kind = kind

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        return self.kind(self.parent)  # type: ignore[call-arg]


class FujiResponderFactory:
    """A Fuji X camera's three listening sockets: :attr:`command` (P), :attr:`event`
    (P+1) and :attr:`liveview` (P+2) are the factories to listen with."""

    def __init__(self, device: Any, *, guid: bytes, friendly_name: str = "X-T4", max_sessions: int = 4,
                 max_packet: int = 1 << 16, max_pending: int = 16, max_per_address: int = 8,
                 init_timeout: float = 10.0, stall_timeout: float = 60.0, policy: Any = None,
                 reactor: Any = None, metrics: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.reactor = reactor
        from .metrics import PTPIPMetrics
        self.metrics = metrics if metrics is not None else PTPIPMetrics()
        self.metrics.add(self)
        self.max_pending = max_pending
        self.max_per_address = max_per_address
        #: An :class:`~ptpip.interfaces.IInitiatorPolicy` (device bonding), or None to accept all.
        self.policy = policy
        self.init_timeout = init_timeout
        self.stall_timeout = stall_timeout
        self.device = device
        self.guid = guid
        self.friendly_name = friendly_name
        self.max_sessions = max_sessions
        self.max_packet = max_packet
        self.numbers = itertools.count(1)
        self.commands: list[FujiCommandProtocol] = []
        self.command = _Sub(self, FujiCommandProtocol)
        self.event = _Sub(self, FujiEventProtocol)
        self.liveview = _Sub(self, FujiLiveViewProtocol)

    @property
    def connections(self) -> list[FujiCommandProtocol]:
        return list(self.commands)


__all__ = ["DATA_IN", "DATA_OUT", "FujiResponderFactory"]
