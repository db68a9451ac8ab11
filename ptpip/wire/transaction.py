"""One PTP-IP transaction machine for both roles (spec 1.6.4, 2.3.6-2.3.12, 2.7, 5.6).

Pure: packets in, events out; the calls for what this side sends return the
packets (or packet headers) to write. The initiator and the responder step the
same :data:`TRANSITIONS` table, so a phase means the same thing on both sides::

    IDLE --request--> PROCESSING --Start Data--> DATA_IN --End Data--> RESPONSE_DUE --response--> IDLE
    IDLE --request (data-out)--> WAIT_START_DATA --Start Data--> DATA_OUT --End Data--> RESPONSE_DUE
    any busy phase --Cancel--> CANCELLING --response--> IDLE
    any busy phase --response--> IDLE      (before the data phase ended: the responder cancelled, 5.6.2)

What the spec leaves to each side is decided here once:

- the transaction id of every data packet and response is checked against the
  current transaction; the tail of a cancelled or refused data phase (its id is
  remembered) is discarded silently, anything else out of place is an
  :class:`~ptpip.wire.errors.UnexpectedPacket`;
- a Start Data of length 0 ends its data phase at once (libgphoto2 sends no End
  Data after it; an empty End Data that does follow is accepted);
- an Operation Request with data phase "unknown" is refused (the spec's 2.3.6
  footnote: a responder that does not support it closes the connection);
- the cancel cases of 5.6.1, as the responder sees them: a Cancel on the event
  channel before the request is ignored (case 1.2); a Cancel of the current
  transaction stops its work (:class:`CancelRequested`) and is answered
  TransactionCancelled at once when it came on the command channel (cases 2.1,
  3.1, 4.1), or when its twin arrives there (2.2, 3.2, 4.2: data packets are
  discarded meanwhile); the twin of an answered Cancel is ignored, and a Cancel
  of another transaction is an asynchronous cancel for the device (2.7.3, and
  case 5 where the response is already out).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Union

from .constants import NO_TRANSACTION, UNKNOWN_LENGTH, DataPhase, OperationCode, PacketType, ResponseCode
from .errors import LocalProtocolError, UnexpectedPacket
from .packets import (
    Cancel,
    Data,
    EndData,
    OperationRequest,
    OperationResponse,
    Packet,
    StartData,
)

__all__ = [
    "TRANSITIONS",
    "AsyncCancel",
    "CancelRequested",
    "Channel",
    "DataEnded",
    "DataOverrun",
    "DataPiece",
    "DataStarted",
    "OperationStarted",
    "Phase",
    "Role",
    "Send",
    "Step",
    "TransactionEnded",
    "TransactionEvent",
    "Transactions",
]


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class Channel(enum.Enum):
    COMMAND = "command"
    EVENT = "event"


class Phase(enum.Enum):
    # Members are singletons: identity hashing keeps the table lookups at C speed
    # (Enum's own __hash__ is Python code).
    __hash__ = object.__hash__

    IDLE = "idle"
    WAIT_START_DATA = "wait-start-data"     # a data-out request, no Start Data yet
    DATA_OUT = "data-out"
    PROCESSING = "processing"               # no data-out: the responder works, data-in may follow
    DATA_IN = "data-in"
    RESPONSE_DUE = "response-due"           # the data phase is over: only the response may follow
    CANCELLING = "cancelling"               # cancelled: data is discarded, the response ends it


class Step(enum.Enum):
    """What happened on the command channel, its direction included."""

    __hash__ = object.__hash__

    REQUEST = "Operation Request"
    REQUEST_DATA_OUT = "Operation Request (data-out)"
    START_OUT = "Start Data (data-out)"
    DATA_OUT = "Data (data-out)"
    END_OUT = "End Data (data-out)"
    START_IN = "Start Data (data-in)"
    DATA_IN = "Data (data-in)"
    END_IN = "End Data (data-in)"
    CANCEL = "Cancel"
    RESPONSE = "Operation Response"


_BUSY: Final = tuple(p for p in Phase if p is not Phase.IDLE)

#: (phase, step) -> next phase, for both roles. A pair that is not here is out of place.
TRANSITIONS: Final[dict[tuple[Phase, Step], Phase]] = {
    (Phase.IDLE, Step.REQUEST): Phase.PROCESSING,
    (Phase.IDLE, Step.REQUEST_DATA_OUT): Phase.WAIT_START_DATA,
    (Phase.WAIT_START_DATA, Step.START_OUT): Phase.DATA_OUT,
    (Phase.DATA_OUT, Step.DATA_OUT): Phase.DATA_OUT,
    (Phase.DATA_OUT, Step.END_OUT): Phase.RESPONSE_DUE,
    (Phase.PROCESSING, Step.START_IN): Phase.DATA_IN,
    (Phase.DATA_IN, Step.DATA_IN): Phase.DATA_IN,
    (Phase.DATA_IN, Step.END_IN): Phase.RESPONSE_DUE,
    **{(p, Step.CANCEL): Phase.CANCELLING for p in _BUSY},
    **{(p, Step.RESPONSE): Phase.IDLE for p in _BUSY},
}

_DATA_HEADER: Final = struct.Struct("<III")      # length, type, transaction id


# -- events ---------------------------------------------------------------------------
# Plain slotted dataclasses (not frozen: they are made per packet, and a frozen
# dataclass costs several times as much to build); treat them as read-only.

@dataclass(slots=True)
class OperationStarted:
    """Responder: a new transaction. A data-out operation's data follows (:class:`DataStarted`)."""

    request: OperationRequest


