"""Hypothesis state machines for both roles: in every state, every packet type (and
garbage) on either channel leads to a defined transition or a defined error (a response
code, Init Fail, or a close), never to an unexpected exception or a logged failure."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from ptpip.constants import OperationCode as Op
from ptpip.initiator import InitiatorSession, _Channel
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

from .helpers import GUID, OP_DATA_IN, OP_DATA_OUT, OP_REFUSE, OP_SLOW, Peer, ScriptedDevice, make_factory

u32 = st.integers(0, 0xFFFFFFFF)
small_tid = st.integers(0, 6)
codes = st.sampled_from([0x1001, 0x1002, OP_DATA_IN, OP_DATA_OUT, OP_SLOW, OP_REFUSE, 0x9999])
packets = st.one_of(
    st.builds(InitCommandRequest, st.just(GUID), st.just("x")),
    st.builds(InitCommandAck, u32, st.just(GUID)),
    st.builds(InitEventRequest, u32),
    st.just(InitEventAck()),
    st.builds(InitFail, st.integers(0, 4)),
    st.builds(OperationRequest, st.sampled_from([1, 2, 3]), codes, small_tid,
              st.lists(st.integers(0, 64), max_size=2).map(tuple)),
    st.builds(OperationResponse, st.integers(0x2001, 0x2020), small_tid),
    st.builds(Event, st.integers(0x4001, 0x400E), small_tid),
    st.builds(StartData, small_tid, st.sampled_from([0, 3, 10, 0xFFFFFFFFFFFFFFFF])),
    st.builds(Data, small_tid, st.binary(max_size=12)),
    st.builds(EndData, small_tid, st.binary(max_size=12)),
    st.builds(Cancel, small_tid),
    st.just(ProbeRequest()),
    st.just(ProbeResponse()),
)


class LogWatch:
    def __init__(self) -> None:
        self.failures: list[Any] = []
        globalLogPublisher.addObserver(self)

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event:
            self.failures.append(event)

    def close(self) -> None:
        globalLogPublisher.removeObserver(self)


class ResponderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.watch = LogWatch()
        self.device = ScriptedDevice()
        self.factory, self.clock = make_factory(self.device, max_pending=1000, max_per_address=1000,
                                                max_sessions=1000)
        self.new_session()

    def new_session(self) -> None:
        self.cmd = Peer(self.factory)
        self.cmd.send(InitCommandRequest(GUID, "fuzz"))
        ack = self.cmd.read()[0]
        self.evt = Peer(self.factory, port=40001)
        self.evt.send(InitEventRequest(ack.connection_number))
        self.evt.read()

    @rule(p=packets)
    def command_packet(self, p: Any) -> None:
        if not self.cmd.closed:
            self.cmd.send(p)

    @rule(p=packets)
    def event_packet(self, p: Any) -> None:
        if not self.evt.closed:
            self.evt.send(p)

    @rule(raw=st.binary(min_size=1, max_size=30))
    def garbage(self, raw: bytes) -> None:
        if not self.cmd.closed:
            self.cmd.sendRaw(raw)

    @rule()
    def device_answers(self) -> None:
        for s in self.device.sessions:
            if s.pending is not None and not s.pending.called:
                from ptpip.responder import Response
                s.pending.callback(Response())

    @rule(seconds=st.sampled_from([1, 31, 61]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def reconnect_if_closed(self) -> None:
        if self.cmd.closed or self.evt.closed:
            self.cmd.lose()
            self.evt.lose()
            self.new_session()

    @invariant()
    def nothing_unexpected(self) -> None:
        self.cmd.read()
        self.evt.read()
        assert not self.watch.failures, self.watch.failures[0].get("log_failure")

    def teardown(self) -> None:
        self.watch.close()


TestResponderStateMachine = ResponderMachine.TestCase
TestResponderStateMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


class InitiatorMachine(RuleBasedStateMachine):
    """The responder side is played by Hypothesis: any packet, any time."""

    def __init__(self) -> None:
        super().__init__()
        self.watch = LogWatch()
        self.clock = task.Clock()
        self.cmd = _Channel()
        self.evt = _Channel()
        for ch, port in ((self.cmd, 1), (self.evt, 2)):
            ch.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port)))
            ch.init.callback(None)          # the handshake is done (connectEndpoints consumed it)
        self.session = InitiatorSession(self.cmd, self.evt, InitCommandAck(1, GUID, "r"), GUID, "i",
                                        reactor=self.clock, probe_interval=5, probe_timeout=10)
        self.requests: list[defer.Deferred[Any]] = []

    @rule(code=st.sampled_from([Op.GetDeviceInfo, Op.OpenSession, Op.GetStorageIDs]),
          data=st.one_of(st.none(), st.binary(max_size=10)))
    def request(self, code: int, data: bytes | None) -> None:
        d = self.session.request(code, data=data)
        d.addErrback(lambda f: None)
        self.requests.append(d)

    @rule(p=packets)
    def command_packet(self, p: Any) -> None:
        if not self.cmd.closed:
            self.cmd.dataReceived(p.encode())

    @rule(p=packets)
    def event_packet(self, p: Any) -> None:
        if not self.evt.closed:
            self.evt.dataReceived(p.encode())

    @rule(raw=st.binary(min_size=1, max_size=30))
    def garbage(self, raw: bytes) -> None:
        if not self.cmd.closed:
            self.cmd.dataReceived(raw)

    @rule()
    def cancel(self) -> None:
        self.session.cancel()

    @rule(seconds=st.sampled_from([1, 6, 11]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def lose(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure
        for ch in (self.cmd, self.evt):
            if not ch.closed:
                ch.connectionLost(Failure(ConnectionDone()))

    @invariant()
    def nothing_unexpected(self) -> None:
        assert not self.watch.failures, self.watch.failures[0].get("log_failure")
        if self.session.closed:
            # every request made is answered one way or another once the session is gone
            assert all(d.called for d in self.requests)

    def teardown(self) -> None:
        self.watch.close()


TestInitiatorStateMachine = InitiatorMachine.TestCase
TestInitiatorStateMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
