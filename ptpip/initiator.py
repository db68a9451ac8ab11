"""The PTP-IP initiator (the client): connect, run transactions, receive events.

>>> session = yield connect(reactor, "192.0.2.10")          # doctest: +SKIP
>>> result = yield session.request(OperationCode.GetDeviceInfo)
>>> DeviceInfo.decode(result.data)

:func:`connect` opens the command/data channel, sends Init Command Request,
opens the event channel with the connection number from the ack, and fires
with an :class:`InitiatorSession` once Init Event Ack arrives (spec 2.2.3.1),
or fails with :class:`~ptpip.wire.errors.InitFailed` carrying the responder's reason.
"""

from __future__ import annotations

import socket
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IConsumer, IProducer, IPushProducer, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from . import sockets
from .interfaces import IDataSource
from .streams import BytesConsumer, BytesSource
from .wire.constants import (
    DEFAULT_PORT,
    PROTOCOL_VERSION,
    ResponseCode,
    version_major,
)
from .wire.errors import (
    ConnectionClosed,
    InitFailed,
    LocalProtocolError,
    ProtocolError,
    PTPIPError,
    PTPResponseError,
    TransactionCancelled,
    UnexpectedPacket,
    VersionMismatch,
)
from .wire.framing import DEFAULT_MAX_PACKET_SIZE, NEED_DATA, PacketParser
from .wire.packets import (
    Cancel,
    Data,
    EndData,
    Event,
    InitCommandAck,
    InitCommandRequest,
    InitEventAck,
    InitEventRequest,
    InitFail,
    OperationResponse,
    Packet,
    ProbeRequest,
    ProbeResponse,
    StartData,
)
from .wire.transaction import DataPiece, DataStarted, Role, TransactionEnded, Transactions

__all__ = ["DEFAULT_GUID", "InitiatorSession", "OperationResult", "connect", "connectEndpoints"]

#: Data-out packets are at most this big (libgphoto2 uses 64 KiB; larger is faster).
DATA_PACKET_SIZE = 1 << 20

DEFAULT_GUID = uuid.uuid5(uuid.NAMESPACE_DNS, socket.gethostname()).bytes


@dataclass(frozen=True)
class OperationResult:
    """The outcome of one transaction."""

    code: int
    params: tuple[int, ...]
    transaction_id: int
    #: Data-in as bytes when no consumer was given, else None.
    data: bytes | None = None
    #: Number of data-in bytes received.
    received: int = 0

    @property
    def ok(self) -> bool:
        return self.code == ResponseCode.OK

    def check(self, operation: int | None = None) -> OperationResult:
        """Return self if OK, else raise :class:`~ptpip.wire.errors.PTPResponseError`."""
        if self.code == ResponseCode.TransactionCancelled:
            raise TransactionCancelled(f"transaction {self.transaction_id} was cancelled")
        if not self.ok:
            raise PTPResponseError(self.code, self, operation)
        return self


