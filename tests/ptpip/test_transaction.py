"""The transaction machine of ``ptpip.wire.transaction``, driven directly (no transport).

The responder's cancel cases are spec 5.6.1's, numbered as there; the responder-generated
cancels are 5.6.2's. A Hypothesis state machine runs an initiator and a responder machine
against each other through two in-memory channels, with cancels at any moment.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ptpip.wire.constants import UNKNOWN_LENGTH, DataPhase, OperationCode, ResponseCode
from ptpip.wire.errors import LocalProtocolError, UnexpectedPacket
from ptpip.wire.framing import PacketParser
from ptpip.wire.packets import (
    Cancel,
    Data,
    EndData,
    OperationRequest,
    OperationResponse,
    StartData,
)
from ptpip.wire.transaction import (
    TRANSITIONS,
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
    Step,
    TransactionEnded,
    Transactions,
)

CMD, EVT = Channel.COMMAND, Channel.EVENT
OK, CANCELLED = ResponseCode.OK, ResponseCode.TransactionCancelled


def responder() -> Transactions:
    return Transactions(Role.RESPONDER)


def request(tid: int = 1, data_out: bool = False, code: int = 0x9001) -> OperationRequest:
    return OperationRequest(DataPhase.DATA_OUT if data_out else DataPhase.NO_DATA_OR_DATA_IN, code, tid)


def sent(events: list[Any]) -> list[Any]:
    return [e.packet for e in events if isinstance(e, Send)]


# -- the table ---------------------------------------------------------------------------

def test_the_table_names_every_legal_step_and_nothing_else():
    """Every (phase, step) outside the table is refused by both roles."""
    legal = set(TRANSITIONS)
    assert (Phase.IDLE, Step.RESPONSE) not in legal
    assert (Phase.IDLE, Step.CANCEL) not in legal
    assert (Phase.PROCESSING, Step.START_OUT) not in legal        # one data phase, one direction
    assert (Phase.RESPONSE_DUE, Step.START_IN) not in legal       # no data-in after data-out
    assert all(TRANSITIONS[(p, Step.RESPONSE)] is Phase.IDLE for p in Phase if p is not Phase.IDLE)
    assert all(TRANSITIONS[(p, Step.CANCEL)] is Phase.CANCELLING for p in Phase if p is not Phase.IDLE)


# -- responder: the normal flows -----------------------------------------------------------

def test_a_request_without_data_starts_processing_and_the_response_ends_it():
    t = responder()
    assert t.receive(request(7)) == [OperationStarted(request(7))]
    assert t.phase is Phase.PROCESSING and t.transaction_id == 7
    assert t.respond(OK, (1, 2)) == OperationResponse(OK, 7, (1, 2))
    assert t.phase is Phase.IDLE and t.current_request is None


def test_data_in_is_framed_counted_and_limited_to_the_announced_length():
    t = responder()
    t.receive(request(3))
    assert t.start_data(10) == StartData(3, 10)
    assert t.data_header(6) == Data(3).header(6)
    with pytest.raises(LocalProtocolError, match="11 bytes of data, 10 announced"):
        t.data_header(5, last=True)
    assert t.data_header(4, last=True) == EndData(3).header(4)
    assert t.phase is Phase.RESPONSE_DUE
    with pytest.raises(LocalProtocolError):
        t.start_data(1)                        # one data phase per transaction
    t.respond(OK)


def test_data_out_arrives_in_pieces_and_ends_complete():
    t = responder()
    assert t.receive(request(4, data_out=True)) == [OperationStarted(request(4, data_out=True))]
    assert t.phase is Phase.WAIT_START_DATA and t.peer_owes_data
    assert t.receive(StartData(4, 5)) == [DataStarted(4, 5)]
    assert t.receive(Data(4, b"ab")) == [DataPiece(4, b"ab")]
    assert t.receive(EndData(4, b"cde")) == [DataPiece(4, b"cde"), DataEnded(4, 5, True)]
    assert t.phase is Phase.RESPONSE_DUE and not t.peer_owes_data


def test_data_out_shorter_than_announced_ends_incomplete():
    t = responder()
    t.receive(request(4, data_out=True))
    t.receive(StartData(4, 5))
    assert t.receive(EndData(4, b"ab"))[-1] == DataEnded(4, 2, False)


def test_data_out_of_unknown_length_is_read_until_end_data():
    t = responder()
    t.receive(request(4, data_out=True))
    assert t.receive(StartData(4, UNKNOWN_LENGTH)) == [DataStarted(4, None)]
    t.receive(Data(4, b"x" * 100))
    assert t.receive(EndData(4))[-1] == DataEnded(4, 100, True)


def test_data_out_over_the_announced_length_is_an_overrun_and_the_rest_is_dropped():
    t = responder()
    t.receive(request(4, data_out=True))
    t.receive(StartData(4, 3))
    assert t.receive(Data(4, b"abcd")) == [DataOverrun(4, 3, 4)]
    assert t.phase is Phase.RESPONSE_DUE
    assert t.receive(Data(4, b"more")) == [] and t.receive(EndData(4)) == []
    t.respond(ResponseCode.IncompleteTransfer)


@pytest.mark.parametrize("with_end_data", [False, True])
def test_start_data_of_zero_is_the_whole_data_out_phase(with_end_data):
    t = responder()
    t.receive(request(4, data_out=True))
    assert t.receive(StartData(4, 0)) == [DataStarted(4, 0), DataEnded(4, 0, True)]
    if with_end_data:
        assert t.receive(EndData(4)) == []
    t.respond(OK)
    assert t.receive(EndData(4)) == []         # a late empty End Data after the response too
    assert t.phase is Phase.IDLE


# -- responder: what is out of place ------------------------------------------------------------

@pytest.mark.parametrize("packet", [Data(1, b"x"), EndData(1), StartData(1, 3), OperationResponse(OK, 1)])
def test_out_of_place_packets_are_unexpected(packet):
    t = responder()
    with pytest.raises(UnexpectedPacket):
        t.receive(packet)


def test_data_of_another_transaction_is_unexpected():
    t = responder()
    t.receive(request(5, data_out=True))
    with pytest.raises(UnexpectedPacket, match="transaction 6, expected 5"):
        t.receive(StartData(6, 1))


def test_start_data_for_a_request_without_data_out_is_unexpected():
    t = responder()
    t.receive(request(5))
    with pytest.raises(UnexpectedPacket, match="Start Data \\(data-out\\) in phase processing"):
        t.receive(StartData(5, 1))


def test_a_second_request_during_a_transaction_is_unexpected():
    t = responder()
    t.receive(request(1))
    with pytest.raises(UnexpectedPacket, match="while transaction 1 is in progress"):
        t.receive(request(2))


def test_the_unknown_data_phase_is_refused():
    t = responder()
    with pytest.raises(UnexpectedPacket, match="unknown"):
        t.receive(OperationRequest(DataPhase.UNKNOWN, 0x1001, 1))


def test_only_cancel_is_a_transaction_packet_of_the_event_channel():
    t = responder()
    with pytest.raises(UnexpectedPacket):
        t.receive(request(1), EVT)


def test_each_role_sends_only_its_own_packets():
    r, i = responder(), Transactions(Role.INITIATOR)
    with pytest.raises(LocalProtocolError):
        r.request(0x1001)
    with pytest.raises(LocalProtocolError):
        r.cancel()
    with pytest.raises(LocalProtocolError):
        i.respond(OK)
    with pytest.raises(UnexpectedPacket):
        i.receive(request(1))
    with pytest.raises(LocalProtocolError):
        r.respond(OK)                          # nothing to respond to


# -- responder: spec 5.6.1, the initiator cancels -------------------------------------------------

def test_case_1_2_a_cancel_on_the_event_channel_before_the_request_is_left_to_the_device():
    t = responder()
    assert t.receive(Cancel(1), EVT) == [AsyncCancel(1)]
    t.receive(request(1))
    events = t.receive(Cancel(1), CMD)        # its twin, after the request: the transaction is cancelled
    assert events[0] == CancelRequested(1, CMD)
    assert sent(events) == [OperationResponse(CANCELLED, 1)]


@pytest.mark.parametrize("stage", ["wait-start-data", "data-out", "data-in", "processing", "response-due"])
def test_cases_2_to_4_cancel_on_the_command_channel_first_is_answered_at_once(stage):
    t = responder()
    t.receive(request(1, data_out=stage in ("wait-start-data", "data-out", "response-due")))
    if stage in ("data-out", "response-due"):
        t.receive(StartData(1, 4))
        t.receive(Data(1, b"ab"))
    if stage == "response-due":
        t.receive(EndData(1, b"cd"))
    if stage == "data-in":
        t.start_data(100)
        t.data_header(10)
    events = t.receive(Cancel(1), CMD)
    assert events[0] == CancelRequested(1, CMD)
    assert sent(events) == [OperationResponse(CANCELLED, 1)]
    ended = events[-1]
    assert isinstance(ended, TransactionEnded) and ended.cancelled
    assert t.phase is Phase.IDLE
    assert t.receive(Cancel(1), EVT) == []     # its twin is ignored
    assert t.receive(Data(1, b"late")) == [] and t.receive(EndData(1)) == []   # the tail is discarded


@pytest.mark.parametrize("stage", ["wait-start-data", "data-out", "data-in", "processing"])
def test_cases_2_to_4_cancel_on_the_event_channel_first_waits_for_the_command_one(stage):
    t = responder()
    t.receive(request(1, data_out=stage in ("wait-start-data", "data-out")))
    if stage == "data-out":
        t.receive(StartData(1, 4))
    if stage == "data-in":
        t.start_data(100)
    assert t.receive(Cancel(1), EVT) == [CancelRequested(1, EVT)]
    assert t.phase is Phase.CANCELLING and t.peer_owes_data
    # Start Data, Data and End Data are ignored meanwhile (2.2)
    assert t.receive(StartData(1, 4)) == [] and t.receive(Data(1, b"x")) == [] and t.receive(EndData(1)) == []
    with pytest.raises(LocalProtocolError, match="cancelled"):
        t.respond(OK)                          # a late device answer is not sent
    events = t.receive(Cancel(1), CMD)
    assert sent(events) == [OperationResponse(CANCELLED, 1)]
    assert t.phase is Phase.IDLE


def test_a_new_request_after_a_lone_event_cancel_answers_the_cancelled_one_first():
    t = responder()
    t.receive(request(1))
    t.receive(Cancel(1), EVT)
    events = t.receive(request(2))
    assert sent(events) == [OperationResponse(CANCELLED, 1)]
    assert events[-1] == OperationStarted(request(2))


@pytest.mark.parametrize("channel", [CMD, EVT])
def test_case_5_a_cancel_after_the_response_goes_to_the_device_as_asynchronous(channel):
    t = responder()
    t.receive(request(1, code=OperationCode.InitiateCapture))
    t.respond(OK)
    assert t.receive(Cancel(1), channel) == [AsyncCancel(1)]
    assert t.phase is Phase.IDLE


# -- responder: spec 5.6.2, the responder cancels ----------------------------------------------------

@pytest.mark.parametrize("stage", ["wait-start-data", "data-out"])
def test_responder_case_1_answering_during_data_out_discards_the_rest(stage):
    t = responder()
    t.receive(request(1, data_out=True))
    if stage == "data-out":
        t.receive(StartData(1, 100))
    t.respond(ResponseCode.StoreFull)
    assert t.phase is Phase.IDLE
    assert t.receive(StartData(1, 100)) == [] and t.receive(Data(1, b"x")) == [] and t.receive(EndData(1)) == []
    assert t.receive(request(2)) == [OperationStarted(request(2))]


def test_responder_case_2_answering_during_data_in_ends_the_transaction():
    t = responder()
    t.receive(request(1))
    t.start_data(100)
    t.data_header(10)
    t.respond(ResponseCode.GeneralError)
    assert t.phase is Phase.IDLE


# -- initiator ---------------------------------------------------------------------------------

def test_initiator_transaction_ids_are_zero_outside_a_session_then_count_from_one():
    i = Transactions(Role.INITIATOR)
    assert i.request(OperationCode.GetDeviceInfo).transaction_id == 0
    i.receive(OperationResponse(OK, 0))
    assert i.request(OperationCode.OpenSession, (1,)).transaction_id == 0
    i.receive(OperationResponse(OK, 0))
    assert i.session_open
    assert [_roundtrip(i, OperationCode.GetStorageIDs) for _ in range(3)] == [1, 2, 3]
    i.request(OperationCode.CloseSession)
    i.receive(OperationResponse(OK, 4))
    assert not i.session_open


def _roundtrip(i: Transactions, code: int) -> int:
    tid = i.request(code).transaction_id
    i.receive(OperationResponse(OK, tid))
    return tid


def test_initiator_data_in_complete_or_not():
    i = Transactions(Role.INITIATOR)
    tid = i.request(0x1001).transaction_id
    assert i.receive(StartData(tid, 4)) == [DataStarted(tid, 4)]
    assert i.receive(EndData(tid, b"abcd")) == [DataPiece(tid, b"abcd"), DataEnded(tid, 4, True)]
    ended = i.receive(OperationResponse(OK, tid))[0]
    assert isinstance(ended, TransactionEnded) and ended.complete and ended.transferred == 4

    tid = i.request(0x1009).transaction_id
    i.receive(StartData(tid, 10))
    i.receive(Data(tid, b"abc"))
    ended = i.receive(OperationResponse(ResponseCode.GeneralError, tid))[0]
    assert not ended.complete                  # 5.6.2 case 2: the data-in is discarded


def test_initiator_start_data_of_zero_alone_is_a_complete_data_in():
    i = Transactions(Role.INITIATOR)
    tid = i.request(0x1001).transaction_id
    i.receive(StartData(tid, 0))
    assert i.receive(OperationResponse(OK, tid))[0].complete


def test_initiator_a_response_for_another_transaction_is_unexpected():
    i = Transactions(Role.INITIATOR)
    i.request(0x1001)
    with pytest.raises(UnexpectedPacket, match="transaction 5, expected 0"):
        i.receive(OperationResponse(OK, 5))


def test_initiator_data_out_is_framed_and_a_refusal_cuts_it():
    i = Transactions(Role.INITIATOR)
    i.session_open = True
    req = i.request(0x100D, data_out=True)
    assert req.data_phase == DataPhase.DATA_OUT
    assert i.start_data(None) == StartData(req.transaction_id, UNKNOWN_LENGTH)
    i.data_header(10)
    ended = i.receive(OperationResponse(ResponseCode.StoreFull, req.transaction_id))[0]
    assert ended.data_out_cut and not ended.complete
    with pytest.raises(LocalProtocolError):
        i.data_header(10)                       # nothing more may be sent


def test_initiator_cancel_discards_late_data_in_until_the_response():
    i = Transactions(Role.INITIATOR)
    tid = i.request(0x1009).transaction_id
    i.receive(StartData(tid, 100))
    assert i.cancel() == Cancel(tid)
    assert i.cancel() is None                   # once
    assert i.receive(Data(tid, b"late")) == [] and i.receive(EndData(tid)) == []
    ended = i.receive(OperationResponse(CANCELLED, tid))[0]
    assert ended.cancelled and i.phase is Phase.IDLE


# -- both machines against each other ---------------------------------------------------------

class Wire:
    """Two one-way command channels and the initiator's event channel, as byte streams."""

    def __init__(self) -> None:
        self.to_responder: deque[tuple[Channel, bytes]] = deque()
        self.to_initiator: deque[bytes] = deque()