@dataclass(slots=True)
class DataStarted:
    """The peer opened its data phase; *length* None means "unknown" (read until End Data)."""

    transaction_id: int
    length: int | None


@dataclass(slots=True)
class DataPiece:
    """Bytes of the peer's data phase, in order (a piece of a Data or End Data packet)."""

    transaction_id: int
    payload: bytes


@dataclass(slots=True)
class DataEnded:
    """The peer's data phase is over; *complete* when it carried what Start Data announced."""

    transaction_id: int
    transferred: int
    complete: bool


@dataclass(slots=True)
class DataOverrun:
    """The peer sent more than Start Data announced; the rest of its data is discarded."""

    transaction_id: int
    length: int
    transferred: int


@dataclass(slots=True)
class CancelRequested:
    """Responder: the initiator cancelled the current transaction; stop its work now."""

    transaction_id: int
    channel: Channel


@dataclass(slots=True)
class AsyncCancel:
    """Responder: a Cancel of a transaction that is not the current one (2.7.3)."""

    transaction_id: int


@dataclass(slots=True)
class Send:
    """A packet the machine itself answers with (the responder's TransactionCancelled)."""

    packet: Packet


@dataclass(slots=True)
class TransactionEnded:
    """The response went out (responder) or came in (initiator).

    :ivar transferred: bytes of the data phase, whichever its direction.
    :ivar complete: the data phase, if any, carried what was announced and ended
        before the response (False: the data is to be discarded, 5.6.2 case 2).
    :ivar data_out_cut: the response came while data-out was still due (the
        responder refused it, 5.6.2 case 1): the initiator stops sending.
    :ivar cancelled: a Cancel of this transaction was sent or received.
    """

    request: OperationRequest
    response: OperationResponse
    transferred: int
    complete: bool
    data_out_cut: bool
    cancelled: bool


TransactionEvent = Union[  # noqa: UP007 (one per line reads better)
    OperationStarted, DataStarted, DataPiece, DataEnded, DataOverrun, CancelRequested, AsyncCancel,
    Send, TransactionEnded,
]


class _Current:
    """Book-keeping of the transaction in progress."""

    __slots__ = ("cancelled", "data_ended", "data_started", "length", "request", "transferred")

    def __init__(self, request: OperationRequest) -> None:
        self.request = request
        self.length: int | None = None
        self.transferred = 0
        self.data_started = False
        self.data_ended = False
        self.cancelled = False


