"""The responder side of Fuji's PTP/IP variant: a Fujifilm X camera on three ports.

:class:`FujiResponderFactory` serves an :class:`~ptpip.interfaces.IResponderDevice`
(normally a camera with the ``fuji`` profile) the way a Fuji X camera does over Wi-Fi:
commands on port P (55740), events on P+1 (55741, no handshake: the first connection
from the initiator's address is its event channel), live view on P+2 (accepted and kept
open; nothing is streamed yet). The framing is :mod:`ptpip.wire.fuji`: each init
request answered with an ack, then one transaction at a time, each data phase one data
container, and a data container before every answer of a data-in operation, even an
error (libgphoto2 would otherwise read the response as the data and wait 2.5 s).
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet import defer, protocol
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
    """Events for one initiator: on its event channel once it has connected."""

    def __init__(self) -> None:
        self.channel: FujiEventProtocol | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def sendEvent(self, code: int, params: tuple[int, ...] = (), transaction_id: int = 0xFFFFFFFF) -> None:
        if self.closed:
            return
        packet = fuji.Container(fuji.EVENT, code, transaction_id, params=tuple(params)[:4]).encode()
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.write(packet)
        elif len(self.pending) < MAX_PENDING_EVENTS:
            self.pending.append(packet)

    def attach(self, channel: FujiEventProtocol) -> None:
        self.channel = channel
        for packet in self.pending:
            channel.transport.write(packet)
        self.pending.clear()


class FujiCommandProtocol(protocol.Protocol):
    """The command channel of one initiator."""

    log = Logger()
    transport: Any

    def __init__(self, factory: FujiResponderFactory) -> None:
        self.factory = factory
        self.decoder = fuji.FujiDecoder(max_packet=factory.max_packet)
        self.session: Any = None
        self.events = _Events()
        self.number = 0
        self.busy = False
        self._waiting_data: OperationRequest | None = None
        self._queue: list[fuji.Container] = []
        self.closed = False
        self._timer: Any = None

    def connectionMade(self) -> None:
        f = self.factory
        self.number = next(f.numbers)
        if len(f.commands) >= f.max_sessions + f.max_pending:
            # Sockets that never send their init request must not lock the camera up.
            self.transport.write(fuji.InitFail(FailReason.BUSY).encode())
            self.transport.loseConnection()
            self.closed = True
            return
        f.commands.append(self)
        self._timer = f.reactor.callLater(f.init_timeout, self._initTimedOut)

    def _initTimedOut(self) -> None:
        self._timer = None
        if self.session is None and self.transport is not None:
            self.log.info("Fuji initiator {peer} sent no init request in time", peer=self.transport.getPeer())
            self.transport.abortConnection()

    def _stalled(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.log.warn("Fuji initiator {peer} stopped reading: closed", peer=self.transport.getPeer())
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        try:
            packets = self.decoder.feed(data)
        except PTPIPError as e:
            self.log.warn("Fuji initiator {peer} sent garbage: {error}", peer=self.transport.getPeer(), error=e)
            self.transport.loseConnection()
            return
        for packet in packets:
            if isinstance(packet, fuji.InitRequest):
                self._init(packet)
            elif isinstance(packet, fuji.Container):
                self._queue.append(packet)
            else:
                self.transport.loseConnection()
                return
        if len(self._queue) > 16:        # libgphoto2 waits for each answer: a flood is no initiator
            self.transport.loseConnection()
            return
        self._next()

    def _init(self, request: fuji.InitRequest) -> None:
        f = self.factory
        if self.session is None:
            if len([c for c in f.commands if c.session is not None]) >= f.max_sessions:
                self.transport.write(fuji.InitFail(FailReason.BUSY).encode())
                self.transport.loseConnection()
                return
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            info = _Initiator(request.guid, request.host_name, self.transport.getPeer(), self.number)
            self.session = f.device.newSession(info, self.events)
            self.log.info("Fuji initiator {name!r} connected from {peer}", name=request.host_name,
                          peer=self.transport.getPeer())
        # libgphoto2 sends its init request twice: each gets its ack.
        self.transport.write(fuji.InitAck(self.number, f.guid, f.friendly_name).encode())

    def _next(self) -> None:
        while self._queue and not self.busy and not self.closed:
            c = self._queue.pop(0)
            if self._waiting_data is not None:
                request, self._waiting_data = self._waiting_data, None
                if c.kind != fuji.DATA:
                    self._answer(Response(ResponseCode.IncompleteTransfer), request)
                    continue
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
                request = OperationRequest(data_phase=2 if c.code in self._data_out() else 1, code=c.code,
                                           transaction_id=c.transaction_id, params=params)
                if c.code in self._data_out():
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
        d.addErrback(lambda f: self.log.failure("answering a Fuji initiator failed", f))

    def _failed(self, failure: Failure, request: OperationRequest) -> None:
        code = getattr(failure.value, "response_code", None)
        if code is None:
            self.log.failure("device failed on {op}", failure, op=code_name(request.code))
            code = ResponseCode.GeneralError
        self._answer(Response(code), request)

    def _answer(self, response: Response, request: OperationRequest) -> None:
        if self.closed:
            return
        op, tid = request.code, request.transaction_id
        source = response.data
        if source is None and op in DATA_IN:
            source = b""                 # an empty data container, even before an error
        if source is None or isinstance(source, (bytes, bytearray, memoryview)):
            if source is not None:
                self.transport.write(fuji.Container(fuji.DATA, op, tid, bytes(source)).encode())
            self._respond(response, request)
            return
        source = IDataSource(source)
        self.transport.write(fuji.container_header(fuji.DATA, op, tid, source.length))
        watched = _Watched(self, source)
        self.transport.registerProducer(watched, True)
        d = source.startProducing(self.transport)

        def sent(result: Any) -> Any:
            watched.done()
            if self.transport is not None and not self.closed:
                self.transport.unregisterProducer()
                if isinstance(result, Failure):
                    self.log.failure("sending an object failed", result)
                    self.transport.loseConnection()       # the container is short: no way back
                else:
                    self._respond(response, request)
            return None
        d.addBoth(sent)

    def _respond(self, response: Response, request: OperationRequest) -> None:
        self.transport.write(fuji.Container(fuji.RESPONSE, response.code, request.transaction_id,
                                            params=tuple(response.params)).encode())
        self.busy = False
        if request.code == Op.CloseSession:
            self.events.closed = True
        self._next()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        self.events.closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self in self.factory.commands:
            self.factory.commands.remove(self)
        if self.session is not None:
            self.session.connectionLost(reason)
            self.session = None
        channel = self.events.channel
        if channel is not None and channel.transport is not None:
            channel.transport.loseConnection()


class _Watched:
    """A data source as the transport's producer: paused longer than the stall timeout
    (the initiator stopped reading), the connection is closed."""

    def __init__(self, owner: FujiCommandProtocol, source: Any) -> None:
        self.owner = owner
        self.source = source
        self.timer: Any = None

    def pauseProducing(self) -> None:
        self.source.pauseProducing()
        f = self.owner.factory
        if self.timer is None and f.stall_timeout:
            self.timer = f.reactor.callLater(f.stall_timeout, self.owner._stalled)

    def resumeProducing(self) -> None:
        self.done()
        self.source.resumeProducing()

    def stopProducing(self) -> None:
        self.done()
        self.source.stopProducing()

    def done(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class FujiEventProtocol(protocol.Protocol):
    """The event channel: the oldest command channel from the same address without one."""

    transport: Any

    def __init__(self, factory: FujiResponderFactory) -> None:
        self.factory = factory
        self.command: FujiCommandProtocol | None = None

    def connectionMade(self) -> None:
        host = self.transport.getPeer().host
        for c in self.factory.commands:
            if c.events.channel is None and c.transport.getPeer().host == host:
                self.command = c
                c.events.attach(self)
                return
        self.transport.loseConnection()  # no initiator of ours there

    def dataReceived(self, data: bytes) -> None:
        pass                             # libgphoto2 never writes here

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self.command is not None and self.command.events.channel is self:
            self.command.events.channel = None


class FujiLiveViewProtocol(protocol.Protocol):
    """The live view channel: kept open and silent until live view is emulated."""

    def dataReceived(self, data: bytes) -> None:
        pass


class _Sub(protocol.Factory):
    def __init__(self, parent: FujiResponderFactory, kind: type[protocol.Protocol]) -> None:
        self.parent = parent
        self.kind = kind

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        if self.kind is FujiLiveViewProtocol:
            p: protocol.Protocol = FujiLiveViewProtocol()
        else:
            p = self.kind(self.parent)  # type: ignore[call-arg]
        return p


class FujiResponderFactory:
    """A Fuji X camera's three listening sockets: :attr:`command` (P), :attr:`event`
    (P+1) and :attr:`liveview` (P+2) are the factories to listen with."""

    def __init__(self, device: Any, *, guid: bytes, friendly_name: str = "X-T4", max_sessions: int = 4,
                 max_packet: int = 1 << 16, max_pending: int = 16, init_timeout: float = 10.0,
                 stall_timeout: float = 60.0, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.reactor = reactor
        self.max_pending = max_pending
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