class BothRoles(RuleBasedStateMachine):
    """An initiator and a responder machine joined by in-memory channels: whatever the
    initiator asks, whatever the responder answers, and wherever a Cancel falls (either
    channel first, arriving at any moment), both end every transaction exactly once,
    with the same transaction id, and agree that they are idle once the channels drain."""

    def __init__(self) -> None:
        super().__init__()
        self.i = Transactions(Role.INITIATOR)
        self.r = Transactions(Role.RESPONDER)
        self.i.session_open = True
        self.cmd_in = PacketParser(1 << 20)   # bytes towards the responder, command channel
        self.cmd_out = PacketParser(1 << 20)  # towards the initiator
        self.to_r: deque[tuple[Channel, bytes]] = deque()
        self.to_i: deque[bytes] = deque()
        self.i_ended: list[int] = []
        self.r_ended: list[int] = []
        self.r_current_source = 0               # data-in bytes the responder still has to send
        self.i_out_left: int | None = None      # data-out bytes the initiator still has to send

    # the initiator
    @precondition(lambda self: self.i.phase is Phase.IDLE)
    @rule(data_out=st.booleans(), length=st.sampled_from([0, 3, 70, None]))
    def initiator_requests(self, data_out: bool, length: int | None) -> None:
        req = self.i.request(0x9000, data_out=data_out)
        self.to_r.append((CMD, req.encode()))
        if data_out:
            self.to_r.append((CMD, self.i.start_data(length).encode()))
            self.i_out_left = 70 if length is None else length   # Start Data(0) is followed by End Data

    @precondition(lambda self: self.i_out_left is not None and self.i.phase is Phase.DATA_OUT)
    @rule(n=st.integers(0, 40), last=st.booleans())
    def initiator_sends_data(self, n: int, last: bool) -> None:
        assert self.i_out_left is not None
        n = min(n, self.i_out_left)
        last = last or n == self.i_out_left
        self.to_r.append((CMD, self.i.data_header(n, last) + b"d" * n))
        self.i_out_left -= n
        if last:
            self.i_out_left = None

    @precondition(lambda self: self.i.busy and not self.i.cancelling)
    @rule(event_first=st.booleans())
    def initiator_cancels(self, event_first: bool) -> None:
        c = self.i.cancel()
        assert c is not None
        self.i_out_left = None
        pair = [(EVT, c.encode()), (CMD, c.encode())]
        self.to_r.extend(pair if event_first else pair[::-1])

    @precondition(lambda self: self.to_i)
    @rule()
    def initiator_reads(self) -> None:
        self.cmd_out.receive_data(self.to_i.popleft())
        for p in self.cmd_out.events():
            for e in self.i.receive(p):
                if isinstance(e, TransactionEnded):
                    self.i_ended.append(e.request.transaction_id)
                    if e.data_out_cut:
                        self.i_out_left = None

    # the responder
    @precondition(lambda self: self.to_r)
    @rule(skip_event=st.booleans())
    def responder_reads(self, skip_event: bool) -> None:
        # the event channel may run ahead of or behind the command channel
        idx = 0
        if skip_event and len(self.to_r) > 1 and self.to_r[0][0] is EVT:
            idx = 1
        channel, raw = self.to_r[idx]
        del self.to_r[idx]
        if channel is EVT:
            packets = [Cancel(int.from_bytes(raw[8:12], "little"))]
        else:
            self.cmd_in.receive_data(raw)
            packets = list(self.cmd_in.events())
        for p in packets:
            for e in self.r.receive(p, channel):
                if isinstance(e, Send):
                    self.to_i.append(e.packet.encode())
                if isinstance(e, TransactionEnded):
                    self.r_ended.append(e.request.transaction_id)
                if isinstance(e, CancelRequested):
                    self.r_current_source = 0

    @precondition(lambda self: self.r.phase in (Phase.PROCESSING, Phase.RESPONSE_DUE))
    @rule(data_in=st.sampled_from([None, 0, 5, 50]))
    def responder_answers(self, data_in: int | None) -> None:
        if data_in is not None and self.r.phase is Phase.PROCESSING:
            out = self.r.start_data(data_in).encode() + self.r.data_header(data_in, last=True) + b"i" * data_in
            self.to_i.append(out)
        tid = self.r.transaction_id
        assert tid is not None
        self.to_i.append(self.r.respond(OK).encode())
        self.r_ended.append(tid)

    @precondition(lambda self: self.r.phase in (Phase.WAIT_START_DATA, Phase.DATA_OUT))
    @rule()
    def responder_refuses_data_out(self) -> None:
        tid = self.r.transaction_id
        self.to_i.append(self.r.respond(ResponseCode.StoreFull).encode())
        self.r_ended.append(tid)  # type: ignore[arg-type]

    @invariant()
    def both_end_each_transaction_once_and_in_order(self) -> None:
        assert self.r_ended == sorted(set(self.r_ended))
        assert self.i_ended == self.r_ended[:len(self.i_ended)]
        if not self.to_r and not self.to_i and self.r.phase is Phase.IDLE:
            assert self.i.phase is Phase.IDLE        # every response has reached the initiator


