"""The responder's glue, driven in memory: establishment (spec 2.2.3.1), Init Fail
paths, both data-phase directions, backpressure, cancel, timeouts with task.Clock."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer, task
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ptpip.constants import (
    PROTOCOL_VERSION,
    UNKNOWN_LENGTH,
    DataPhase,
    FailReason,
    ResponseCode,
)
from ptpip.interfaces import IDataSource, IEventSink, IInitiatorInfo, IInitiatorPolicy, IResponderSession
from ptpip.packets import (
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
    ProbeRequest,
    ProbeResponse,
    StartData,
)
from ptpip.streams import FileSource

from .helpers import (
    GUID,
    OP_DATA_IN,
    OP_DATA_OUT,
    OP_REFUSE,
    OP_SLOW,
    Peer,
    ScriptedDevice,
    data_payload,
    establish,
    make_factory,
)

IN = DataPhase.NO_DATA_OR_DATA_IN
OUT = DataPhase.DATA_OUT


# -- establishment ----------------------------------------------------------------

def test_handshake_assigns_a_connection_number_and_associates_the_event_channel():
    """Init Command Ack carries a fresh number, our GUID, name and version; the event
    channel joins with that number and gets Init Event Ack; the device sees the initiator."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd = Peer(factory)
    cmd.send(InitCommandRequest(GUID, "tester", PROTOCOL_VERSION))
    [ack] = cmd.read()
    assert isinstance(ack, InitCommandAck)
    assert ack.guid == b"\xaa" * 16 and ack.friendly_name == "resp" and ack.version == PROTOCOL_VERSION
    assert ack.connection_number != 0
    assert device.sessions == []          # not established until the event channel comes
    evt = Peer(factory, port=40001)
    evt.send(InitEventRequest(ack.connection_number))
    assert evt.read() == [InitEventAck()]
    [session] = device.sessions
    assert verifyObject(IInitiatorInfo, session.initiator)
    assert session.initiator.guid == GUID and session.initiator.friendly_name == "tester"
    assert session.initiator.address.host == "127.0.0.1"
    assert verifyObject(IEventSink, session.events)
    assert len(factory.sessions) == 1


def test_connection_numbers_are_fresh():
    factory, _ = make_factory(max_sessions=32, max_pending=32, max_per_address=32)
    numbers = set()
    for i in range(20):
        p = Peer(factory, port=41000 + i)
        p.send(InitCommandRequest(GUID, "x"))
        numbers.add(p.read()[0].connection_number)
    assert len(numbers) == 20


@implementer(IInitiatorPolicy)
class Refuse:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def accept(self, initiator: Any) -> bool:
        self.seen.append(initiator)
        return False


def test_policy_rejection_answers_rejected_initiator_and_closes():
    policy = Refuse()
    factory, _ = make_factory(policy=policy)
    cmd = Peer(factory)
    cmd.send(InitCommandRequest(GUID, "stranger"))
    assert cmd.read() == [InitFail(FailReason.REJECTED_INITIATOR)]
    assert cmd.closed
    assert policy.seen[0].friendly_name == "stranger"


def test_policy_may_decide_later():
    """A policy may return a Deferred (a user confirming a pairing on the camera)."""
    decision: defer.Deferred[bool] = defer.Deferred()

    @implementer(IInitiatorPolicy)
    class Ask:
        def accept(self, initiator: Any) -> defer.Deferred[bool]:
            return decision

    factory, _ = make_factory(policy=Ask())
    cmd = Peer(factory)
    cmd.send(InitCommandRequest(GUID, "phone"))
    assert cmd.read() == []
    decision.callback(True)
    assert isinstance(cmd.read()[0], InitCommandAck)


def test_busy_above_the_session_limit():
    factory, _ = make_factory(max_sessions=1)
    establish(factory)
    third = Peer(factory, port=42000)
    third.send(InitCommandRequest(GUID, "late"))
    assert third.read() == [InitFail(FailReason.BUSY)]
    assert third.closed


def test_unknown_connection_number_answers_unspecified():
    factory, _ = make_factory()
    evt = Peer(factory)
    evt.send(InitEventRequest(12345))
    assert evt.read() == [InitFail(FailReason.UNSPECIFIED)]
    assert evt.closed


