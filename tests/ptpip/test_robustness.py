"""Faults, timeouts and limits, driven in memory with task.Clock: stalls mid-packet and
mid-phase, a peer that stops reading, idle sessions, pending and per-address limits,
probing before BUSY, initiator policies, and the cancel cases not covered elsewhere."""

from __future__ import annotations

import os
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address

from ptpip.constants import ANONYMOUS_GUID, DataPhase, FailReason, ResponseCode
from ptpip.packets import (
    Cancel,
    Data,
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
from ptpip.policy import AcceptAllPolicy, AllowListPolicy, PairingPolicy, read_guids, write_guids
from ptpip.responder import InitiatorInfo, Response
from ptpip.streams import FileSource

from .helpers import (
    GUID,
    OP_DATA_IN,
    OP_DATA_OUT,
    OP_SLOW,
    Peer,
    ScriptedDevice,
    data_payload,
    establish,
    make_factory,
)

IN, OUT = DataPhase.NO_DATA_OR_DATA_IN, DataPhase.DATA_OUT


# -- stalls ------------------------------------------------------------------------

def test_peer_stopping_mid_packet_is_closed_after_the_stall_timeout():
    factory, clock = make_factory(stall_timeout=60)
    cmd, evt = establish(factory)
    cmd.sendRaw(OperationRequest(IN, 0x1001, 1).encode()[:7])
    clock.advance(59)
    assert not cmd.closed
    clock.advance(2)
    assert cmd.closed


def test_one_byte_every_few_seconds_does_not_hold_a_slot_forever():
    """Trickling keeps resetting the stall timer, but the 30 s establishment limit still applies."""
    factory, clock = make_factory(stall_timeout=60)
    p = Peer(factory)
    raw = InitCommandRequest(GUID, "slowpoke").encode()
    for i in range(10):
        p.sendRaw(raw[i:i + 1])
        clock.advance(3)
    assert p.closed                                      # 30 s after connecting


def test_peer_stopping_mid_data_out_is_closed_and_the_device_told():
    device = ScriptedDevice()
    factory, clock = make_factory(device, stall_timeout=60)
    cmd, evt = establish(factory)
    cmd.send(OperationRequest(OUT, OP_DATA_OUT, 1), StartData(1, 1000), Data(1, b"x" * 100))
    clock.advance(61)
    assert cmd.closed
    cmd.lose()
    assert device.sessions[0].lost and evt.closed


def test_waiting_for_the_device_is_not_a_stall():
    """While we hold the socket (the device has not chosen a consumer) the peer is not to blame."""
    device = ScriptedDevice()
    factory, clock = make_factory(device, stall_timeout=60)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, OP_SLOW, 1))
    clock.advance(600)
    assert not cmd.closed


def test_peer_that_stops_reading_is_closed(tmp_path):
    """When the transport says its buffer is full (it pauses us) for the stall timeout, abort."""
    path = tmp_path / "f"
    path.write_bytes(b"y" * 100_000)
    device = ScriptedDevice()
    steps: list = []
    from twisted.internet import task
    coop = task.Cooperator(scheduler=steps.append)
    device.source = lambda n: FileSource(open(path, "rb"), chunk_size=1000, cooperator=coop)
    factory, clock = make_factory(device, stall_timeout=30)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, OP_DATA_IN, 1, (0,)))
    cmd.transport.producer.pauseProducing()          # what a full socket buffer does
    clock.advance(29)
    assert not cmd.closed
    clock.advance(2)
    assert cmd.transport.disconnecting


def test_event_channel_that_is_not_read_is_closed():
    factory, clock = make_factory(stall_timeout=30)
    cmd, evt = establish(factory)
    evt.transport.producer.pauseProducing()
    clock.advance(31)
    assert evt.transport.disconnecting


# -- idle ----------------------------------------------------------------------------