class _Channel(protocol.Protocol):
    """One TCP connection of an initiator; packets go to its owner."""

    # Set by makeConnection: a tcp.Connection, which is an ITCPTransport, IConsumer and
    # IPushProducer at once (and whose internals the sendfile paths use).
    transport: Any

    log = Logger()

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self._parser = PacketParser(max_packet_size)
        self.owner: Any = None
        self.closed = False
        self.whenClosed: defer.Deferred[None] = defer.Deferred()
        self._paused = False
        self._draining = False
        self.init: defer.Deferred[Packet] = defer.Deferred()

    def connectionMade(self) -> None:
        sockets.tune(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self._parser.receive_data(data)
        self.drain()

    def drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while not self._paused and not self.closed:
                try:
                    packet = self._parser.next_event()
                    if packet is NEED_DATA:
                        return
                    self.packetReceived(packet)  # type: ignore[arg-type]
                except ProtocolError as e:
                    self.log.warn("closing PTP-IP connection to {peer}: {error}",
                                  peer=self.transport.getPeer(), error=e)
                    self.fail(e)
                    return
        finally:
            self._draining = False

    def packetReceived(self, packet: Packet) -> None:
        if self.owner is None:
            # Hold what follows the ack until the session owns this channel.
            self.pause()
            if not self.init.called:
                self.init.callback(packet)
            return
        self.owner.packetReceived(self, packet)

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            if not self.closed:
                self.transport.pauseProducing()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if not self.closed:
                self.transport.resumeProducing()
            self.drain()

    def sendPacket(self, packet: Packet) -> None:
        if not self.closed:
            sockets.write_now(self.transport, [packet.encode()])

    def fail(self, error: Exception) -> None:
        if not self.init.called:
            self.init.errback(error)
        if self.owner is not None:
            self.owner.channelFailed(self, error)
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        if not self.init.called:
            self.init.errback(ConnectionClosed(f"connection closed during establishment: {reason.value}"))
        if self.owner is not None:
            self.owner.channelLost(self, reason)
        self.whenClosed.callback(None)


@implementer(IConsumer)
class _DataOutWriter:
    """Frames what a data source writes as Data packets on the command channel."""

    def __init__(self, channel: _Channel, transactions: Transactions, length: int | None,
                 packet_size: int) -> None:
        self.channel = channel
        self.tx = transactions
        self.length = length
        self.sent = 0
        self.packet_size = packet_size
        self.stopped = False

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.channel.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.channel.transport.unregisterProducer()

    def write(self, data: bytes) -> None:
        if self.stopped or self.channel.closed:
            return
        data = bytes(data) if not isinstance(data, bytes) else data
        if self.length is not None and self.sent + len(data) > self.length:
            self.stopped = True           # more than announced: _dataSent cancels
            self.sent += len(data)
            return
        step = self.packet_size
        # Slicing copies, so only an oversized write is cut into packets.
        pieces = [data] if len(data) <= step else [data[i:i + step] for i in range(0, len(data), step)]
        for piece in pieces:
            self.channel.transport.writeSequence([self.tx.data_header(len(piece)), piece])
        self.sent += len(data)


@implementer(IPushProducer)
class _Transaction:
    """One request from queueing to its response."""

    def __init__(self, session: InitiatorSession, code: int, params: tuple[int, ...],
                 data: Any, into: IConsumer | None, deferred: defer.Deferred[OperationResult]) -> None:
        self.session = session
        self.code = code
        self.params = params
        self.source: IDataSource | None = None
        if data is not None:
            if isinstance(data, (bytes, bytearray, memoryview)):
                data = BytesSource(bytes(data))
            self.source = IDataSource(data)
        self.collect = into is None
        self.into: IConsumer = into if into is not None else BytesConsumer()
        self.deferred = deferred
        self.tid = 0
        self.data_in = False              # a data-in phase began
        self.writer: _DataOutWriter | None = None
        self.cancelled = False

    # The consumer of data-in may pause us: we stop reading the command channel.
    def pauseProducing(self) -> None:
        self.session._command.pause()

    def resumeProducing(self) -> None:
        self.session._command.resume()

    def stopProducing(self) -> None:
        self.session.cancel()


class InitiatorSession:
    """An established PTP-IP connection seen from the initiator.

    Requests run one at a time in the order they were made; each gets the next
    transaction id (0 for GetDeviceInfo and OpenSession outside a session, as
    PTP requires, then 1, 2, …).
    """

    log = Logger()

    def __init__(self, command: _Channel, event: _Channel, ack: InitCommandAck, guid: bytes,
                 friendly_name: str, data_packet_size: int = DATA_PACKET_SIZE, *,
                 reactor: Any = None, probe_interval: float | None = None,
                 probe_timeout: float = 10.0) -> None:
        self._command = command
        self._event = event
        command.owner = event.owner = self
        self.connection_number = ack.connection_number
        self.responder_guid = ack.guid
        self.responder_name = ack.friendly_name
        self.version = ack.version
        self.guid = guid
        self.friendly_name = friendly_name
        self.data_packet_size = data_packet_size
        #: The transaction machine: phases, transaction ids, what is legal when.
        self.transactions = Transactions(Role.INITIATOR)
        self._queue: deque[_Transaction] = deque()
        self._current: _Transaction | None = None
        self._subscribers: list[Callable[[Event], Any]] = []
        self.closed = False
        self.whenClosed: defer.Deferred[None] = defer.DeferredList(
            [command.whenClosed, event.whenClosed]).addCallback(lambda _: None)
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.reactor = reactor
        #: Probe the responder when a transaction has heard nothing for this long (None: never).
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self._last_rx = reactor.seconds()
        self._probe_check: Any = None
        self._probe_wait: Any = None

    # -- probing during long transactions (spec 2.3.13) ------------------------------
    def _armProbe(self) -> None:
        if self.probe_interval is None or self.closed or self._probe_wait is not None:
            return
        if self._probe_check is not None and self._probe_check.active():
            return
        if self._current is None:
            return
        due = max(0.0, self._last_rx + self.probe_interval - self.reactor.seconds())
        self._probe_check = self.reactor.callLater(due, self._maybeProbe)

    def _maybeProbe(self) -> None:
        self._probe_check = None
        if self.closed or self._current is None:
            return
        if self.probe_interval is not None and self.reactor.seconds() - self._last_rx < self.probe_interval:
            self._armProbe()
            return
        self._event.sendPacket(ProbeRequest())
        self._probe_wait = self.reactor.callLater(self.probe_timeout, self._probeExpired)

    def _probeExpired(self) -> None:
        self._probe_wait = None
        self.log.warn("the responder did not answer a Probe Request within {t} s; closing", t=self.probe_timeout)
        self._shutdown(ConnectionClosed(
            f"the responder did not answer a Probe Request within {self.probe_timeout:g} s"))

    def _heard(self) -> None:
        if self.probe_interval is not None:           # only probing looks at it
            self._last_rx = self.reactor.seconds()

    @property
    def session_open(self) -> bool:
        """Whether a PTP session is open (OpenSession answered OK)."""
        return self.transactions.session_open

    # -- public API -----------------------------------------------------------
    def request(self, code: int, *params: int, data: Any = None,
                into: IConsumer | None = None) -> defer.Deferred[OperationResult]:
        """Run one transaction.

        :param data: data-out: bytes or an :class:`~ptpip.interfaces.IDataSource`.
        :param into: an ``IConsumer`` that receives data-in as it arrives; when
            omitted, data-in is gathered into ``OperationResult.data``.
        :return: a Deferred firing with an :class:`OperationResult` whatever its
            code; cancelling the Deferred cancels the transaction (spec 2.7.1).
        """
        if self.closed:
            return defer.fail(ConnectionClosed("the PTP-IP session is closed"))
        if len(params) > 5:
            return defer.fail(LocalProtocolError("at most 5 parameters"))
        d: defer.Deferred[OperationResult] = defer.Deferred(self._cancelDeferred)
        t = _Transaction(self, code, tuple(params), data, into, d)
        self._queue.append(t)
        self._next()
        return d

    def cancel(self) -> None:
        """Cancel the transaction in progress: Cancel on both channels (spec 2.7.1)."""
        t = self._current
        if t is None or t.cancelled:
            return
        packet = self.transactions.cancel()
        if packet is None:
            return
        t.cancelled = True
        if t.writer is not None:
            t.writer.stopped = True
        if t.source is not None:
            t.source.stopProducing()
        self._command.sendPacket(packet)
        self._event.sendPacket(packet)

    def cancelAsync(self, transaction_id: int) -> None:
        """Cancel an asynchronous operation such as InitiateCapture (spec 2.7.3)."""
        self._command.sendPacket(Cancel(transaction_id))
        self._event.sendPacket(Cancel(transaction_id))

    def subscribe(self, callback: Callable[[Event], Any]) -> Callable[[], None]:
        """Call *callback* with every :class:`~ptpip.wire.packets.Event`; returns an unsubscriber."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def close(self) -> defer.Deferred[None]:
        """Close both channels (spec 2.2.3.3); fires when both are closed."""
        self._shutdown(ConnectionClosed("the session was closed"))
        return self.whenClosed

    # -- transactions ---------------------------------------------------------
    def _cancelDeferred(self, d: defer.Deferred[OperationResult]) -> None:
        if self._current is not None and self._current.deferred is d:
            # Cancel on both channels; the caller hears at once, while the session
            # waits for the responder's answer before it runs the next request.
            self.cancel()
            d.errback(TransactionCancelled(f"transaction {self._current.tid} cancelled"))
            return
        for t in list(self._queue):
            if t.deferred is d:
                self._queue.remove(t)
                d.errback(TransactionCancelled("cancelled before it was sent"))

    def _next(self) -> None:
        if self._current is not None or not self._queue or self.closed:
            return
        t = self._current = self._queue.popleft()
        request = self.transactions.request(t.code, t.params, data_out=t.source is not None)
        t.tid = request.transaction_id
        self._command.sendPacket(request)
        self._heard()
        self._armProbe()
        if t.into is not None and not t.collect:
            t.into.registerProducer(t, True)
        if t.source is not None:
            self._sendData(t)

    def _sendData(self, t: _Transaction) -> None:
        assert t.source is not None
        length = t.source.length
        self._command.sendPacket(self.transactions.start_data(length))
        if length == 0:
            self._command.transport.write(self.transactions.data_header(0, last=True))
            return
        writer = t.writer = _DataOutWriter(self._command, self.transactions, length, self.data_packet_size)
        writer.registerProducer(t.source, True)
        d = defer.maybeDeferred(t.source.startProducing, writer)
        d.addBoth(self._dataSent, t, writer)
        d.addErrback(lambda f: self._shutdown(ConnectionClosed(f"data-out failed: {f.value}")))

    def _dataSent(self, result: Any, t: _Transaction, writer: _DataOutWriter) -> None:
        if not self._command.closed:
            writer.unregisterProducer()
        if writer.stopped or t.cancelled or self._current is not t:
            return
        if isinstance(result, Failure):
            self.log.failure("data-out source failed; cancelling transaction {tid}", result, tid=t.tid)
            self.cancel()
            return
        if t.source is not None and t.source.length is not None and writer.sent != t.source.length:
            self.log.error("data-out source wrote {sent} bytes, announced {length}; cancelling",
                           sent=writer.sent, length=t.source.length)
            self.cancel()
            return
        self._command.transport.write(self.transactions.data_header(0, last=True))

    def packetReceived(self, channel: _Channel, packet: Packet) -> None:
        if self.closed:
            return                      # a closed session reads nothing more
        self._heard()
        kind = type(packet)
        if channel is self._command and (kind is EndData or kind is StartData or kind is OperationResponse
                                         or kind is Data):
            self._transactionPacket(packet)          # the common case, first
            return
        if isinstance(packet, ProbeResponse) and self._probe_wait is not None:
            if self._probe_wait.active():
                self._probe_wait.cancel()
            self._probe_wait = None
            self._armProbe()
            return
        if channel is self._event:
            if isinstance(packet, Event):
                for callback in list(self._subscribers):
                    try:
                        callback(packet)
                    except Exception:
                        self.log.failure("event subscriber failed")
            elif isinstance(packet, ProbeRequest):
                self._event.sendPacket(ProbeResponse())
            elif isinstance(packet, ProbeResponse):
                pass
            else:
                raise UnexpectedPacket(f"{type(packet).__name__} on the event channel")
            return
        if isinstance(packet, ProbeRequest):
            self._command.sendPacket(ProbeResponse())
            return
        if isinstance(packet, ProbeResponse):
            return
        self._transactionPacket(packet)

    def _transactionPacket(self, packet: Packet) -> None:
        t = self._current
        for e in self.transactions.receive(packet):
            if isinstance(e, DataPiece):
                if t is not None and not t.cancelled:
                    t.into.write(e.payload)
            elif isinstance(e, DataStarted):
                if t is not None:
                    t.data_in = True
            elif isinstance(e, TransactionEnded) and t is not None:
                self._finish(t, e)

    def _finish(self, t: _Transaction, ended: TransactionEnded) -> None:
        self._current = None
        if t.writer is not None:
            t.writer.stopped = True          # responder-generated cancel (5.6.2 case 1)
            if t.source is not None and ended.data_out_cut:
                t.source.stopProducing()
        if not t.collect:
            t.into.unregisterProducer()
        code = ended.response.code
        if t.deferred.called:
            pass                              # already failed by Deferred.cancel()
        elif t.cancelled or code == ResponseCode.TransactionCancelled:
            t.deferred.errback(TransactionCancelled(f"transaction {t.tid} was cancelled"))
        elif code == ResponseCode.OK and t.data_in and not ended.complete:
            t.deferred.errback(PTPResponseError(ResponseCode.IncompleteTransfer, None, t.code))
        else:
            # A data-in cut short by the responder is discarded (5.6.2 case 2).
            data = t.into.value() if t.collect and t.data_in and ended.complete else None  # type: ignore[attr-defined]
            t.deferred.callback(OperationResult(code, ended.response.params, t.tid, data, ended.transferred))
        self._next()

    # -- the end ----------------------------------------------------------------
    def channelFailed(self, channel: _Channel, error: Exception) -> None:
        self._shutdown(error)

    def channelLost(self, channel: _Channel, reason: Failure) -> None:
        self._shutdown(ConnectionClosed(f"the responder closed the connection: {reason.value}"))

    def _shutdown(self, error: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        for timer in (self._probe_check, self._probe_wait):
            if timer is not None and timer.active():
                timer.cancel()
        self._probe_check = self._probe_wait = None
        pending = ([self._current] if self._current else []) + list(self._queue)
        self._current = None
        self._queue.clear()
        for t in pending:
            if t.source is not None:
                t.source.stopProducing()
            if not t.deferred.called:
                t.deferred.errback(error if isinstance(error, PTPIPError) else ConnectionClosed(str(error)))
        for ch in (self._command, self._event):
            if not ch.closed:
                ch.transport.loseConnection()


class _ChannelFactory(protocol.Factory):
    def __init__(self, max_packet_size: int) -> None:
        self.max_packet_size = max_packet_size

    def buildProtocol(self, addr: Any) -> _Channel:
        p = _Channel(self.max_packet_size)
        p.factory = self
        return p


@defer.inlineCallbacks
def connectEndpoints(command_endpoint: IStreamClientEndpoint, event_endpoint: IStreamClientEndpoint,
                     guid: bytes = DEFAULT_GUID, friendly_name: str = "ptpip initiator",
                     version: int = PROTOCOL_VERSION, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
                     data_packet_size: int = DATA_PACKET_SIZE, reactor: Any = None,
                     probe_interval: float | None = None, probe_timeout: float = 10.0) -> Any:
    """Establish a PTP-IP connection over two endpoints (spec 2.2.3.1)."""
    request = InitCommandRequest(guid, friendly_name, version)    # validates before connecting
    factory = _ChannelFactory(max_packet_size)
    command: _Channel = yield command_endpoint.connect(factory)
    try:
        command.sendPacket(request)
        ack = yield command.init
        if isinstance(ack, InitFail):
            raise InitFailed(ack.reason)
        if not isinstance(ack, InitCommandAck):
            raise UnexpectedPacket(f"{type(ack).__name__} in answer to Init Command Request")
        if version_major(ack.version) != version_major(version):
            raise VersionMismatch(f"responder speaks version 0x{ack.version:08X}")
        event: _Channel = yield event_endpoint.connect(factory)
        try:
            event.sendPacket(InitEventRequest(ack.connection_number))
            answer = yield event.init
            if isinstance(answer, InitFail):
                raise InitFailed(answer.reason)
            if not isinstance(answer, InitEventAck):
                raise UnexpectedPacket(f"{type(answer).__name__} in answer to Init Event Request")
        except BaseException:
            event.transport.loseConnection()
            raise
    except BaseException:
        command.transport.loseConnection()
        raise
    session = InitiatorSession(command, event, ack, guid, friendly_name, data_packet_size, reactor=reactor,
                               probe_interval=probe_interval, probe_timeout=probe_timeout)
    # Packets that arrived right behind the acks are now the session's.
    command.resume()
    event.resume()
    return session


def connect(reactor: Any, host: str, port: int = DEFAULT_PORT, *, event_port: int | None = None,
            timeout: float = 30.0, **kwargs: Any) -> defer.Deferred[InitiatorSession]:
    """Connect to a responder at *host*:*port* (the event channel to *event_port*, default the same).

    Fails with :class:`~ptpip.wire.errors.InitFailed` (with the reason) when refused,
    or with a ``TimeoutError`` after *timeout* seconds (spec 2.2.3.1: 30 s).
    """
    cmd = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    evt = TCP4ClientEndpoint(reactor, host, event_port or port, timeout=timeout)
    d = connectEndpoints(cmd, evt, reactor=reactor, **kwargs)
    d.addTimeout(timeout, reactor)
    return d