def test_event_channel_from_another_host_is_refused():
    factory, _ = make_factory()
    cmd = Peer(factory)
    cmd.send(InitCommandRequest(GUID, "x"))
    ack = cmd.read()[0]
    evt = Peer(factory, host="127.0.0.2")
    evt.send(InitEventRequest(ack.connection_number))
    assert evt.read() == [InitFail(FailReason.UNSPECIFIED)]


@pytest.mark.parametrize("first", [
    OperationRequest(1, 0x1001, 0), ProbeRequest(), Cancel(1), InitEventAck(), StartData(1, 0)])
def test_wrong_first_packet_answers_unspecified(first):
    factory, _ = make_factory()
    p = Peer(factory)
    p.send(first)
    assert p.read() == [InitFail(FailReason.UNSPECIFIED)]
    assert p.closed


def test_framing_error_before_establishment_answers_init_fail():
    factory, _ = make_factory()
    p = Peer(factory)
    p.sendRaw(bytes.fromhex("08000000" "99000000"))
    assert p.read() == [InitFail(FailReason.UNSPECIFIED)]
    assert p.closed


def test_other_major_version_fails_when_strict():
    """Spec 5.5: different major numbers are not compatible; --strict-version refuses them."""
    factory, _ = make_factory(strict_version=True)
    p = Peer(factory)
    p.send(InitCommandRequest(GUID, "future", 0x00020000))
    assert p.read() == [InitFail(FailReason.UNSPECIFIED)]


@pytest.mark.parametrize("version", [0x00000064, 0x00020000, 0])
def test_other_major_versions_are_accepted_and_answered_with_ours_by_default(version):
    """A Python PTP library in use with real cameras sends 0x00000064 (major and minor
    swapped); real cameras accept it, and spec 5.5 rule 4 leaves the decision to the
    initiator: we answer with our own version and log a warning."""
    from twisted.logger import globalLogPublisher
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        factory, _ = make_factory()
        cmd, evt = establish(factory, version=version)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert len(factory.sessions) == 1
    assert cmd.received[0].version == PROTOCOL_VERSION
    assert any("another major number" in e.get("log_format", "") and e.get("v") == version for e in seen)


def test_newer_minor_version_is_answered_with_ours_and_older_with_theirs():
    """Spec 5.5 rule 4: RPV is ours unless the initiator's is smaller."""
    factory, _ = make_factory(version=0x00010002)
    p = Peer(factory)
    p.send(InitCommandRequest(GUID, "newer", 0x00010005))
    assert p.read()[0].version == 0x00010002
    q = Peer(factory, port=40010)
    q.send(InitCommandRequest(GUID, "older", 0x00010000))
    assert q.read()[0].version == 0x00010000


def test_establishment_times_out_after_30_seconds_without_event_channel():
    """Spec 2.2.3.1: no event channel within 30 s closes the command channel."""
    factory, clock = make_factory()
    cmd = Peer(factory)
    cmd.send(InitCommandRequest(GUID, "slow"))
    cmd.read()
    clock.advance(29.9)
    assert not cmd.closed
    clock.advance(0.2)
    assert cmd.closed
    cmd.lose()
    assert factory._pending == {}


def test_silent_connection_times_out():
    factory, clock = make_factory()
    p = Peer(factory)
    clock.advance(30)
    assert p.closed


def test_established_session_does_not_time_out():
    factory, clock = make_factory()
    cmd, evt = establish(factory)
    clock.advance(3600)
    assert not cmd.closed and not evt.closed


def test_established_connection_number_cannot_be_joined_twice():
    factory, _ = make_factory()
    cmd = Peer(factory)
    cmd.send(InitCommandRequest(GUID, "x"))
    number = cmd.read()[0].connection_number
    evt = Peer(factory, port=40001)
    evt.send(InitEventRequest(number))
    intruder = Peer(factory, port=40002)
    intruder.send(InitEventRequest(number))
    assert intruder.read() == [InitFail(FailReason.UNSPECIFIED)]


# -- session life -------------------------------------------------------------------