def test_idle_sessions_close_when_configured():
    factory, clock = make_factory(idle_timeout=300)
    cmd, evt = establish(factory)
    clock.advance(200)
    cmd.send(OperationRequest(IN, 0x1001, 1))
    clock.advance(200)
    assert not cmd.closed
    clock.advance(101)
    assert cmd.closed and evt.closed


def test_a_long_transaction_is_not_idleness():
    factory, clock = make_factory(idle_timeout=300)
    cmd, _ = establish(factory)
    cmd.send(OperationRequest(IN, OP_SLOW, 1))
    clock.advance(1000)
    assert not cmd.closed


def test_sessions_stay_open_by_default():
    factory, clock = make_factory()
    cmd, _ = establish(factory)
    clock.advance(86400)
    assert not cmd.closed


# -- limits ------------------------------------------------------------------------------

def test_too_many_pending_handshakes_get_busy():
    """Handshakes in flight (Init Command Request answered, no event channel yet) are
    limited; a connection that has sent nothing is not a handshake and is not refused."""
    factory, clock = make_factory(max_pending=3, max_per_address=8)
    waiting = []
    for i in range(3):
        p = Peer(factory, port=41000 + i)
        p.send(InitCommandRequest(GUID, f"w{i}"))
        assert isinstance(p.read()[0], InitCommandAck)
        waiting.append(p)
    extra = Peer(factory, port=42000)
    assert extra.read() == [] and not extra.closed
    extra.send(InitCommandRequest(GUID, "extra"))
    assert extra.read() == [InitFail(FailReason.BUSY)] and extra.closed
    # an event channel for a known connection is always taken, whatever the limit
    evt = Peer(factory, port=43000)
    evt.send(InitEventRequest(waiting[0].received[0].connection_number))
    assert evt.read() == [InitEventAck()]
    assert not any(p.closed for p in waiting)


def test_per_address_limit():
    factory, clock = make_factory(max_per_address=2)
    establish(factory)
    establish(factory)
    third = Peer(factory)
    third.send(InitCommandRequest(GUID, "third"))
    assert third.read() == [InitFail(FailReason.BUSY)]
    other = Peer(factory, host="127.0.0.9")
    other.send(InitCommandRequest(GUID, "elsewhere"))
    assert isinstance(other.read()[0], InitCommandAck)


def test_dead_sessions_are_probed_and_reclaimed_before_busy():
    """Spec 2.3.13: at the session limit, idle sessions are probed; one that does not
    answer within the probe timeout is closed and its slot given to the newcomer."""
    factory, clock = make_factory(max_sessions=1, probe_timeout=10, probe_idle=10, reclaim_idle=15)
    old_cmd, old_evt = establish(factory)
    clock.advance(20)
    new = Peer(factory, port=43000)
    new.send(InitCommandRequest(GUID, "newcomer"))
    assert old_evt.read() == [ProbeRequest()]
    assert new.read() == []
    clock.advance(10.1)
    assert old_cmd.closed and old_evt.closed
    old_cmd.lose()
    assert isinstance(new.read()[0], InitCommandAck)


def test_live_sessions_answer_the_probe_and_the_newcomer_gets_busy():
    factory, clock = make_factory(max_sessions=1, probe_timeout=10, probe_idle=10)
    old_cmd, old_evt = establish(factory)
    clock.advance(20)
    new = Peer(factory, port=43000)
    new.send(InitCommandRequest(GUID, "newcomer"))
    assert old_evt.read() == [ProbeRequest()]
    old_evt.send(ProbeResponse())
    assert new.read() == [InitFail(FailReason.BUSY)]
    assert not old_cmd.closed


def test_busy_sessions_are_not_probed():
    """A session in the middle of a transaction (gphoto2 never answers probes) is left alone."""
    factory, clock = make_factory(max_sessions=1, probe_idle=10)
    old_cmd, old_evt = establish(factory)
    old_cmd.send(OperationRequest(IN, OP_SLOW, 1))
    clock.advance(20)
    new = Peer(factory, port=43000)
    new.send(InitCommandRequest(GUID, "newcomer"))
    assert old_evt.read() == []
    assert new.read() == [InitFail(FailReason.BUSY)]


