"""The PTP-IP responder (the camera side): one port, both channels, many sessions.

:class:`ResponderFactory` listens on one port (default 15740) and admits
initiators. Each TCP connection is a :class:`ResponderProtocol` whose first
packet says what it is: an Init Command Request opens a command/data channel, an
Init Event Request joins the event channel to it by connection number (spec
2.2.3.1). Once both are there, a :class:`ResponderSession` drives the
connection's :class:`~ptpip.wire.transaction.Transactions` machine with the
packets that arrive and answers with an
:class:`~ptpip.interfaces.IResponderSession` obtained from the device. The data
phases themselves are :mod:`ptpip.dataphase` and :mod:`ptpip.sendfile`.
"""

from __future__ import annotations

import enum
import secrets
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .dataphase import DataIn, DataInStopped, IncomingData, WriteWatch
from .interfaces import (
    IDataSource,
    IEventSink,
    IInitiatorInfo,
    IInitiatorPolicy,
    IResponderDevice,
    IResponderSession,
    Response,
)
from .streams import BytesSource
from .wire.constants import (
    DEFAULT_PORT,
    NO_TRANSACTION,
    PROTOCOL_VERSION,
    FailReason,
    ResponseCode,
    code_name,
    version_major,
)
from .wire.errors import (
    ConnectionClosed,
    FramingError,
    OperationError,
    ProtocolError,
    RemoteProtocolError,
    TransactionCancelled,
    UnexpectedPacket,
)
from .wire.framing import DEFAULT_MAX_PACKET_SIZE, NEED_DATA, PacketParser
from .wire.packets import (
    Cancel,
    Event,
    InitCommandAck,
    InitCommandRequest,
    InitEventAck,
    InitEventRequest,
    InitFail,
    OperationRequest,
    Packet,
    ProbeRequest,
    ProbeResponse,
)
from .wire.transaction import (
    AsyncCancel,
    CancelRequested,
    Channel,
    DataEnded,
    DataOverrun,
    DataPiece,
    DataStarted,
    OperationStarted,
    Phase,
    Role,
    Send,
    TransactionEnded,
    TransactionEvent,
    Transactions,
)

__all__ = [
    "DEFAULT_PORT",
    "InitiatorInfo",
    "OperationError",
    "ResponderFactory",
    "ResponderProtocol",
    "ResponderSession",
    "Response",
]

#: Largest Data packet we send; larger writes are split.
DATA_PACKET_SIZE = 1 << 20


@implementer(IInitiatorInfo)
@dataclass
class InitiatorInfo:
    guid: bytes
    friendly_name: str
    version: int
    address: IAddress | None
    connection_number: int = 0


class _Role(enum.Enum):
    NEW = "new"
    COMMAND = "command"       # Init Command Ack sent, waiting for the event channel
    EVENT = "event"
    CLOSED = "closed"