@pytest.mark.parametrize("which", ["command", "event"])
def test_either_channel_closing_ends_the_session(which):
    """Spec 1.7 / 2.2.3.3: losing one channel closes the other and tells the device."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    (cmd if which == "command" else evt).lose()
    other = evt if which == "command" else cmd
    assert other.closed
    assert len(device.sessions[0].lost) == 1
    assert factory.sessions == set()


def test_events_go_out_on_the_event_channel():
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    device.sessions[0].events.sendEvent(0x4002, (7,))
    assert evt.read() == [Event(0x4002, 0xFFFFFFFF, (7,))]
    assert cmd.read() == []


def test_probe_request_is_answered_at_once():
    factory, _ = make_factory()
    cmd, evt = establish(factory)
    evt.send(ProbeRequest())
    assert evt.read() == [ProbeResponse()]


def test_sessions_are_isolated():
    """A protocol error on one session leaves another untouched."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    a_cmd, a_evt = establish(factory)
    b_cmd, b_evt = establish(factory, name="b")
    a_cmd.sendRaw(bytes.fromhex("08000000" "77000000"))
    assert a_cmd.closed
    a_cmd.lose()
    assert a_evt.closed
    b_cmd.send(OperationRequest(IN, OP_DATA_IN, 1, (10,)))
    assert b_cmd.read()[-1] == OperationResponse(ResponseCode.OK, 1, (10,))


# -- transactions ----------------------------------------------------------------------

def test_operation_without_data_echoes_the_transaction_id():
    factory, _ = make_factory()
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, 0x1002, 42, (1,)))
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 42)]


def test_data_in_sends_exact_length_bounded_packets_then_end_data_and_response():
    factory, _ = make_factory(data_packet_size=1000)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, OP_DATA_IN, 5, (2500,)))
    packets = cmd.read()
    assert packets[0] == StartData(5, 2500)
    body = packets[1:-1]
    assert all(p.transaction_id == 5 for p in body)
    assert [type(p) for p in body] == [Data, Data, EndData]
    assert [len(p.payload) for p in body] == [1000, 1000, 500]
    assert data_payload(body) == bytes(i % 251 for i in range(2500))
    assert packets[-1] == OperationResponse(ResponseCode.OK, 5, (2500,))


def test_small_data_in_is_start_data_and_end_data():
    factory, _ = make_factory()
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, OP_DATA_IN, 1, (3,)))
    assert cmd.read() == [StartData(1, 3), EndData(1, b"\x00\x01\x02"),
                          OperationResponse(ResponseCode.OK, 1, (3,))]


def test_empty_data_in():
    factory, _ = make_factory()
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, OP_DATA_IN, 1, (0,)))
    assert cmd.read() == [StartData(1, 0), EndData(1, b""), OperationResponse(ResponseCode.OK, 1, (0,))]


def test_data_out_streams_into_the_consumer():
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(OUT, OP_DATA_OUT, 3), StartData(3, 10), Data(3, b"01234"),
             Data(3, b"567"), EndData(3, b"89"))
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 3, (10,))]
    assert device.sessions[0].received == [b"0123456789"]