# -- policies (spec 5.3) --------------------------------------------------------------------

def info(guid: bytes) -> InitiatorInfo:
    return InitiatorInfo(guid, "x", 0x10000, IPv4Address("TCP", "127.0.0.1", 1))


def test_accept_all_and_anonymous():
    assert AcceptAllPolicy().accept(info(ANONYMOUS_GUID))
    assert not AcceptAllPolicy(anonymous=False).accept(info(ANONYMOUS_GUID))
    assert AcceptAllPolicy(anonymous=False).accept(info(GUID))


def test_allow_list_from_a_file_follows_edits(tmp_path):
    path = str(tmp_path / "guids")
    with open(path, "w") as f:
        f.write("# phones\n" + GUID.hex() + "\n")
    policy = AllowListPolicy(path)
    assert policy.accept(info(GUID)) and not policy.accept(info(b"\x01" * 16))
    assert not policy.accept(info(ANONYMOUS_GUID))
    os.utime(path, (1, 1))
    write_guids(path, [b"\x01" * 16])
    assert policy.accept(info(b"\x01" * 16)) and not policy.accept(info(GUID))


def test_pairing_accepts_the_next_new_initiator_once_and_remembers_it(tmp_path):
    path = str(tmp_path / "paired")
    policy = PairingPolicy(path, pairs=1)
    assert policy.accept(info(GUID))                       # paired
    assert read_guids(path) == {GUID}
    assert not policy.accept(info(b"\x02" * 16))           # pairing is over
    assert policy.accept(info(GUID))                       # remembered
    again = PairingPolicy(path, pairs=0)                   # after a restart
    assert again.accept(info(GUID))


def test_rejected_initiator_gets_init_fail(tmp_path):
    path = str(tmp_path / "guids")
    write_guids(path, [b"\x03" * 16])
    factory, _ = make_factory(policy=AllowListPolicy(path))
    p = Peer(factory)
    p.send(InitCommandRequest(GUID, "stranger"))
    assert p.read() == [InitFail(FailReason.REJECTED_INITIATOR)]


def test_plugin_policy_options(tmp_path):
    from twisted.python import usage

    from ptpip.tap import Options, makeService
    path = str(tmp_path / "g")
    write_guids(path, [GUID])
    o = Options()
    o.parseOptions(["--allow-list", path, "--no-anonymous", "--root", str(tmp_path),
                    "--listen", "tcp:0:interface=127.0.0.1", "--stall-timeout", "5", "--idle-timeout", "60"])
    factory = list(makeService(o))[1].factory
    assert isinstance(factory.policy, AllowListPolicy) and not factory.policy.anonymous
    assert factory.stall_timeout == 5 and factory.idle_timeout == 60
    with open(str(tmp_path / "bad"), "w") as f:
        f.write("nothex\n")
    with pytest.raises(usage.UsageError, match="--allow-list"):
        Options().parseOptions(["--allow-list", str(tmp_path / "bad")])
    with pytest.raises(usage.UsageError, match="not both"):
        Options().parseOptions(["--allow-list", path, "--pair", path])


# -- the remaining cancel cases (spec 5.6.1) -------------------------------------------------

def test_cancel_during_data_in_first_on_the_event_channel_waits_for_the_command_one(tmp_path):
    """Case 3.2: data-in stops at once; the response waits for the command-channel Cancel."""
    path = tmp_path / "big"
    path.write_bytes(b"z" * 10000)
    from twisted.internet import task
    steps: list = []
    coop = task.Cooperator(scheduler=steps.append, terminationPredicateFactory=lambda: (lambda: True))
    device = ScriptedDevice()
    device.source = lambda n: FileSource(open(path, "rb"), chunk_size=1000, cooperator=coop)
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    cmd.send(OperationRequest(IN, OP_DATA_IN, 9, (0,)))
    steps.pop(0)()
    evt.send(Cancel(9))
    while steps:
        steps.pop(0)()
    packets = cmd.read()
    assert not any(isinstance(p, OperationResponse) for p in packets)
    assert len(data_payload(packets)) < 10000
    cmd.send(Cancel(9))
    assert cmd.read() == [OperationResponse(ResponseCode.TransactionCancelled, 9)]
    assert device.sessions[0].cancelled == [9]


