"""The PTP-IP responder (the camera side): one port, both channels, many sessions.

:class:`ResponderFactory` listens on one port (default 15740). Each TCP
connection is a :class:`ResponderProtocol` whose first packet says what it is:
an Init Command Request opens a command/data channel, an Init Event Request
joins the event channel to it by connection number (spec 2.2.3.1). Once both
are there, a :class:`ResponderSession` runs transactions between the initiator
and an :class:`~ptpip.interfaces.IResponderSession` obtained from the device.
"""

from __future__ import annotations

import enum
import os
import secrets
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet import defer, protocol
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IProducer,
    IPushProducer,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .interfaces import (
    IDataSource,
    IEventSink,
    IIncomingData,
    IInitiatorInfo,
    IInitiatorPolicy,
    IResponderDevice,
    IResponderSession,
)
from .streams import BytesConsumer, BytesSource
from .wire.constants import (
    DEFAULT_PORT,
    NO_TRANSACTION,
    PROTOCOL_VERSION,
    UNKNOWN_LENGTH,
    DataPhase,
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
    Data,
    EndData,
    Event,
    InitCommandAck,
    InitCommandRequest,
    InitEventAck,
    InitEventRequest,
    InitFail,
    OperationRequest,
    OperationResponse,
    Packet,
    ProbeRequest,
    ProbeResponse,
    StartData,
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


@dataclass(frozen=True)
class Response:
    """What a device answers to an operation: a code, parameters and optional data-in."""

    code: int = ResponseCode.OK
    params: tuple[int, ...] = ()
    #: Data-in: bytes or an IDataSource, or None for no data phase.
    data: Any = None


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


class _Phase(enum.Enum):
    IDLE = "idle"
    WAIT_START_DATA = "wait-start-data"   # data-out request received, Start Data not yet
    DATA_OUT = "data-out"                 # receiving data-out
    PROCESSING = "processing"             # the device is working on it
    DATA_IN = "data-in"                   # sending data-in
    CANCELLING = "cancelling"             # cancelled on the event channel; awaiting the command one


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
        self.watch = _WriteWatch(self)
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


@implementer(IPushProducer)
class _WriteWatch:
    """The producer a channel's transport pauses when the peer stops reading.

    It passes pause/resume on to the current data-in source (:attr:`inner`), and
    closes the connection if the peer has not read for ``stall_timeout`` seconds,
    so write buffers stay bounded.
    """

    def __init__(self, proto: ResponderProtocol) -> None:
        self.proto = proto
        self.inner: Any = None
        self.paused = False
        self._timer: IDelayedCall | None = None

    def setInner(self, producer: Any) -> None:
        self.inner = producer
        if producer is not None and self.paused:
            producer.pauseProducing()

    def pauseProducing(self) -> None:
        self.paused = True
        if self.inner is not None:
            self.inner.pauseProducing()
        timeout = self.proto.factory.stall_timeout
        if timeout and self._timer is None:
            self._timer = self.proto.factory.reactor.callLater(
                timeout, self._expired)

    def resumeProducing(self) -> None:
        self.paused = False
        self._cancel()
        if self.inner is not None:
            self.inner.resumeProducing()

    def stopProducing(self) -> None:
        self._cancel()
        if self.inner is not None:
            self.inner.stopProducing()

    def stop(self) -> None:
        self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expired(self) -> None:
        self._timer = None
        self.proto._stalled("stopped reading (our send buffer stayed full)")


class _SendfileStopped(Exception):
    pass


@implementer(IPushProducer)
class _SendfilePump:
    """Data-in of a plain file with ``os.sendfile``: Data/End Data headers are written
    to the socket, the payload goes from the page cache straight to it.

    It uses Twisted's TCP transport (its socket, its write buffer, its producer
    protocol) to keep packets in order and to wait for writability; where that is
    not available (other transports, TLS, tests in memory) the ordinary path is used.
    """

    def __init__(self, session: ResponderSession, tid: int, fd: int, offset: int, length: int,
                 closer: Callable[[], None]) -> None:
        self.session = session
        self.tid = tid
        self.fd = fd
        self.offset = offset
        self.remaining = length
        self.closer = closer
        self.in_packet = 0
        self.started = False
        self.paused = False
        self.stopped = False
        self.done: defer.Deferred[None] = defer.Deferred()
        self._stall: IDelayedCall | None = None

    @classmethod
    def attempt(cls, session: ResponderSession, tid: int, source: Any) -> _SendfilePump | None:
        from .streams import FileSource
        transport = session.command.transport
        if not isinstance(source, FileSource) or not hasattr(os, "sendfile") or not source.sendfile_ok():
            return None
        if not all(hasattr(transport, a) for a in ("socket", "dataBuffer", "offset", "_tempDataLen",
                                                   "startWriting", "producerPaused")):
            return None
        if getattr(transport, "TLS", False) or hasattr(transport, "getPeerCertificate"):
            return None
        fd, offset, length = source.take_file()
        return cls(session, tid, fd, offset, length, source.close)

    def start(self) -> defer.Deferred[None]:
        self.session.command.watch.setInner(self)
        if not self.paused:
            self._pump()
        return self.done

    # -- IPushProducer ------------------------------------------------------------
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._cancelStall()
        self._pump()

    def stopProducing(self) -> None:
        self._finish(_SendfileStopped("stopped"))

    # -- the pump ------------------------------------------------------------------
    def _wait(self) -> None:
        """Wait for the socket (or Twisted's buffer) to drain; we are resumed then."""
        t = self.session.command.transport
        t.producerPaused = True
        t.startWriting()
        timeout = self.session.factory.stall_timeout
        if timeout and self._stall is None:
            self._stall = self.session.factory.reactor.callLater(
                timeout, self.session.command._stalled, "stopped reading (our send buffer stayed full)")

    def _cancelStall(self) -> None:
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None

    def _pump(self) -> None:
        t = self.session.command.transport
        packet_size = self.session.factory.data_packet_size
        try:
            while not self.paused and not self.stopped:
                if len(t.dataBuffer) - t.offset or t._tempDataLen:
                    self._wait()                 # Twisted still holds bytes: they go first
                    return
                if self.in_packet == 0:
                    if self.remaining == 0 and self.started:
                        self._finish(None)
                        return
                    n = min(packet_size, self.remaining)
                    last = n == self.remaining
                    header = (EndData if last else Data)(self.tid).header(n)
                    self.started = True
                    try:
                        sent = t.socket.send(header)
                    except BlockingIOError:
                        sent = 0
                    if sent < len(header):
                        t.write(header[sent:])
                    self.in_packet = n
                    if n == 0:
                        continue
                    if sent < len(header):
                        self._wait()
                        return
                try:
                    k = os.sendfile(t.socket.fileno(), self.fd, self.offset, self.in_packet)
                except BlockingIOError:
                    self._wait()
                    return
                if k == 0:
                    raise OSError(f"the file ended with {self.remaining} bytes still to send")
                self.offset += k
                self.in_packet -= k
                self.remaining -= k
        except OSError as e:
            self._finish(e)

    def _completePacket(self) -> None:
        """Stopping mid-packet would break the framing: queue the rest of the packet
        (at most one data packet) through Twisted's buffer, zero-padded if unreadable."""
        if self.in_packet:
            try:
                rest = os.pread(self.fd, self.in_packet, self.offset)
            except OSError:
                rest = b""
            t = self.session.command.transport
            if not getattr(t, "disconnected", False):
                t.write(rest + bytes(self.in_packet - len(rest)))
            self.in_packet = 0

    def _finish(self, error: Exception | None) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._cancelStall()
        if error is not None:
            self._completePacket()
        self.closer()
        if error is None:
            self.done.callback(None)
        elif isinstance(error, _SendfileStopped):
            return                                 # cancelled or closed: nobody waits for it
        else:
            self.done.errback(error)


@implementer(IIncomingData, IPushProducer)
class _IncomingData:
    """The data-out phase of one transaction, delivered as it arrives."""

    def __init__(self, session: ResponderSession, transaction_id: int, total: int) -> None:
        self._session = session
        self.transaction_id = transaction_id
        self.length = None if total == UNKNOWN_LENGTH else total
        self.received = 0
        self.consumer: IConsumer | None = None
        self.done = False
        self._result: defer.Deferred[int] = defer.Deferred()
        self._error: Exception | None = None

    # -- IIncomingData ----------------------------------------------------
    def deliverTo(self, consumer: IConsumer) -> defer.Deferred[int]:
        if self.consumer is not None:
            raise RuntimeError("data-out can be delivered only once")
        self.consumer = consumer
        consumer.registerProducer(self, True)
        if not self.done:
            self._session.command.release("await-consumer")
        return self._result

    def readAll(self, limit: int = 1 << 20) -> defer.Deferred[bytes]:
        if self.length is not None and self.length > limit:
            return defer.fail(RemoteProtocolError(
                f"a {self.length}-byte dataset is over the {limit}-byte limit",
                fail_reason=None, response_code=ResponseCode.GeneralError))
        sink = _LimitedBytes(limit, self)
        return self.deliverTo(sink).addCallback(lambda _: sink.value())

    # -- IPushProducer (the consumer's backpressure) ------------------------
    def pauseProducing(self) -> None:
        if not self.done:
            self._session.command.hold("consumer-paused")

    def resumeProducing(self) -> None:
        self._session.command.release("consumer-paused")

    def stopProducing(self) -> None:
        self.fail(TransactionCancelled("the consumer stopped the data-out phase"))

    # -- fed by the session -------------------------------------------------
    def feed(self, payload: bytes) -> None:
        if self.done:
            return
        self.received += len(payload)
        if self.length is not None and self.received > self.length:
            self.fail(RemoteProtocolError(
                f"data-out carried more than the announced {self.length} bytes",
                fail_reason=None, response_code=ResponseCode.IncompleteTransfer))
            return
        if payload:
            assert self.consumer is not None
            try:
                self.consumer.write(payload)
            except Exception as e:          # the store refused (full, I/O error): stop here
                if getattr(e, "response_code", None) is None:
                    e = RemoteProtocolError(f"writing the data-out failed: {e}", fail_reason=None,
                                            response_code=ResponseCode.GeneralError)
                self.fail(e)

    def finish(self) -> None:
        if self.done:
            return
        if self.length is not None and self.received != self.length:
            self.fail(RemoteProtocolError(
                f"data-out carried {self.received} of the announced {self.length} bytes",
                fail_reason=None, response_code=ResponseCode.IncompleteTransfer))
            return
        self._settle()
        self._result.callback(self.received)

    def fail(self, error: Exception) -> None:
        if self.done:
            return
        self._error = error
        self._settle()
        self._result.errback(error)

    @property
    def error(self) -> Exception | None:
        return self._error

    def _settle(self) -> None:
        self.done = True
        if self.consumer is not None:
            self.consumer.unregisterProducer()
        self._session.command.release("consumer-paused")
        self._session.command.release("await-consumer")


@implementer(IConsumer)
class _LimitedBytes(BytesConsumer):
    def __init__(self, limit: int, incoming: _IncomingData) -> None:
        super().__init__()
        self._limit = limit
        self._incoming = incoming

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self._limit:
            self._incoming.fail(RemoteProtocolError(
                f"dataset over the {self._limit}-byte limit",
                fail_reason=None, response_code=ResponseCode.GeneralError))
            return
        super().write(data)


@implementer(IConsumer)
class _DataInWriter:
    """The consumer an IDataSource writes into: frames bytes as Data packets.

    The latest piece is held back so the phase ends with an End Data that
    carries it (a small dataset goes out as Start Data + End Data).
    """

    def __init__(self, session: ResponderSession, transaction_id: int, length: int | None) -> None:
        self._session = session
        self._tid = transaction_id
        self.length = length
        self.sent = 0
        self._held: bytes | None = None
        self.over = False

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self._session.command.watch.setInner(cast(IPushProducer, producer))

    def unregisterProducer(self) -> None:
        self._session.command.watch.setInner(None)

    def write(self, data: bytes) -> None:
        if self.over or self._session.closed:
            return
        if self.length is not None and self.sent + len(data) > self.length:
            self.over = True
            return
        self.sent += len(data)
        transport = self._session.command.transport
        data = bytes(data) if not isinstance(data, bytes) else data
        step = self._session.factory.data_packet_size
        # Slicing copies, so only an oversized write is cut into packets.
        pieces = [data] if len(data) <= step else [data[i:i + step] for i in range(0, len(data), step)]
        for piece in pieces:
            if self._held is not None:
                transport.writeSequence([Data(self._tid).header(len(self._held)), self._held])
            self._held = piece

    def finish(self) -> None:
        held = self._held if self._held is not None else b""
        self._held = None
        self._session.command.transport.writeSequence([EndData(self._tid).header(len(held)), held])


class ResponderSession:
    """One established PTP-IP connection: a command channel and an event channel.

    Runs one transaction at a time (spec 1.6.4) and sends the device's events.
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
        self._phase = _Phase.IDLE
        self._request: OperationRequest | None = None
        self._incoming: _IncomingData | None = None
        self._source: IPushProducer | None = None   # an IDataSource or a _SendfilePump
        self._writer: _DataInWriter | None = None
        self._stale_tid: int | None = None       # data packets of it are discarded
        self._cancelled_tid: int | None = None
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
        if self._phase is not _Phase.IDLE:
            self.activity()            # a transaction in progress is not idleness
            return
        self.log.info("session {number} with {name!r} idle for {t} s; closing",
                      number=self.initiator.connection_number, name=self.initiator.friendly_name,
                      t=self.factory.idle_timeout)
        self.close()

    def awaitingData(self) -> bool:
        """True while the initiator owes us the rest of a data-out phase."""
        return self._phase in (_Phase.WAIT_START_DATA, _Phase.DATA_OUT, _Phase.CANCELLING)

    @property
    def busy(self) -> bool:
        return self._phase is not _Phase.IDLE

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

    # -- command channel ----------------------------------------------------
    def commandPacket(self, packet: Packet) -> None:
        phase = self._phase
        if isinstance(packet, OperationRequest):
            if phase is _Phase.CANCELLING:
                self._finishCancel()      # the initiator sent one Cancel only; carry on
            elif phase is not _Phase.IDLE:
                raise UnexpectedPacket(
                    f"Operation Request 0x{packet.code:04X} while transaction "
                    f"{self._request.transaction_id if self._request else '?'} is in progress")
            self._operation(packet)
        elif isinstance(packet, (StartData, Data, EndData)):
            if packet.transaction_id == self._stale_tid:
                return   # the rest of a cancelled, refused or finished data-out phase
            if isinstance(packet, StartData):
                if phase is not _Phase.WAIT_START_DATA:
                    raise UnexpectedPacket(f"Start Data in phase {phase.value}")
                self._checkTid(packet.transaction_id)
                self._startDataOut(packet.total_length)
            else:
                self._dataPacket(packet)
        elif isinstance(packet, Cancel):
            self.cancel(packet.transaction_id, "command")
        elif isinstance(packet, ProbeRequest):
            self.command.sendPacket(ProbeResponse())
        elif isinstance(packet, ProbeResponse):
            self._probeAnswered()
        else:
            raise UnexpectedPacket(f"{type(packet).__name__} on an established command channel")

    def _checkTid(self, tid: int) -> None:
        assert self._request is not None
        if tid != self._request.transaction_id:
            raise UnexpectedPacket(
                f"transaction id {tid} in a data phase of transaction {self._request.transaction_id}")

    def _operation(self, request: OperationRequest) -> None:
        self._request = request
        if request.data_phase == DataPhase.UNKNOWN:
            # Spec 2.3.6 footnote: a responder that cannot handle it closes the connection.
            raise UnexpectedPacket("data phase 'unknown' is not supported")
        if request.data_phase == DataPhase.DATA_OUT:
            self._phase = _Phase.WAIT_START_DATA
        else:
            self._phase = _Phase.PROCESSING
            self._dispatch(None)

    def _startDataOut(self, total: int) -> None:
        assert self._request is not None
        tid = self._request.transaction_id
        incoming = self._incoming = _IncomingData(self, tid, total)
        self._phase = _Phase.DATA_OUT
        # Read no data until the device has said where it goes.
        self.command.hold("await-consumer")
        if total == 0:
            # Start Data(0) may or may not be followed by an empty End Data (2.3.6).
            self._dataOutEnded(tid)
            incoming.finish()
        self._dispatch(incoming)

    def _dataOutEnded(self, tid: int) -> None:
        self._stale_tid = tid
        self._phase = _Phase.PROCESSING

    def _dataPacket(self, packet: Data | EndData) -> None:
        if self._phase is not _Phase.DATA_OUT:
            raise UnexpectedPacket(
                f"{type(packet).__name__} for transaction {packet.transaction_id} "
                f"in phase {self._phase.value}")
        self._checkTid(packet.transaction_id)
        incoming = self._incoming
        assert incoming is not None
        incoming.feed(packet.payload)
        if self._incoming is not incoming or self._phase is not _Phase.DATA_OUT:
            return                          # the device answered (and ended it) meanwhile
        if isinstance(packet, EndData):
            self._dataOutEnded(packet.transaction_id)
            incoming.finish()
        elif incoming.done:                # more than announced: discard the rest
            self._dataOutEnded(packet.transaction_id)

    # -- event channel ------------------------------------------------------
    def eventPacket(self, packet: Packet) -> None:
        if isinstance(packet, ProbeRequest):
            self.event.sendPacket(ProbeResponse())
        elif isinstance(packet, ProbeResponse):
            self._probeAnswered()
        elif isinstance(packet, Cancel):
            self.cancel(packet.transaction_id, "event")
        else:
            raise UnexpectedPacket(f"{type(packet).__name__} on the event channel")

    # -- cancel (spec 2.7, 5.6.1) -------------------------------------------
    def cancel(self, transaction_id: int, channel: str) -> None:
        """A Cancel arrived on *channel* ("command" or "event")."""
        if transaction_id == self._cancelled_tid:
            # The second Cancel of the pair.
            if channel == "command" and self._phase is _Phase.CANCELLING:
                self._finishCancel()
            return
        request = self._request
        if request is None or request.transaction_id != transaction_id or self._phase is _Phase.IDLE:
            # Case 1 (before the request), case 5 (response already sent), or an
            # asynchronous operation such as InitiateCapture (2.7.3): the device decides.
            if self.handler is not None and transaction_id != NO_TRANSACTION:
                self.handler.cancelTransaction(transaction_id)
            return
        self._cancelled_tid = transaction_id
        self._stale_tid = transaction_id   # ignore the rest of its data
        self._phase = _Phase.CANCELLING    # before anything below can call back into us
        self.log.info("initiator cancelled transaction {tid} on the {channel} channel",
                      tid=transaction_id, channel=channel)
        if self._source is not None:
            source, self._source = self._source, None
            source.stopProducing()
        if self._incoming is not None:
            self._incoming.fail(TransactionCancelled(f"transaction {transaction_id} cancelled"))
        if self.handler is not None:
            self.handler.cancelTransaction(transaction_id)
        if channel == "command":
            self._finishCancel()
        # else: cases 2.2, 3.2 and 4.2 wait for the Cancel on the command channel.

    def _finishCancel(self) -> None:
        assert self._request is not None
        self._sendResponse(OperationResponse(ResponseCode.TransactionCancelled, self._request.transaction_id))
        self._endTransaction()

    # -- the device ---------------------------------------------------------
    def _dispatch(self, incoming: _IncomingData | None) -> None:
        assert self.handler is not None and self._request is not None
        request = self._request
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
        if self.closed or request is not self._request or self._phase is _Phase.CANCELLING:
            return
        tid = request.transaction_id
        incoming = self._incoming
        if incoming is not None and incoming.error is not None:
            code = getattr(incoming.error, "response_code", None) or ResponseCode.GeneralError
            response = Response(code)
        if self._phase in (_Phase.WAIT_START_DATA, _Phase.DATA_OUT):
            # Responder-generated cancel (5.6.2 case 1): answer now, discard the rest.
            self._stale_tid = tid
            if incoming is not None:
                incoming.fail(TransactionCancelled("the device answered before the data-out phase ended"))
            self._sendResponse(OperationResponse(response.code, tid, response.params))
            self._endTransaction()
            return
        if response.data is None:
            self._sendResponse(OperationResponse(response.code, tid, response.params))
            self._endTransaction()
            return
        source = response.data
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if len(data) <= self.factory.data_packet_size:
                # A dataset: Start Data, End Data and the response in one write.
                self.command.transport.writeSequence([
                    StartData(tid, len(data)).encode(), EndData(tid).header(len(data)), data,
                    OperationResponse(response.code, tid, response.params).encode()])
                self._endTransaction()
                return
            source = BytesSource(data)
        source = IDataSource(source)
        self._source = source
        self._phase = _Phase.DATA_IN
        total = UNKNOWN_LENGTH if source.length is None else source.length
        self.command.sendPacket(StartData(tid, total))
        pump = _SendfilePump.attempt(self, tid, source)
        if pump is not None:
            # A plain file on a TCP socket: the kernel copies it (sendfile), we only frame it.
            self._source = pump
            d = pump.start()
            d.addBoth(self._sendfileDone, request, response)
            d.addErrback(self._internalError)
            return
        writer = self._writer = _DataInWriter(self, tid, source.length)
        writer.registerProducer(source, True)
        d = defer.maybeDeferred(source.startProducing, writer)
        d.addBoth(self._dataInDone, request, response, writer)
        d.addErrback(self._internalError)

    def _sendfileDone(self, result: Any, request: OperationRequest, response: Response) -> None:
        self.command.watch.setInner(None)
        if self.closed or request is not self._request or self._phase is not _Phase.DATA_IN:
            return
        self._source = None
        if isinstance(result, Failure):
            # Responder-generated cancel during data-in (5.6.2 case 2): no End Data was sent.
            self.log.failure("data-in by sendfile failed on {op}", result, op=code_name(request.code))
            self._sendResponse(OperationResponse(ResponseCode.GeneralError, request.transaction_id))
        else:
            self._sendResponse(OperationResponse(response.code, request.transaction_id, response.params))
        self._endTransaction()

    def _dataInDone(self, result: Any, request: OperationRequest, response: Response,
                    writer: _DataInWriter) -> None:
        if writer is self._writer:
            self._writer = None
            self._source = None
            if not self.closed:
                writer.unregisterProducer()
        if self.closed or request is not self._request or self._phase is not _Phase.DATA_IN:
            return
        tid = request.transaction_id
        if isinstance(result, Failure) or writer.over or (
                writer.length is not None and writer.sent != writer.length):
            # Responder-generated cancel during data-in (5.6.2 case 2): no End Data.
            if isinstance(result, Failure):
                self.log.failure("data-in source failed on {op}", result, op=code_name(request.code))
            else:
                self.log.error("data-in source for {op} produced {sent} bytes, announced {length}",
                               op=code_name(request.code), sent=writer.sent, length=writer.length)
            self._sendResponse(OperationResponse(ResponseCode.GeneralError, tid))
        else:
            writer.finish()
            self._sendResponse(OperationResponse(response.code, tid, response.params))
        self._endTransaction()

    def _internalError(self, failure: Failure) -> None:
        self.log.failure("internal error in the responder session", failure)
        self.command.close()

    def _sendResponse(self, response: OperationResponse) -> None:
        self.command.sendPacket(response)

    def _endTransaction(self) -> None:
        self._phase = _Phase.IDLE
        self._request = None
        self._incoming = None
        self._source = None
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
        if self._source is not None:
            self._source.stopProducing()
        if self._incoming is not None:
            self._incoming.fail(ConnectionClosed("the PTP-IP connection closed during data-out"))
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
        from .policy import AcceptAllPolicy
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
