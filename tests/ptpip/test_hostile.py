"""Hostile and broken peers over real loopback sockets. Every case has a defined reaction
(Init Fail with its reason, a PTP response code, or a close); after each one a fresh,
well-behaved session still lists and downloads, and no file in the store was added,
changed or half-written."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint

from ptpip.constants import DataPhase, FailReason, ResponseCode
from ptpip.constants import OperationCode as Op
from ptpip.datasets import ObjectInfo, pack_value
from ptpip.framing import PacketParser
from ptpip.packets import (
    Cancel,
    Data,
    EndData,
    Event,
    InitCommandAck,
    InitCommandRequest,
    InitEventRequest,
    InitFail,
    OperationRequest,
    OperationResponse,
    ProbeResponse,
    StartData,
)

IN, OUT = DataPhase.NO_DATA_OR_DATA_IN, DataPhase.DATA_OUT
GUID = bytes(range(16))


def sleep(reactor: Any, s: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(s, d.callback, None)
    return d


class Raw(protocol.Protocol):
    """A raw PTP-IP peer: writes what it is told, parses what comes back."""

    def __init__(self) -> None:
        self.parser = PacketParser(max_packet_size=1 << 20)
        self.packets: list[Any] = []
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.waiters: list[tuple[Callable[[Any], bool], defer.Deferred[Any]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.parser.receive_data(data)
        for p in self.parser.events():
            self.packets.append(p)
            for cond, d in list(self.waiters):
                if cond(p):
                    self.waiters.remove((cond, d))
                    d.callback(p)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)

    def send(self, *packets: Any) -> None:
        for p in packets:
            self.transport.write(p.encode())

    def wait(self, reactor: Any, cond: Callable[[Any], bool], timeout: float = 5) -> defer.Deferred[Any]:
        for p in self.packets:
            if cond(p):
                return defer.succeed(p)
        d: defer.Deferred[Any] = defer.Deferred()
        self.waiters.append((cond, d))
        return d.addTimeout(timeout, reactor)


#: Every raw peer a case opened; the fixture aborts those still open after the case.
RAW_PEERS: list[Raw] = []


async def raw(reactor: Any, port: int, bind: str | None = None) -> Raw:
    ep = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(bind, 0) if bind else None)
    p = await ep.connect(protocol.Factory.forProtocol(Raw))
    RAW_PEERS.append(p)
    return p


async def session(reactor: Any, port: int) -> tuple[Raw, Raw]:
    """An established session by hand, with OpenSession done (transaction 0)."""
    cmd = await raw(reactor, port)
    cmd.send(InitCommandRequest(GUID, "raw peer"))
    ack = await cmd.wait(reactor, lambda p: isinstance(p, (InitCommandAck, InitFail)))
    assert isinstance(ack, InitCommandAck), ack
    evt = await raw(reactor, port)
    evt.send(InitEventRequest(ack.connection_number))
    await evt.wait(reactor, lambda p: True)
    cmd.send(OperationRequest(IN, Op.OpenSession, 0, (1,)))
    await response(reactor, cmd, 0)
    return cmd, evt


def response(reactor: Any, cmd: Raw, tid: int) -> defer.Deferred[Any]:
    return cmd.wait(reactor, lambda p: isinstance(p, OperationResponse) and p.transaction_id == tid)


async def init_fail(reactor: Any, port: int, payload: bytes, reason: int = FailReason.UNSPECIFIED) -> None:
    p = await raw(reactor, port)
    p.transport.write(payload)
    fail = await p.wait(reactor, lambda x: True)
    assert fail == InitFail(reason)
    await p.closed


# -- before establishment --------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    bytes.fromhex("07000000" "01000000"),                                    # 1 length below 8
    bytes.fromhex("08000000" "2a000000"),                                    # 2 unknown type
    bytes.fromhex("a0860100" "01000000"),                                    # 3 100000-byte Init request
    bytes.fromhex("0a000000" "03000000") + b"\x00\x00",                      # 4 too short for its fields
    bytes(range(64)),                                                        # 5 garbage
    OperationRequest(IN, Op.GetDeviceInfo, 0).encode(),                      # 6 request before Init
    InitEventRequest(424242).encode(),                                       # 7 unknown connection number
    StartData(1, 10).encode(),                                               # 9 data before Init
    ProbeResponse().encode(),                                                # 10 unsolicited probe answer
])
@pytest_twisted.ensureDeferred
async def test_bad_first_packets_get_init_fail(reactor, camera, payload):
    await init_fail(reactor, camera.port, payload)


@pytest_twisted.ensureDeferred
async def test_11_event_channel_from_another_host(reactor, camera):
    cmd = await raw(reactor, camera.port)
    cmd.send(InitCommandRequest(GUID, "victim"))
    ack = await cmd.wait(reactor, lambda p: True)
    intruder = await raw(reactor, camera.port, bind="127.0.0.2")
    intruder.send(InitEventRequest(ack.connection_number))
    assert await intruder.wait(reactor, lambda p: True) == InitFail(FailReason.UNSPECIFIED)
    cmd.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_12_command_channel_without_event_channel_times_out(reactor, camera):
    cmd = await raw(reactor, camera.port)
    cmd.send(InitCommandRequest(GUID, "half"))
    await cmd.closed                                    # establishment timeout (1 s here)


@pytest_twisted.ensureDeferred
async def test_13_trickling_bytes_do_not_hold_a_slot(reactor, camera):
    p = await raw(reactor, camera.port)
    data = InitCommandRequest(GUID, "trickle").encode()
    for i in range(4):
        if p.closed.called:
            break
        p.transport.write(data[i:i + 1])
        await sleep(reactor, 0.4)
    await p.closed.addTimeout(5, reactor)


@pytest_twisted.ensureDeferred
async def test_14_silent_connections_beyond_an_address_share_make_room_for_new_ones(reactor, camera):
    """Sockets that never speak take at most their address's share: one more evicts the
    oldest silent one (Init Fail BUSY), and the newcomer still gets its session."""
    share = camera.factory.admission.max_unidentified_per_address
    start = reactor.seconds()
    silent = [await raw(reactor, camera.port) for _ in range(share)]
    cmd, evt = await session(reactor, camera.port)
    await sleep(reactor, 0.1)
    if reactor.seconds() - start < 0.9:            # before the 1 s identify timeout of this camera
        # the command channel took the oldest one's place; it spoke at once, so the
        # event channel fitted in the share again
        assert [i for i, s in enumerate(silent) if s.closed.called] == [0]
    assert silent[0].packets == [InitFail(FailReason.BUSY)]
    for s in silent:
        s.transport.loseConnection()
    cmd.transport.loseConnection()
    evt.transport.loseConnection()
    await sleep(reactor, 0.05)


@pytest_twisted.ensureDeferred
async def test_15_init_command_twice(reactor, camera):
    cmd = await raw(reactor, camera.port)
    cmd.send(InitCommandRequest(GUID, "twice"), InitCommandRequest(GUID, "twice"))
    await cmd.closed


# -- after establishment: framing and sequence ---------------------------------------------

async def closes(reactor: Any, port: int, *packets: Any, raw_bytes: bytes = b"") -> None:
    cmd, evt = await session(reactor, port)
    cmd.send(*packets)
    if raw_bytes:
        cmd.transport.write(raw_bytes)
    await cmd.closed.addTimeout(5, reactor)
    await evt.closed.addTimeout(5, reactor)            # the whole session goes


@pytest.mark.parametrize("packets,raw_bytes", [
    ((Data(1, b"x"),), b""),                                                  # 16 data without a request
    ((StartData(1, 10),), b""),                                               # 17 Start Data without request
    ((InitCommandRequest(GUID, "again"),), b""),                              # 18 Init again
    ((OperationResponse(0x2001, 1),), b""),                                   # 19 a response from the initiator
    ((), bytes.fromhex("2a000000" "06000000") + bytes(34)),                   # 20 seven parameters
    ((OperationRequest(DataPhase.UNKNOWN, 0x9001, 1),), b""),                 # 21 data phase unknown
    ((OperationRequest(IN, Op.GetObject, 1, (9,)), OperationRequest(IN, Op.GetStorageIDs, 2)), b""),  # 22
    ((), bytes.fromhex("08000000" "ff000000")),                               # 23 unknown type mid-session
])
@pytest_twisted.ensureDeferred
async def test_protocol_violations_close_the_session(reactor, camera, packets, raw_bytes):
    await closes(reactor, camera.port, *packets, raw_bytes=raw_bytes)


@pytest_twisted.ensureDeferred
async def test_24_event_packet_from_the_initiator(reactor, camera):
    cmd, evt = await session(reactor, camera.port)
    evt.send(Event(0x4002, 1, (1,)))
    await evt.closed.addTimeout(5, reactor)
    await cmd.closed.addTimeout(5, reactor)


@pytest_twisted.ensureDeferred
async def test_25_huge_data_packet_then_silence_is_cut_off(reactor, camera):
    cmd, evt = await session(reactor, camera.port)
    info = ObjectInfo(object_format=0x3000, object_compressed_size=100, filename="x.bin")
    cmd.send(OperationRequest(OUT, Op.SendObjectInfo, 1, (0, 0)), StartData(1, len(info.encode())),
             EndData(1, info.encode()))
    await response(reactor, cmd, 1)
    cmd.send(OperationRequest(OUT, Op.SendObject, 2), StartData(2, 0xFFFFFFF0))
    cmd.transport.write((0xFFFFFFFF).to_bytes(4, "little") + (10).to_bytes(4, "little") + (2).to_bytes(4, "little"))
    cmd.transport.write(b"x" * 1000)
    await cmd.closed.addTimeout(5, reactor)             # stall timeout (0.5 s here)


@pytest_twisted.ensureDeferred
async def test_26_peer_that_never_reads_a_download_is_cut_off(reactor, camera):
    """More than socket buffers can hold (64 MB), to a peer that stops reading."""
    huge = os.path.join(camera.root, "huge.bin")
    c_make = __import__("bench.common", fromlist=["make_file"]).make_file
    c_make(huge, 64 << 20, b"RIFF\x00\x00\x00\x00AVI ")
    camera.camera.store.scan(announce=False)
    try:
        cmd, evt = await session(reactor, camera.port)
        cmd.transport.pauseProducing()                      # stop reading our socket
        cmd.send(OperationRequest(IN, Op.GetObject, 1, (camera.camera.store._by_path["huge.bin"],)))
        for _ in range(100):
            await sleep(reactor, 0.05)
            if not camera.factory.sessions:
                break
        assert not camera.factory.sessions
        cmd.transport.resumeProducing()
    finally:
        os.unlink(huge)
        camera.camera.store.scan(announce=False)


# -- after establishment: bad operations answered with response codes --------------------

async def answered(reactor: Any, port: int, request: OperationRequest, data: bytes | None = None) -> int:
    cmd, evt = await session(reactor, port)
    if data is None:
        cmd.send(request)
    else:
        cmd.send(request, StartData(request.transaction_id, len(data)), EndData(request.transaction_id, data))
    r = await response(reactor, cmd, request.transaction_id)
    # the session carries on
    cmd.send(OperationRequest(IN, Op.GetStorageIDs, request.transaction_id + 1))
    assert (await response(reactor, cmd, request.transaction_id + 1)).code == ResponseCode.OK
    cmd.transport.loseConnection()
    return r.code


@pytest.mark.parametrize("request_,data,code", [
    (OperationRequest(IN, Op.GetObject, 1, (999,)), None, ResponseCode.InvalidObjectHandle),           # 27
    (OperationRequest(IN, Op.GetPartialObject, 1, (1, 1 << 30, 10)), None, ResponseCode.InvalidObjectHandle),
    (OperationRequest(OUT, Op.SendObject, 1), b"abc", ResponseCode.NoValidObjectInfo),                 # 29
    (OperationRequest(OUT, Op.SendObjectInfo, 1, (0, 0)), b"\x01\x02", ResponseCode.NoValidObjectInfo),  # 30
    (OperationRequest(OUT, Op.SendObjectInfo, 1, (0, 0)),
     ObjectInfo(object_format=0x3000, object_compressed_size=1, filename="../escape").encode(),
     ResponseCode.InvalidParameter),                                                                     # 31
    (OperationRequest(OUT, Op.SetDevicePropValue, 1, (0x5007,)), b"\x00" * 70000, ResponseCode.GeneralError),  # 32
    (OperationRequest(OUT, Op.SetDevicePropValue, 1, (0x5007,)), pack_value(4, 123), ResponseCode.InvalidDevicePropValue),
    (OperationRequest(IN, Op.DeleteObject, 1, (0, 0)), None, ResponseCode.InvalidObjectHandle),        # 34
    (OperationRequest(IN, Op.FormatStore, 1, (0x10001,)), None, ResponseCode.OperationNotSupported),   # 35
    (OperationRequest(IN, 0x9999, 1), None, ResponseCode.OperationNotSupported),                       # 36
    (OperationRequest(IN, Op.GetStorageInfo, 1, (0x00020001,)), None, ResponseCode.InvalidStorageID),  # 37
])
@pytest_twisted.ensureDeferred
async def test_bad_operations_get_response_codes(reactor, camera, request_, data, code):
    assert await answered(reactor, camera.port, request_, data) == code


@pytest_twisted.ensureDeferred
async def test_38_reused_transaction_id(reactor, camera):
    cmd, evt = await session(reactor, camera.port)
    cmd.send(OperationRequest(IN, Op.GetStorageIDs, 5))
    await response(reactor, cmd, 5)
    cmd.send(OperationRequest(IN, Op.GetStorageIDs, 5))
    second = await cmd.wait(reactor, lambda p: isinstance(p, OperationResponse) and p.transaction_id == 5
                            and p.code != ResponseCode.OK)
    assert second.code == ResponseCode.InvalidTransactionID


@pytest_twisted.ensureDeferred
async def test_39_data_out_longer_than_announced(reactor, camera):
    cmd, evt = await session(reactor, camera.port)
    info = ObjectInfo(object_format=0x3000, object_compressed_size=10, filename="long.bin").encode()
    cmd.send(OperationRequest(OUT, Op.SendObjectInfo, 1, (0, 0)), StartData(1, len(info)), EndData(1, info))
    await response(reactor, cmd, 1)
    cmd.send(OperationRequest(OUT, Op.SendObject, 2), StartData(2, 10), Data(2, b"x" * 30), EndData(2))
    assert (await response(reactor, cmd, 2)).code == ResponseCode.IncompleteTransfer


@pytest_twisted.ensureDeferred
async def test_40_data_out_shorter_than_announced(reactor, camera):
    cmd, evt = await session(reactor, camera.port)
    info = ObjectInfo(object_format=0x3000, object_compressed_size=10, filename="short.bin").encode()
    cmd.send(OperationRequest(OUT, Op.SendObjectInfo, 1, (0, 0)), StartData(1, len(info)), EndData(1, info))
    await response(reactor, cmd, 1)
    cmd.send(OperationRequest(OUT, Op.SendObject, 2), StartData(2, 10), EndData(2, b"abc"))
    assert (await response(reactor, cmd, 2)).code == ResponseCode.IncompleteTransfer


@pytest_twisted.ensureDeferred
async def test_41_upload_broken_midway(reactor, camera):
    cmd, evt = await session(reactor, camera.port)
    info = ObjectInfo(object_format=0x3000, object_compressed_size=100000, filename="broken.bin").encode()
    cmd.send(OperationRequest(OUT, Op.SendObjectInfo, 1, (0, 0)), StartData(1, len(info)), EndData(1, info))
    await response(reactor, cmd, 1)
    cmd.send(OperationRequest(OUT, Op.SendObject, 2), StartData(2, 100000), Data(2, b"x" * 5000))
    await sleep(reactor, 0.1)
    cmd.transport.abortConnection()
    await evt.closed.addTimeout(5, reactor)


@pytest_twisted.ensureDeferred
async def test_42_cancel_flood_and_unsolicited_probe_answers_are_harmless(reactor, camera):
    cmd, evt = await session(reactor, camera.port)
    for tid in range(1, 200):
        evt.send(Cancel(tid))
        cmd.send(Cancel(tid + 1000))
    evt.send(ProbeResponse(), ProbeResponse())
    cmd.send(OperationRequest(IN, Op.GetStorageIDs, 1))
    assert (await response(reactor, cmd, 1)).code == ResponseCode.OK


@pytest_twisted.ensureDeferred
async def test_43_operations_before_open_session(reactor, camera):
    cmd = await raw(reactor, camera.port)
    cmd.send(InitCommandRequest(GUID, "no session"))
    ack = await cmd.wait(reactor, lambda p: True)
    evt = await raw(reactor, camera.port)
    evt.send(InitEventRequest(ack.connection_number))
    await evt.wait(reactor, lambda p: True)
    cmd.send(OperationRequest(IN, Op.GetObjectHandles, 1, (0xFFFFFFFF, 0, 0)))
    assert (await response(reactor, cmd, 1)).code == ResponseCode.SessionNotOpen