def test_cancel_while_processing_first_on_the_command_channel():
    """Case 4.1: answered at once; the event-channel Cancel that follows is ignored."""
    device = ScriptedDevice()
    factory, _ = make_factory(device)
    cmd, evt = establish(factory)
    cmd.send(OperationRequest(IN, OP_SLOW, 5), Cancel(5))
    assert cmd.read() == [OperationResponse(ResponseCode.TransactionCancelled, 5)]
    evt.send(Cancel(5))
    device.sessions[0].pending.callback(Response())
    assert cmd.read() == []
    cmd.send(OperationRequest(IN, 0x1001, 6))
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 6)]


def test_asynchronous_capture_is_cancelled_by_transaction_id(tmp_path):
    """2.7.3: Cancel of an InitiateCapture's transaction ends it with CaptureComplete, no object."""
    from zope.interface import implementer

    from ptpip.camera import Camera
    from ptpip.constants import EventCode
    from ptpip.constants import OperationCode as Op
    from ptpip.filestore import FilesystemStore
    from ptpip.interfaces import ICaptureSource
    from ptpip.packets import Event

    @implementer(ICaptureSource)
    class Slow:
        def capture(self, object_format: int) -> defer.Deferred[Any]:
            return defer.Deferred()

    root = tmp_path / "cam"
    root.mkdir()
    factory, clock = make_factory(Camera(FilesystemStore(str(root)), capture=Slow(), scan_interval=None))
    cmd, evt = establish(factory)
    cmd.send(OperationRequest(IN, Op.OpenSession, 0, (1,)), OperationRequest(IN, Op.InitiateCapture, 1, (0, 0)))
    assert cmd.read()[-1] == OperationResponse(ResponseCode.OK, 1)
    cmd.send(Cancel(1))
    evt.send(Cancel(1))
    assert evt.read() == [Event(EventCode.CaptureComplete, 1, ())]
    assert os.listdir(root) == []
    cmd.send(OperationRequest(IN, Op.InitiateCapture, 2, (0, 0)))        # not busy any more
    assert cmd.read() == [OperationResponse(ResponseCode.OK, 2)]


def test_a_silent_session_active_recently_is_kept_at_the_session_limit():
    """libgphoto2 never answers Probe Requests: a live gphoto2 session that paused for a
    while is probed at the limit, does not answer, and is kept (it was active under
    --reclaim-idle seconds ago); the newcomer gets BUSY."""
    factory, clock = make_factory(max_sessions=1, probe_timeout=10, probe_idle=10, reclaim_idle=300)
    old_cmd, old_evt = establish(factory)
    clock.advance(20)
    new = Peer(factory, port=43000)
    new.send(InitCommandRequest(GUID, "newcomer"))
    assert old_evt.read() == [ProbeRequest()]
    clock.advance(10.1)
    assert new.read() == [InitFail(FailReason.BUSY)]
    assert not old_cmd.closed and not old_evt.closed and len(factory.sessions) == 1


def test_the_tcp_state_tells_a_dead_connection_from_a_live_one():
    """The reclaim rule for dead connections reads the kernel's TCP_INFO: a socket whose
    peer has gone (CLOSE_WAIT) is dead, an established one is not."""
    import socket as s

    from ptpip.sockets import tcp_trouble
    server = s.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = s.create_connection(server.getsockname())
    conn, _ = server.accept()
    try:
        assert tcp_trouble(conn) is None
        client.close()
        import time
        time.sleep(0.05)
        assert tcp_trouble(conn) == "its TCP connection is CLOSE_WAIT"
    finally:
        conn.close()
        server.close()