@pytest.mark.parametrize("with_end_data", [False, True])
def test_zero_length_data_out_with_and_without_end_data(with_end_data):
    """Spec 2.3.6 wants Start Data(0) + End Data; libgphoto2 sends Start Data(0) alone."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(OUT, OP_DATA_OUT, 3), StartData(3, 0))
    if with_end_data:
        cmd.send(EndData(3))
    cmd.send(OperationRequest(IN, 0x1001, 4))
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 3, (0,)), OperationResponse(ResponseCode.OK, 4)]
    assert device.sessions[0].received == [b""]


def test_unknown_total_length_reads_until_end_data():
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(OUT, OP_DATA_OUT, 3), StartData(3, UNKNOWN_LENGTH),
             Data(3, b"abc"), Data(3, b"def"), EndData(3))
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 3, (6,))]


@pytest.mark.parametrize("announced,sent", [(10, [b"12345", b""]), (4, [b"12345", b""]), (4, [b"12", b"345"])])
def test_byte_count_disagreeing_with_the_announced_length_is_incomplete_transfer(announced, sent):
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(OUT, OP_DATA_OUT, 3), StartData(3, announced), Data(3, sent[0]), EndData(3, sent[1]))
    assert cmd.read() == [OperationResponse(ResponseCode.IncompleteTransfer, 3)]
    # The session goes on.
    cmd.send(OperationRequest(IN, 0x1001, 4))
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 4)]


def test_refusing_a_data_out_discards_the_rest():
    """5.6.2 case 1: the responder answers early, then ignores the data-out packets."""
    factory, _ = make_factory()
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(OUT, OP_REFUSE, 3), StartData(3, 6))
    assert cmd.read() == [OperationResponse(ResponseCode.StoreFull, 3)]
    cmd.send(Data(3, b"abc"), EndData(3, b"def"), OperationRequest(IN, 0x1001, 4))
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 4)]
    assert not cmd.closed


def test_unknown_data_phase_closes_the_connection():
    """Spec 2.3.6 footnote: a responder that does not support it closes the connection."""
    factory, _ = make_factory()
    cmd, evt = establish(factory)
    cmd.send(OperationRequest(DataPhase.UNKNOWN, 0x9999, 1))
    assert cmd.closed


@pytest.mark.parametrize("packet", [
    InitCommandRequest(GUID, "again"), InitEventRequest(1), OperationResponse(0x2001, 1), Event(0x4002, 1),
    Data(1, b"x"), EndData(9, b"x"), StartData(1, 5)])
def test_out_of_place_packets_on_the_command_channel_close_it(packet):
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    cmd.send(packet)
    assert cmd.closed
    cmd.lose()
    assert evt.closed and device.sessions[0].lost


def test_second_request_during_a_transaction_closes():
    factory, _ = make_factory()
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, OP_SLOW, 1), OperationRequest(IN, 0x1001, 2))
    assert cmd.closed


def test_device_errors_become_response_codes():
    factory, _ = make_factory()
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, OP_REFUSE, 7))
    assert cmd.read() == [OperationResponse(ResponseCode.StoreFull, 7)]


def test_unexpected_device_exception_is_general_error_not_a_crash():
    device = ScriptedDevice()
    device.source = lambda n: 1 / 0
    factory, _ = make_factory(device)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, OP_DATA_IN, 7, (3,)))
    assert cmd.read() == [OperationResponse(ResponseCode.GeneralError, 7)]
    cmd.send(OperationRequest(IN, 0x1001, 8))
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 8)]


# -- backpressure -------------------------------------------------------------------

def _manual_cooperator() -> tuple[task.Cooperator, list]:
    steps: list = []
    coop = task.Cooperator(scheduler=steps.append, terminationPredicateFactory=lambda: (lambda: True))
    return coop, steps


def test_data_in_producer_stops_when_the_transport_pauses(tmp_path):
    """The transport pausing the producer (its buffer full) stops the file reads."""
    path = tmp_path / "big"
    path.write_bytes(bytes(range(256)) * 400)      # 102400 bytes
    coop, steps = _manual_cooperator()
    device = ScriptedDevice()
    device.source = lambda n: FileSource(open(path, "rb"), chunk_size=1024, cooperator=coop)
    factory, _ = make_factory(device)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, OP_DATA_IN, 1, (0,)))
    producer = cmd.transport.producer            # the channel's write watch, in front of the source
    assert producer is not None and cmd.transport.streaming and producer.inner is not None
    steps.pop(0)()
    first = len(cmd.transport.value())
    assert first > 0
    producer.pauseProducing()            # what a full socket buffer does
    while steps:
        steps.pop(0)()
    assert len(cmd.transport.value()) == first
    producer.resumeProducing()
    while steps:
        steps.pop(0)()
    packets = cmd.read()
    assert packets[0] == StartData(1, 102400)
    assert data_payload(packets) == path.read_bytes()
    assert packets[-1] == OperationResponse(ResponseCode.OK, 1, (0,))
    assert producer.inner is None


def test_data_out_consumer_pausing_stops_reading():
    """The consumer pausing the data-out phase pauses the socket and holds parsed data."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(OUT, OP_DATA_OUT, 3), StartData(3, 6), Data(3, b"ab"))
    consumer = device.sessions[0].consumer
    consumer.producer.pauseProducing()
    assert cmd.transport.producerState == "paused"
    cmd.send(Data(3, b"cd"), EndData(3, b"ef"))
    assert consumer.value() == b"ab"
    consumer.producer.resumeProducing()
    assert cmd.transport.producerState == "producing"
    assert device.sessions[0].received == [b"abcdef"]
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 3, (6,))]