TestBothRoles = BothRoles.TestCase
TestBothRoles.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)


class AnyPacket(RuleBasedStateMachine):
    """Any transaction packet in any phase: an event, or UnexpectedPacket — nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.t = responder()

    @rule(p=st.one_of(
        st.builds(request, st.integers(0, 3), st.booleans()),
        st.builds(StartData, st.integers(0, 3), st.sampled_from([0, 2, UNKNOWN_LENGTH])),
        st.builds(Data, st.integers(0, 3), st.binary(max_size=4)),
        st.builds(EndData, st.integers(0, 3), st.binary(max_size=4)),
        st.builds(Cancel, st.integers(0, 3))), channel=st.sampled_from([CMD, EVT]))
    def packet(self, p: Any, channel: Channel) -> None:
        before = self.t.phase
        try:
            self.t.receive(p, channel)
        except UnexpectedPacket:
            self.t = responder()            # the connection closes; a new one starts
            return
        assert self.t.phase is before or (before, self.t.phase) != (None, None)

    @rule(code=st.sampled_from([OK, ResponseCode.GeneralError]))
    def answer(self, code: int) -> None:
        try:
            self.t.respond(code)
        except LocalProtocolError:
            assert self.t.phase in (Phase.IDLE, Phase.CANCELLING)


TestAnyPacket = AnyPacket.TestCase
TestAnyPacket.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
