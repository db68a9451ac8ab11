"""One established PTP-IP session of the responder: its two channels, its
transactions and the device behind it.

:class:`ResponderSession` feeds what arrives on either channel to the connection's
:class:`~ptpip.wire.transaction.Transactions` machine (one transaction at a time,
spec 1.6.4), carries out the events it returns (dispatching operations to the
device's :class:`~ptpip.interfaces.IResponderSession`, delivering data-out,
sending data-in through :mod:`ptpip.dataphase`), probes and times out idleness, and
sends the device's events. :mod:`ptpip.responder` makes it once both channels are up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from . import sockets
from .dataphase import DataIn, DataInStopped, IncomingData
from .interfaces import (
    IDataSource,
    IEventSink,
    IResponderSession,
    Response,
)
from .streams import BytesSource
from .wire.constants import (
    NO_TRANSACTION,
    DataPhase,
    ResponseCode,
    code_name,
)
from .wire.errors import (
    ConnectionClosed,
    RemoteProtocolError,
    TransactionCancelled,
    UnexpectedPacket,
)
from .wire.packets import (
    Cancel,
    Event,
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

__all__ = ["ResponderSession"]

if TYPE_CHECKING:
    from .responder import InitiatorInfo, ResponderFactory, ResponderProtocol


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
        metrics = getattr(factory, "metrics", None)
        if metrics is not None:
            name = factory.friendly_name
            self.transactions.on_end = lambda e: metrics.transaction(
                name, e.request.code, e.response.code, e.transferred, e.request.data_phase != DataPhase.DATA_OUT)
        self._incoming: IncomingData | None = None
        self._dataIn: DataIn | None = None
        self.events = _EventSink(self)
        self.dropped_events = 0
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
        """Send a Probe Request (spec 2.3.13); fires True on the answer, False when none
        comes within *timeout* seconds (what to do then is the caller's decision)."""
        if self._probe is not None:
            return self._probe
        d = self._probe = defer.Deferred()
        self.event.sendPacket(ProbeRequest())

        def expired() -> None:
            self._probe_timer = None
            self._probe = None
            d.callback(False)
        self._probe_timer = self.factory.reactor.callLater(timeout, expired)
        return d

    def tcpTrouble(self) -> str | None:
        """Why either channel's TCP connection is dead, or None."""
        for channel in (self.command, self.event):
            trouble = sockets.tcp_trouble(getattr(channel.transport, "socket", None))
            if trouble is not None:
                return f"the {channel.role.value} channel: {trouble}"
        return None

    def reclaim(self, why: str) -> None:
        """Close the session to give its place to a newcomer; the log says why."""
        self.log.warn("reclaiming session {number} with {name!r} for a newcomer: {why}",
                      number=self.initiator.connection_number, name=self.initiator.friendly_name, why=why)
        self.close()

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
        if result.called and not result.paused and not isinstance(result.result, (Failure, defer.Deferred)):
            self._answered(cast(Response, result.result), request)   # answered already: no chain
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
        if isinstance(source, (bytes, bytearray, memoryview, tuple)):
            parts = [bytes(p) for p in source] if isinstance(source, tuple) else [bytes(source)]
            size = sum(map(len, parts))
            if size <= self.factory.data_packet_size:
                # A dataset or a frame: Start Data, End Data and the response in one send.
                self.command.sendNow([
                    tx.start_data(size).encode(), tx.data_header(size, last=True), *parts,
                    tx.respond(response.code, response.params).encode()])
                self._endTransaction()
                return
            source = BytesSource(b"".join(parts))
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
        self.command.sendNow([self.transactions.respond(code, params).encode()])
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
        if self in self.factory.sessions:
            self.factory.sessions.discard(self)
            self.factory.admission.sessions.remove(self.command.host)
        for timer in (self._idle, self._probe_timer):
            if timer is not None and timer.active():
                timer.cancel()
        if self._probe is not None:
            d, self._probe = self._probe, None
            d.callback(False)
        self._stopWork(ConnectionClosed("the PTP-IP connection closed during data-out"))
        self.command.close()
        self.event.close()
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
        session = self._session
        if session.closed:
            return
        if session.event.watch.paused:
            # The initiator does not read its event channel: dropped, not queued without
            # limit (the stall timeout ends the session if it never reads again).
            session.dropped_events += 1
            if session.dropped_events == 1:
                session.log.warn("session {number}: the initiator does not read its events; dropping them",
                                 number=session.initiator.connection_number)
            return
        session.event.sendPacket(Event(code, transaction_id, tuple(params)))