def test_data_out_is_not_read_until_the_device_chooses_a_consumer():
    """Until deliverTo is called, the connection does not read on."""
    later: list = []

    from .helpers import ScriptedSession

    class LateSession(ScriptedSession):
        def handleOperation(self, request: Any, incoming: Any) -> Any:
            later.append(incoming)
            return defer.Deferred()

    device = ScriptedDevice()
    device.newSession = lambda i, e: LateSession(device, i, e)  # type: ignore[method-assign]
    factory, _ = make_factory(device)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(OUT, OP_DATA_OUT, 3), StartData(3, 4))
    assert cmd.transport.producerState == "paused"
    from ptpip.streams import BytesConsumer
    sink = BytesConsumer()
    d = later[0].deliverTo(sink)
    cmd.send(EndData(3, b"wxyz"))
    assert sink.value() == b"wxyz" and d.called


# -- cancel (spec 5.6.1) --------------------------------------------------------------

def test_cancel_before_the_request_is_ignored():
    """Case 1.2: a Cancel on the event channel before any request changes nothing."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    evt.send(Cancel(1))
    cmd.send(OperationRequest(IN, 0x1001, 1))
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 1)]


def test_cancel_during_data_out_on_the_command_channel():
    """Case 2.1: answer TransactionCancelled, discard the rest, ignore the event-channel Cancel."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    cmd.send(OperationRequest(OUT, OP_DATA_OUT, 3), StartData(3, 10), Data(3, b"abc"), Cancel(3))
    assert cmd.read() == [OperationResponse(ResponseCode.TransactionCancelled, 3)]
    evt.send(Cancel(3))
    cmd.send(Data(3, b"def"), OperationRequest(IN, 0x1001, 4))
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 4)]
    assert device.sessions[0].received == []
    assert device.sessions[0].cancelled == [3]


def test_cancel_during_data_out_first_on_the_event_channel_waits_for_the_command_one():
    """Case 2.2: ignore data packets until the Cancel on the command channel, then answer."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    cmd.send(OperationRequest(OUT, OP_DATA_OUT, 3), StartData(3, 10), Data(3, b"abc"))
    evt.send(Cancel(3))
    cmd.send(Data(3, b"def"))
    assert cmd.read() == []
    cmd.send(Cancel(3))
    assert cmd.read() == [OperationResponse(ResponseCode.TransactionCancelled, 3)]


def test_cancel_during_data_in_stops_sending(tmp_path):
    """Case 3.1: data-in stops and TransactionCancelled follows."""
    path = tmp_path / "big"
    path.write_bytes(b"z" * 10000)
    coop, steps = _manual_cooperator()
    device = ScriptedDevice()
    device.source = lambda n: FileSource(open(path, "rb"), chunk_size=1000, cooperator=coop)
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    cmd.send(OperationRequest(IN, OP_DATA_IN, 9, (0,)))
    steps.pop(0)()
    cmd.send(Cancel(9))
    evt.send(Cancel(9))
    while steps:
        steps.pop(0)()
    packets = cmd.read()
    assert packets[0] == StartData(9, 10000)
    assert packets[-1] == OperationResponse(ResponseCode.TransactionCancelled, 9)
    assert not any(isinstance(p, EndData) for p in packets)
    assert len(data_payload(packets)) < 10000


def test_cancel_while_processing_answers_cancelled_once():
    """Case 4: the device's late answer is dropped; one TransactionCancelled goes out."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    cmd.send(OperationRequest(IN, OP_SLOW, 5))
    evt.send(Cancel(5))
    assert cmd.read() == []
    cmd.send(Cancel(5))
    device.sessions[0].pending.callback(__import__("ptpip.responder").responder.Response())
    assert cmd.read() == [OperationResponse(ResponseCode.TransactionCancelled, 5)]


def test_cancel_after_the_response_is_ignored():
    """Case 5: the transaction is over; only the device hears of it (it may be asynchronous)."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    cmd.send(OperationRequest(IN, 0x1001, 5))
    cmd.read()
    cmd.send(Cancel(5))
    evt.send(Cancel(5))
    assert cmd.read() == []
    assert device.sessions[0].cancelled == [5, 5]


def test_device_provider_interfaces():
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    establish(factory)
    assert verifyObject(IResponderSession, device.sessions[0])
    from ptpip.streams import BytesSource
    assert verifyObject(IDataSource, BytesSource(b"x"))