class ResponderProtocol(protocol.Protocol):
    """One TCP connection of a PTP-IP responder: command/data or event channel."""

    # Set by makeConnection: a tcp.Connection, which is an ITCPTransport, IConsumer and
    # IPushProducer at once (and whose internals the sendfile paths use).
    transport: Any

    log = Logger()
    factory: ResponderFactory

    def __init__(self) -> None:
        self.role = _Role.NEW
        self.session: ResponderSession | None = None
        self.connection_number: int | None = None
        self.initiator: InitiatorInfo | None = None
        self._parser: PacketParser | None = None
        self._holds: set[str] = set()
        self._draining = False
        self._timer: IDelayedCall | None = None
        self._stall: IDelayedCall | None = None

    # -- Twisted ---------------------------------------------------------
    def connectionMade(self) -> None:
        self._parser = PacketParser(self.factory.max_packet_size)
        _tune_socket(self.transport)
        self.watch = WriteWatch(self.factory.reactor, self.factory.stall_timeout,
                                lambda: self._stalled("stopped reading (our send buffer stayed full)"))
        self.transport.registerProducer(self.watch, True)
        self.factory.connections.add(self)
        unestablished = sum(1 for c in self.factory.connections if c.session is None)
        if unestablished > self.factory.max_pending:
            self.log.warn("refusing {peer}: {n} connections are already establishing",
                          peer=self.transport.getPeer(), n=unestablished - 1)
            self.sendPacket(InitFail(FailReason.BUSY))
            self.close()
            return
        self._timer = self.factory.reactor.callLater(
            self.factory.establishment_timeout, self._establishmentTimedOut)

    def dataReceived(self, data: bytes) -> None:
        assert self._parser is not None
        self._parser.receive_data(data)
        if self.session is not None:
            self.session.activity()
        self._drain()
        self._watchStall()

    # -- stalls: a peer that stops sending mid-packet or mid-phase, or stops reading ----
    def _watchStall(self) -> None:
        """(Re)arm the receive-stall timer while the peer owes us bytes (a reset, not a
        new timer, per chunk of a long data phase)."""
        owed = self._parser is not None and self._parser.in_packet
        if self.session is not None and self.role is _Role.COMMAND:
            owed = owed or self.session.awaitingData()
        armed = self._stall is not None and self._stall.active()
        if owed and not self._holds and self.role is not _Role.CLOSED and self.factory.stall_timeout:
            if armed:
                self._stall.reset(self.factory.stall_timeout)  # type: ignore[union-attr]
            else:
                self._stall = self.factory.reactor.callLater(
                    self.factory.stall_timeout, self._stalled,
                    "stopped sending in the middle of a packet or data phase")
        elif armed:
            self._stall.cancel()  # type: ignore[union-attr]
            self._stall = None

    def _stalled(self, why: str) -> None:
        self._stall = None
        if self.role is _Role.CLOSED:
            return
        self.log.warn("closing {role} connection from {peer}: {why} for {t} s",
                      role=self.role.value, peer=self.transport.getPeer(), why=why,
                      t=self.factory.stall_timeout)
        self.close(abort=True)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.connections.discard(self)
        previous, self.role = self.role, _Role.CLOSED
        self._cancelTimer()
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self.watch.stop()
        if previous is _Role.COMMAND and self.session is None:
            self.factory._pending.pop(self.connection_number, None)
        if self.session is not None:
            self.session.close(reason)

    # -- flow control -----------------------------------------------------
    def hold(self, why: str) -> None:
        """Stop reading and dispatching packets until :meth:`release` of *why*."""
        if not self._holds and self.transport is not None:
            self.transport.pauseProducing()
        self._holds.add(why)

    def release(self, why: str) -> None:
        if why not in self._holds:
            return
        self._holds.discard(why)
        if not self._holds and self.role is not _Role.CLOSED:
            self.transport.resumeProducing()
            self._drain()
            self._watchStall()

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while not self._holds and self.role is not _Role.CLOSED:
                try:
                    event = self._parser.next_event()  # type: ignore[union-attr]
                except FramingError as e:
                    self.protocolError(e)
                    return
                if event is NEED_DATA:
                    return
                try:
                    self.packetReceived(event)  # type: ignore[arg-type]
                except ProtocolError as e:
                    self.protocolError(e)
                    return
        finally:
            self._draining = False

    # -- packets ----------------------------------------------------------
    def packetReceived(self, packet: Packet) -> None:
        if self.role is _Role.NEW:
            if isinstance(packet, InitCommandRequest):
                self.factory.initCommand(self, packet)
            elif isinstance(packet, InitEventRequest):
                self.factory.initEvent(self, packet)
            else:
                raise UnexpectedPacket(
                    f"{type(packet).__name__} before Init Command/Event Request",
                    fail_reason=FailReason.UNSPECIFIED)
        elif self.session is None:
            raise UnexpectedPacket(f"{type(packet).__name__} before the connection is established")
        elif self.role is _Role.EVENT:
            self.session.eventPacket(packet)
        else:
            self.session.commandPacket(packet)

    def sendPacket(self, packet: Packet) -> None:
        if self.role is not _Role.CLOSED:
            self.transport.write(packet.encode())

    def protocolError(self, error: ProtocolError) -> None:
        """The peer broke the protocol: answer Init Fail if still establishing, then close."""
        peer = self.transport.getPeer() if self.transport else None
        self.log.warn("closing {role} connection from {peer}: {error}",
                      role=self.role.value, peer=peer, error=error)
        if self.role is _Role.NEW:
            reason = getattr(error, "fail_reason", None) or FailReason.UNSPECIFIED
            self.sendPacket(InitFail(reason))
        self.close()

    def close(self, abort: bool = False) -> None:
        """Close; *abort* drops what is still buffered (for a peer that stopped reading)."""
        if self.role is not _Role.CLOSED and self.transport is not None:
            if abort:
                self.transport.abortConnection()
            else:
                self.transport.loseConnection()
            self._holds.add("closing")

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()

    # -- establishment ----------------------------------------------------
    def established(self) -> None:
        self._cancelTimer()

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _establishmentTimedOut(self) -> None:
        self._timer = None
        if self.session is None and self.role is not _Role.CLOSED:
            self.log.warn("{role} connection from {peer}: not established within {timeout} s; closing",
                          role=self.role.value, peer=self.transport.getPeer(),
                          timeout=self.factory.establishment_timeout)
            self.close()