class Transactions:
    """The transactions of one PTP-IP connection, one at a time (spec 1.6.4).

    :param role: which side this is; it decides which packets are received and
        which are sent, never what a phase means.
    """

    def __init__(self, role: Role) -> None:
        self.role = role
        self.phase = Phase.IDLE
        self._current: _Current | None = None
        #: The transaction whose late data packets are dropped (cancelled, refused, overrun).
        self._discard: int | None = None
        #: The transaction whose second Cancel (of the pair) is ignored.
        self._cancelled: int | None = None
        #: Initiator: whether a PTP session is open (transaction ids 0 outside one).
        self.session_open = False
        self._next_tid = 1
        #: Called with each :class:`TransactionEnded` (for counting: metrics, logs).
        self.on_end: Callable[[TransactionEnded], None] | None = None
        out = (Step.START_OUT, Step.DATA_OUT, Step.END_OUT)
        into = (Step.START_IN, Step.DATA_IN, Step.END_IN)
        initiator = role is Role.INITIATOR
        #: (start, piece, end) steps of what this side receives, and of what it sends.
        self._receiving = into if initiator else out
        self._sending = out if initiator else into

    # -- state -------------------------------------------------------------------------
    @property
    def current_request(self) -> OperationRequest | None:
        """The Operation Request of the transaction in progress."""
        return self._current.request if self._current is not None else None

    @property
    def transaction_id(self) -> int | None:
        return self._current.request.transaction_id if self._current is not None else None

    @property
    def busy(self) -> bool:
        return self.phase is not Phase.IDLE

    @property
    def cancelling(self) -> bool:
        return self.phase is Phase.CANCELLING

    @property
    def peer_owes_data(self) -> bool:
        """True while the peer owes us bytes of this transaction (a data phase, or the
        responder's awaited command-channel Cancel)."""
        if self.role is Role.RESPONDER:
            return self.phase in (Phase.WAIT_START_DATA, Phase.DATA_OUT, Phase.CANCELLING)
        return self.phase in (Phase.PROCESSING, Phase.DATA_IN, Phase.RESPONSE_DUE, Phase.CANCELLING)

    @property
    def transferred(self) -> int:
        return self._current.transferred if self._current is not None else 0

    def _step(self, step: Step, *, local: bool) -> None:
        nxt = TRANSITIONS.get((self.phase, step))
        if nxt is None:
            what = f"{step.value} in phase {self.phase.value}"
            if local:
                raise LocalProtocolError(f"cannot send {what}")
            raise UnexpectedPacket(what)
        self.phase = nxt

    # -- what the peer sends ---------------------------------------------------------------
    def receive(self, packet: Packet, channel: Channel = Channel.COMMAND) -> list[TransactionEvent]:
        """Take one packet of the peer's (Data pieces as the parser hands them on).

        Raises :class:`~ptpip.wire.errors.UnexpectedPacket` for a packet the
        protocol does not allow here; the connection is then unusable.
        """
        kind = type(packet)
        if (kind is Data or kind is EndData or kind is StartData) and channel is Channel.COMMAND:
            return self._received_data(packet)  # type: ignore[arg-type]
        if isinstance(packet, Cancel):
            return self._received_cancel(packet.transaction_id, channel)
        if channel is Channel.EVENT:
            raise UnexpectedPacket(f"{type(packet).__name__} is not a transaction packet of the event channel")
        if kind is OperationResponse and self.role is Role.INITIATOR:
            return self._received_response(packet)  # type: ignore[arg-type]
        if kind is OperationRequest and self.role is Role.RESPONDER:
            return self._received_request(packet)  # type: ignore[arg-type]
        raise UnexpectedPacket(f"{type(packet).__name__} sent to the {self.role.value}")

    def _received_request(self, request: OperationRequest) -> list[TransactionEvent]:
        events: list[TransactionEvent] = []
        if self.phase is Phase.CANCELLING:
            events += self._answer_cancel()          # the initiator sent one Cancel only; carry on
        elif self.phase is not Phase.IDLE:
            raise UnexpectedPacket(
                f"Operation Request 0x{request.code:04X} while transaction {self.transaction_id} is in progress")
        if request.data_phase == DataPhase.UNKNOWN:
            raise UnexpectedPacket("data phase 'unknown' is not supported")
        self._start(request)
        return events + [OperationStarted(request)]

    def _start(self, request: OperationRequest) -> None:
        data_out = request.data_phase == DataPhase.DATA_OUT
        self._step(Step.REQUEST_DATA_OUT if data_out else Step.REQUEST, local=self.role is Role.INITIATOR)
        self._current = _Current(request)
        if self._discard == request.transaction_id:
            self._discard = None
        if self._cancelled == request.transaction_id:
            self._cancelled = None

    def _received_data(self, packet: StartData | Data | EndData) -> list[TransactionEvent]:
        tid = packet.transaction_id
        t = self._current
        if tid == self._discard and (t is None or self.phase in (Phase.CANCELLING, Phase.RESPONSE_DUE)
                                     or t.request.transaction_id != tid):
            return []                                  # the tail of a cut data phase
        if t is None or tid != t.request.transaction_id:
            raise UnexpectedPacket(
                f"{type(packet).__name__} for transaction {tid}, expected "
                f"{t.request.transaction_id if t else 'none'}")
        start, piece, end = self._receiving
        if type(packet) is StartData:
            self._step(start, local=False)
            t.data_started = True
            t.length = None if packet.total_length == UNKNOWN_LENGTH else packet.total_length
            events: list[TransactionEvent] = [DataStarted(tid, t.length)]
            if t.length == 0:
                # Start Data(0) is the whole phase; an empty End Data may still follow (2.3.6).
                self._step(end, local=False)
                t.data_ended = True
                self._discard = tid
                events.append(DataEnded(tid, 0, True))
            return events
        last = type(packet) is EndData
        self._step(end if last else piece, local=False)
        payload = packet.payload  # type: ignore[union-attr]
        t.transferred += len(payload)
        if t.length is not None and t.transferred > t.length:
            if not last:
                self._step(end, local=False)
            t.data_ended = True
            self._discard = tid
            return [DataOverrun(tid, t.length, t.transferred)]
        events = [DataPiece(tid, payload)] if payload else []
        if last:
            t.data_ended = True
            events.append(DataEnded(tid, t.transferred, t.length is None or t.transferred == t.length))
        return events

    def _received_response(self, response: OperationResponse) -> list[TransactionEvent]:
        t = self._current
        if t is None or response.transaction_id != t.request.transaction_id:
            raise UnexpectedPacket(
                f"Operation Response for transaction {response.transaction_id}, expected "
                f"{t.request.transaction_id if t else 'none'}")
        ended = self._end(response)
        code = response.code
        if t.request.code == OperationCode.OpenSession and code in (ResponseCode.OK, ResponseCode.SessionAlreadyOpen):
            self.session_open = True
            self._next_tid = 1
        elif t.request.code == OperationCode.CloseSession and code == ResponseCode.OK:
            self.session_open = False
        return [ended]

    def _end(self, response: OperationResponse) -> TransactionEnded:
        t = self._current
        assert t is not None
        before = self.phase
        self._step(Step.RESPONSE, local=self.role is Role.RESPONDER)
        self._current = None
        data_out = t.request.data_phase == DataPhase.DATA_OUT
        cut = data_out and before in (Phase.WAIT_START_DATA, Phase.DATA_OUT)
        if cut or (t.data_started and not t.data_ended) or t.cancelled:
            self._discard = t.request.transaction_id    # what is still on its way is dropped
        complete = not t.data_started or (
            t.data_ended and (t.length is None or t.transferred == t.length))
        ended = TransactionEnded(t.request, response, t.transferred, complete and not cut, cut, t.cancelled)
        if self.on_end is not None:
            self.on_end(ended)
        return ended

    def _received_cancel(self, tid: int, channel: Channel) -> list[TransactionEvent]:
        if self.role is Role.INITIATOR:
            raise UnexpectedPacket("Cancel sent to the initiator")
        t = self._current
        if t is None or t.request.transaction_id != tid:
            if tid == self._cancelled or tid == NO_TRANSACTION:
                return []                 # the twin of an answered Cancel
            # Case 1.2 (before its request), case 5 (after its response), or an
            # asynchronous operation such as InitiateCapture (2.7.3): the device decides.
            return [AsyncCancel(tid)]
        if self.phase is Phase.CANCELLING:
            return self._answer_cancel() if channel is Channel.COMMAND else []
        self._step(Step.CANCEL, local=False)
        t.cancelled = True
        self._cancelled = self._discard = tid
        events: list[TransactionEvent] = [CancelRequested(tid, channel)]
        if channel is Channel.COMMAND:
            events += self._answer_cancel()
        # else: cases 2.2, 3.2 and 4.2 wait for the Cancel on the command channel.
        return events

    def _answer_cancel(self) -> list[TransactionEvent]:
        assert self._current is not None
        response = OperationResponse(ResponseCode.TransactionCancelled, self._current.request.transaction_id)
        return [Send(response), self._end(response)]

    # -- what this side sends --------------------------------------------------------------
    def next_transaction_id(self, code: int) -> int:
        """Initiator: the id for a new request (0 for GetDeviceInfo and OpenSession
        outside a session, as PTP requires; then 1, 2, …, never 0 or 0xFFFFFFFF)."""
        if not self.session_open and code in (OperationCode.GetDeviceInfo, OperationCode.OpenSession):
            return 0
        tid = self._next_tid
        self._next_tid = tid + 1 if tid < 0xFFFFFFFE else 1
        return tid

    def request(self, code: int, params: tuple[int, ...] = (), *, data_out: bool = False,
                transaction_id: int | None = None) -> OperationRequest:
        """Initiator: start a transaction; the Operation Request to send."""
        if self.role is not Role.INITIATOR:
            raise LocalProtocolError("only the initiator sends Operation Requests")
        if self.phase is not Phase.IDLE:
            raise LocalProtocolError(f"transaction {self.transaction_id} is still in progress")
        tid = self.next_transaction_id(code) if transaction_id is None else transaction_id
        phase = DataPhase.DATA_OUT if data_out else DataPhase.NO_DATA_OR_DATA_IN
        request = OperationRequest(phase, code, tid, tuple(params))
        self._start(request)
        return request

    def start_data(self, length: int | None) -> StartData:
        """Open this side's data phase (*length* None: unknown); the Start Data to send."""
        t = self._require()
        start = self._sending[0]
        self._step(start, local=True)
        t.data_started = True
        t.length = length
        return StartData(t.request.transaction_id, UNKNOWN_LENGTH if length is None else length)

    def data_header(self, n: int, last: bool = False) -> bytes:
        """The 12-byte header of a Data (or, *last*, End Data) packet of *n* payload bytes,
        so a large payload is written without a copy. Counts the bytes; more than the
        announced length is refused."""
        t = self._require()
        _, piece, end = self._sending
        if t.length is not None and t.transferred + n > t.length:
            raise LocalProtocolError(
                f"{t.transferred + n} bytes of data, {t.length} announced in Start Data")
        self._step(end if last else piece, local=True)
        t.transferred += n
        if last:
            t.data_ended = True
        return _DATA_HEADER.pack(12 + n, PacketType.END_DATA if last else PacketType.DATA,
                                 t.request.transaction_id)

    def respond(self, code: int, params: tuple[int, ...] = ()) -> OperationResponse:
        """Responder: end the transaction; the Operation Response to send. Before a
        data-out phase has ended this refuses the rest of it (5.6.2 case 1), during
        data-in it ends it (case 2); a cancelled transaction is answered by the
        machine itself (:class:`Send`), so responding to it is refused."""
        if self.role is not Role.RESPONDER:
            raise LocalProtocolError("only the responder sends Operation Responses")
        t = self._require()
        if self.phase is Phase.CANCELLING:
            raise LocalProtocolError(f"transaction {t.request.transaction_id} was cancelled")
        response = OperationResponse(code, t.request.transaction_id, tuple(params))
        self._end(response)
        return response

    def cancel(self) -> Cancel | None:
        """Initiator: cancel the current transaction; the Cancel to send on *both*
        channels (2.7.1), or None when there is nothing to cancel (or it is cancelled).
        Data-in that still arrives is discarded; the response ends the transaction."""
        if self.role is not Role.INITIATOR:
            raise LocalProtocolError("only the initiator sends Cancel")
        t = self._current
        if t is None or self.phase is Phase.CANCELLING:
            return None
        self._step(Step.CANCEL, local=True)
        t.cancelled = True
        self._discard = t.request.transaction_id
        return Cancel(t.request.transaction_id)

    def _require(self) -> _Current:
        if self._current is None:
            raise LocalProtocolError("no transaction is in progress")
        return self._current