def _tune_socket(transport: Any) -> None:
    """TCP_NODELAY (2.5 ms per transaction, not 44) and SO_KEEPALIVE (spec 2.2.3.2)."""
    try:
        transport.setTcpNoDelay(True)
        transport.setTcpKeepAlive(True)
    except (AttributeError, OSError, NotImplementedError):
        pass
    sock = getattr(transport, "socket", None)
    if sock is not None and hasattr(socket, "TCP_KEEPIDLE"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
        except OSError:
            pass


class ResponderSession:
    """One established PTP-IP connection: a command channel and an event channel.

    Feeds what arrives to its :class:`~ptpip.wire.transaction.Transactions` (one
    transaction at a time, spec 1.6.4), carries out the events it returns, and sends
    the device's events.
    """

    log = Logger()

    def __init__(self, factory: ResponderFactory, command: ResponderProtocol,
                 event: ResponderProtocol, initiator: InitiatorInfo) -> None:
        self.factory = factory
        self.command = command
        self.event = event
        self.initiator = initiator
        self.closed = False
        self.handler: IResponderSession | None = None
        self.transactions = Transactions(Role.RESPONDER)
        self._incoming: IncomingData | None = None
        self._dataIn: DataIn | None = None
        self.events = _EventSink(self)
        self.last_activity = factory.reactor.seconds()
        self._idle: IDelayedCall | None = None
        self._probe: defer.Deferred[bool] | None = None
        self._probe_timer: IDelayedCall | None = None

    def start(self) -> None:
        self.handler = IResponderSession(self.factory.device.newSession(self.initiator, self.events))
        self.activity()

    # -- liveness -------------------------------------------------------------
    def activity(self) -> None:
        """Something arrived from the initiator: it is alive and not idle."""
        self.last_activity = self.factory.reactor.seconds()
        timeout = self.factory.idle_timeout
        if timeout and not self.closed:
            if self._idle is not None and self._idle.active():
                self._idle.reset(timeout)
            else:
                self._idle = self.factory.reactor.callLater(timeout, self._idleTimedOut)

    def _idleTimedOut(self) -> None:
        self._idle = None
        if self.closed:
            return
        if self.transactions.busy:
            self.activity()            # a transaction in progress is not idleness
            return
        self.log.info("session {number} with {name!r} idle for {t} s; closing",
                      number=self.initiator.connection_number, name=self.initiator.friendly_name,
                      t=self.factory.idle_timeout)
        self.close()

    def awaitingData(self) -> bool:
        """True while the initiator owes us the rest of a data-out phase (or a Cancel)."""
        return self.transactions.peer_owes_data

    @property
    def busy(self) -> bool:
        return self.transactions.busy

    def probe(self, timeout: float) -> defer.Deferred[bool]:
        """Send a Probe Request (spec 2.3.13); fires True on the answer, False (and the
        session is closed) when none comes within *timeout* seconds."""
        if self._probe is not None:
            return self._probe
        d = self._probe = defer.Deferred()
        self.event.sendPacket(ProbeRequest())

        def expired() -> None:
            self._probe_timer = None
            self._probe = None
            self.log.warn("session {number} with {name!r} did not answer a probe; reclaiming it",
                          number=self.initiator.connection_number, name=self.initiator.friendly_name)
            self.close()
            d.callback(False)
        self._probe_timer = self.factory.reactor.callLater(timeout, expired)
        return d

    def _probeAnswered(self) -> None:
        d, self._probe = self._probe, None
        if self._probe_timer is not None and self._probe_timer.active():
            self._probe_timer.cancel()
        self._probe_timer = None
        if d is not None:
            d.callback(True)

    # -- packets ------------------------------------------------------------
    def commandPacket(self, packet: Packet) -> None:
        if isinstance(packet, ProbeRequest):
            self.command.sendPacket(ProbeResponse())
        elif isinstance(packet, ProbeResponse):
            self._probeAnswered()
        else:
            self._carryOut(self.transactions.receive(packet, Channel.COMMAND))

    def eventPacket(self, packet: Packet) -> None:
        if isinstance(packet, ProbeRequest):
            self.event.sendPacket(ProbeResponse())
        elif isinstance(packet, ProbeResponse):
            self._probeAnswered()
        elif isinstance(packet, Cancel):
            self._carryOut(self.transactions.receive(packet, Channel.EVENT))
        else:
            raise UnexpectedPacket(f"{type(packet).__name__} on the event channel")

    def _carryOut(self, events: list[TransactionEvent]) -> None:
        for e in events:
            if isinstance(e, DataPiece):
                if self._incoming is not None:
                    self._incoming.feed(e.payload)
            elif isinstance(e, OperationStarted):
                if not e.request.data_out:
                    self._dispatch(e.request, None)
                # a data-out operation goes to the device once Start Data has said how much
            elif isinstance(e, DataStarted):
                request = self.transactions.current_request
                assert request is not None
                self._incoming = IncomingData(self.command, e.transaction_id, e.length)
                self._dispatch(request, self._incoming)
            elif isinstance(e, DataEnded):
                if self._incoming is not None:
                    self._incoming.finish(e.complete)
            elif isinstance(e, DataOverrun):
                if self._incoming is not None:
                    self._incoming.fail(RemoteProtocolError(
                        f"data-out carried more than the announced {e.length} bytes",
                        fail_reason=None, response_code=ResponseCode.IncompleteTransfer))
            elif isinstance(e, CancelRequested):
                self.log.info("initiator cancelled transaction {tid} on the {channel} channel",
                              tid=e.transaction_id, channel=e.channel.value)
                self._stopWork(TransactionCancelled(f"transaction {e.transaction_id} cancelled"))
                if self.handler is not None:
                    self.handler.cancelTransaction(e.transaction_id)
            elif isinstance(e, AsyncCancel):
                # Case 1.2, case 5, or an asynchronous operation such as InitiateCapture (2.7.3).
                if self.handler is not None:
                    self.handler.cancelTransaction(e.transaction_id)
            elif isinstance(e, Send):
                self.command.sendPacket(e.packet)
            elif isinstance(e, TransactionEnded):
                self._endTransaction()

    def _stopWork(self, why: Exception) -> None:
        """Stop the data phase in progress (its source, or the device's consumer)."""
        if self._dataIn is not None:
            dataIn, self._dataIn = self._dataIn, None
            dataIn.stop()
        if self._incoming is not None:
            self._incoming.fail(why)

    # -- the device ---------------------------------------------------------
    def _dispatch(self, request: OperationRequest, incoming: IncomingData | None) -> None:
        assert self.handler is not None
        try:
            result = self.handler.handleOperation(request, incoming)
        except Exception:
            self._failed(Failure(), request)
            return
        if not isinstance(result, defer.Deferred):
            self._answered(result, request)      # the common, synchronous case: no Deferred
            return
        result.addCallbacks(self._answered, self._failed, callbackArgs=(request,), errbackArgs=(request,))
        result.addErrback(self._internalError)

    def _failed(self, failure: Failure, request: OperationRequest) -> None:
        error = failure.value
        code = getattr(error, "response_code", None)
        if code is None:
            if isinstance(error, TransactionCancelled):
                code = ResponseCode.TransactionCancelled
            elif isinstance(error, ConnectionClosed):
                return
            else:
                self.log.failure("device failed on {op}", failure, op=code_name(request.code))
                code = ResponseCode.GeneralError
        self._answered(Response(code, getattr(error, "params", ())), request)

    def _answered(self, response: Response, request: OperationRequest) -> None:
        tx = self.transactions
        if self.closed or request is not tx.current_request or tx.cancelling:
            return                       # cancelled: the machine has answered for it
        incoming = self._incoming
        if incoming is not None and incoming.error is not None:
            response = Response(getattr(incoming.error, "response_code", None) or ResponseCode.GeneralError)
        if tx.phase in (Phase.WAIT_START_DATA, Phase.DATA_OUT):
            # Responder-generated cancel (5.6.2 case 1): answer now, the rest is discarded.
            if incoming is not None:
                incoming.fail(TransactionCancelled("the device answered before the data-out phase ended"))
            self._respond(response.code, response.params)
            return
        if response.data is None:
            self._respond(response.code, response.params)
            return
        source = response.data
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if len(data) <= self.factory.data_packet_size:
                # A dataset: Start Data, End Data and the response in one write.
                self.command.transport.writeSequence([
                    tx.start_data(len(data)).encode(), tx.data_header(len(data), last=True), data,
                    tx.respond(response.code, response.params).encode()])
                self._endTransaction()
                return
            source = BytesSource(data)
        source = IDataSource(source)
        self.command.sendPacket(tx.start_data(source.length))
        f = self.factory
        dataIn = self._dataIn = DataIn(
            f.reactor, self.command, tx, self.command.watch, source, f.data_packet_size, f.stall_timeout,
            lambda: self.command._stalled("stopped reading (our send buffer stayed full)"))
        dataIn.start().addBoth(self._dataInDone, request, response).addErrback(self._internalError)

    def _dataInDone(self, result: Any, request: OperationRequest, response: Response) -> None:
        if isinstance(result, Failure) and result.check(DataInStopped):
            return                                  # cancelled or closed: nobody waits for it
        self._dataIn = None
        if self.closed or request is not self.transactions.current_request:
            return
        if isinstance(result, Failure):
            # Responder-generated cancel during data-in (5.6.2 case 2): no End Data was sent.
            self.log.failure("data-in failed on {op}", result, op=code_name(request.code))
            self._respond(ResponseCode.GeneralError)
        else:
            self._respond(response.code, response.params)

    def _internalError(self, failure: Failure) -> None:
        self.log.failure("internal error in the responder session", failure)
        self.command.close()

    def _respond(self, code: int, params: tuple[int, ...] = ()) -> None:
        self.command.sendPacket(self.transactions.respond(code, params))
        self._endTransaction()

    def _endTransaction(self) -> None:
        self._incoming = None
        self._dataIn = None
        self.command.release("await-consumer")
        self.command.release("consumer-paused")

    # -- the end --------------------------------------------------------------
    def close(self, reason: Failure | None = None) -> None:
        """Either channel closed: close the other and tell the device (spec 1.7)."""
        if self.closed:
            return
        self.closed = True
        self.factory.sessions.discard(self)
        for timer in (self._idle, self._probe_timer):
            if timer is not None and timer.active():
                timer.cancel()
        if self._probe is not None:
            d, self._probe = self._probe, None
            d.callback(False)
        self.command.close()
        self.event.close()
        self._stopWork(ConnectionClosed("the PTP-IP connection closed during data-out"))
        if self.handler is not None:
            try:
                self.handler.connectionLost(reason or Failure(ConnectionClosed("closed")))
            except Exception:
                self.log.failure("device failed on connectionLost")
        self.log.info("session {number} with {name!r} ended", number=self.initiator.connection_number,
                      name=self.initiator.friendly_name)


@implementer(IEventSink)
class _EventSink:
    def __init__(self, session: ResponderSession) -> None:
        self._session = session

    def sendEvent(self, code: int, params: tuple[int, ...] = (), transaction_id: int = NO_TRANSACTION) -> None:
        if not self._session.closed:
            self._session.event.sendPacket(Event(code, transaction_id, tuple(params)))


def _random_guid() -> bytes:
    return uuid.uuid4().bytes


class ResponderFactory(protocol.Factory):
    """Serves PTP-IP on one port: both channels, every session.

    :param device: the :class:`~ptpip.interfaces.IResponderDevice` behind it.
    :param guid: the responder's 16-byte GUID (random if omitted).
    :param friendly_name: shown by initiators (at most 39 UTF-16 units).
    :param policy: an :class:`~ptpip.interfaces.IInitiatorPolicy` (default: accept all).
    :param max_sessions: established sessions beyond which Init Fail BUSY is answered.
    :param establishment_timeout: seconds for both channels to be up (spec: 30).
    :param reactor: an ``IReactorTime`` (inject a ``task.Clock`` in tests).
    :param max_pending: connections still establishing at once; more get Init Fail BUSY.
    :param max_per_address: sessions (and handshakes) from one address; more get BUSY.
    :param stall_timeout: seconds a peer may stop sending mid-packet or mid-data-phase, or
        stop reading what we send, before its connection is closed (0: never).
    :param idle_timeout: seconds without any packet before an idle session is closed (None: never).
    :param probe_timeout: seconds to wait for a Probe Response (spec: 10).
    :param probe_idle: when the session limit is reached, sessions idle this long are
        probed and reclaimed if they do not answer, before BUSY is answered (spec 2.3.13).
    """

    # See CCCPFactory.protocol: our protocol names its own factory class.
    protocol = ResponderProtocol  # type: ignore[assignment]
    log = Logger()

    def __init__(self, device: IResponderDevice, guid: bytes | None = None,
                 friendly_name: str = "ptpip responder", policy: IInitiatorPolicy | None = None,
                 max_sessions: int = 16, establishment_timeout: float = 30.0,
                 reactor: IReactorTime | None = None,
                 max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
                 data_packet_size: int = DATA_PACKET_SIZE,
                 version: int = PROTOCOL_VERSION, max_pending: int = 16, max_per_address: int = 8,
                 stall_timeout: float = 60.0, idle_timeout: float | None = None,
                 probe_timeout: float = 10.0, probe_idle: float = 10.0) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.device = IResponderDevice(device)
        self.guid = guid if guid is not None else _random_guid()
        InitCommandAck(1, self.guid, friendly_name)      # validates the GUID and the name now
        self.friendly_name = friendly_name
        from .devices.policy import AcceptAllPolicy
        self.policy = IInitiatorPolicy(policy) if policy is not None else AcceptAllPolicy()
        self.max_sessions = max_sessions
        self.establishment_timeout = establishment_timeout
        self.reactor: Any = reactor
        self.max_packet_size = max_packet_size
        self.data_packet_size = data_packet_size
        self.version = version
        self.max_pending = max_pending
        self.max_per_address = max_per_address
        self.stall_timeout = stall_timeout
        self.idle_timeout = idle_timeout
        self.probe_timeout = probe_timeout
        self.probe_idle = probe_idle
        self.connections: set[ResponderProtocol] = set()
        self.sessions: set[ResponderSession] = set()
        self._pending: dict[int | None, ResponderProtocol] = {}

    # -- establishment (spec 2.2.3.1) -------------------------------------------
    def initCommand(self, proto: ResponderProtocol, request: InitCommandRequest) -> None:
        peer = proto.transport.getPeer()
        info = InitiatorInfo(request.guid, request.friendly_name, request.version, peer)
        proto.initiator = info
        proto.role = _Role.COMMAND        # no further Init packets on this connection
        proto.hold("establishing")
        if version_major(request.version) != version_major(self.version):
            self._refuse(proto, FailReason.UNSPECIFIED,
                         f"protocol version 0x{request.version:08X} has another major number")
            return
        d = defer.maybeDeferred(self.policy.accept, info)
        d.addCallbacks(self._policyDecided, self._policyFailed,
                       callbackArgs=(proto, info), errbackArgs=(proto,))

    def _policyFailed(self, failure: Failure, proto: ResponderProtocol) -> None:
        self.log.failure("initiator policy failed", failure)
        self._refuse(proto, FailReason.UNSPECIFIED, "initiator policy failed")

    def _policyDecided(self, accepted: bool, proto: ResponderProtocol, info: InitiatorInfo) -> None:
        if proto.role is _Role.CLOSED:
            return
        if not accepted:
            self._refuse(proto, FailReason.REJECTED_INITIATOR,
                         f"initiator {info.guid.hex()} ({info.friendly_name!r}) is not allowed")
            return
        host = getattr(info.address, "host", None)
        same = sum(1 for s in self.sessions if getattr(s.initiator.address, "host", None) == host)
        same += sum(1 for p in self._pending.values()
                    if p.initiator is not None and getattr(p.initiator.address, "host", None) == host)
        if same >= self.max_per_address:
            self._refuse(proto, FailReason.BUSY, f"{same} sessions from {host} already")
            return
        if len(self.sessions) + len(self._pending) >= self.max_sessions:
            self._reclaim().addCallback(self._afterReclaim, proto, info)
            return
        self._ack(proto, info)

    def _reclaim(self) -> defer.Deferred[Any]:
        """Probe sessions idle for ``probe_idle`` seconds; those that do not answer are closed."""
        now = self.reactor.seconds()
        idle = [s for s in self.sessions if not s.busy and now - s.last_activity >= self.probe_idle]
        return defer.DeferredList([s.probe(self.probe_timeout) for s in idle])

    def _afterReclaim(self, _: Any, proto: ResponderProtocol, info: InitiatorInfo) -> None:
        if proto.role is _Role.CLOSED:
            return
        if len(self.sessions) + len(self._pending) >= self.max_sessions:
            self._refuse(proto, FailReason.BUSY, f"{self.max_sessions} sessions already")
            return
        self._ack(proto, info)

    def _ack(self, proto: ResponderProtocol, info: InitiatorInfo) -> None:
        number = self._newConnectionNumber()
        info.connection_number = number
        info.version = min(info.version, self.version)
        proto.connection_number = number
        self._pending[number] = proto
        proto.sendPacket(InitCommandAck(number, self.guid, self.friendly_name, info.version))
        self.log.info("command channel {number} from {peer} ({name!r}, GUID {guid})",
                      number=number, peer=info.address, name=info.friendly_name, guid=info.guid.hex())

    def _newConnectionNumber(self) -> int:
        while True:
            number = secrets.randbits(32)
            if number and number not in self._pending:
                return number

    def _refuse(self, proto: ResponderProtocol, reason: FailReason, why: str) -> None:
        self.log.warn("refusing {peer}: Init Fail {reason}: {why}",
                      peer=proto.transport.getPeer(), reason=reason.name, why=why)
        proto.sendPacket(InitFail(reason))
        proto.close()

    def initEvent(self, proto: ResponderProtocol, request: InitEventRequest) -> None:
        proto.role = _Role.EVENT
        command = self._pending.get(request.connection_number)
        peer = proto.transport.getPeer()
        if command is None:
            self._refuse(proto, FailReason.UNSPECIFIED,
                         f"unknown connection number {request.connection_number}")
            return
        if getattr(peer, "host", None) != getattr(command.transport.getPeer(), "host", None):
            self._refuse(proto, FailReason.UNSPECIFIED,
                         f"event channel from {peer}, command channel from another host")
            return
        del self._pending[request.connection_number]
        assert command.initiator is not None
        session = ResponderSession(self, command, proto, command.initiator)
        command.session = proto.session = session
        proto.connection_number = request.connection_number
        self.sessions.add(session)
        proto.sendPacket(InitEventAck())
        command.established()
        proto.established()
        try:
            session.start()
        except Exception:
            self.log.failure("device refused the session")
            session.close()
            return
        command.release("establishing")
