"""The Fuji transport (ptpip/fuji.py) over real sockets on 127.0.0.1, driven by a plain
socket client that speaks as libgphoto2's fujiptpip.c does."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest_twisted
from twisted.internet import threads

from ptpip.wire import fuji

from ..conftest import start_fuji, stop_fuji

GUID = b"\x11" * 16


def recv_packet(s: socket.socket) -> bytes:
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    (length,) = struct.unpack("<I", head)
    body = b""
    while len(body) < length - 4:
        chunk = s.recv(length - 4 - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head + body


def session(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    for _ in range(2):                           # libgphoto2 sends its init request twice
        s.sendall(fuji.InitRequest(GUID, "test").encode())
        ack = fuji.decode(recv_packet(s), "initiator")
        assert isinstance(ack, fuji.InitAck) and ack.name == "test fuji"
    return s


def transact(s: socket.socket, code: int, tid: int, *params: int, data: bytes | None = None) -> list[Any]:
    s.sendall(fuji.Container(fuji.COMMAND, code, tid, struct.pack(f"<{len(params)}I", *params)).encode())
    if data is not None:
        s.sendall(fuji.Container(fuji.DATA, code, tid, data).encode())
    out = []
    while True:
        c = fuji.decode(recv_packet(s), "initiator")
        out.append(c)
        if c.kind == fuji.RESPONSE:
            return out


def conversation(port: int, event_port: int) -> dict[str, Any]:
    s = session(port)
    events = socket.create_connection(("127.0.0.1", event_port), timeout=5)
    result: dict[str, Any] = {}
    result["open"] = transact(s, 0x1002, 0, 1)
    result["bad_desc"] = transact(s, 0x1014, 1, 0x1234)           # no such property
    result["set"] = transact(s, 0x1016, 2, 0xDF01, data=struct.pack("<H", 5))
    result["info"] = transact(s, 0x1001, 3)
    result["handles"] = transact(s, 0x1007, 4, 0xFFFFFFFF, 0, 0)
    handles = struct.unpack_from(f"<{(len(result['handles'][0].payload) - 4) // 4}I",
                                 result["handles"][0].payload, 4)
    result["object"] = transact(s, 0x1009, 5, handles[0])
    # A stranger's garbage ends its own connection only.
    g = socket.create_connection(("127.0.0.1", port), timeout=5)
    g.sendall(b"\x03\x00\x00\x00garbage")
    g.settimeout(5)
    result["garbage_closed"] = g.recv(100) == b""
    result["after"] = transact(s, 0x1015, 6, 0xDF01)
    s.close()
    events.close()
    return result


@pytest_twisted.ensureDeferred
async def test_fuji_transactions_over_real_sockets(reactor, tmp_path):
    root = tmp_path / "card"
    (root / "DCIM").mkdir(parents=True)
    (root / "DCIM" / "DSCF0001.JPG").write_bytes(b"\xff\xd8" + bytes(range(256)) * 300 + b"\xff\xd9")
    r = await start_fuji(reactor, str(root))
    try:
        res = await threads.deferToThread(conversation, r.port, r.event_port)
    finally:
        await stop_fuji(r)
    assert [c.kind for c in res["open"]] == [fuji.RESPONSE] and res["open"][0].code == 0x2001
    # An error on a data-in operation still has its (empty) data container first.
    data, resp = res["bad_desc"]
    assert (data.kind, data.payload, resp.code, resp.transaction_id) == (fuji.DATA, b"", 0x200A, 1)
    assert res["set"][-1].code == 0x2001 and r.camera.properties.get(0xDF01) == 5
    info, ok = res["info"]
    assert info.kind == fuji.DATA and b"F\0U\0J\0I\0F\0I\0L\0M\0" in info.payload and ok.code == 0x2001
    obj, ok = res["object"]                                       # the whole object in one container
    assert obj.payload == (root / "DCIM" / "DSCF0001.JPG").read_bytes() and ok.transaction_id == 5
    assert res["garbage_closed"]
    value, ok = res["after"]
    assert value.payload == struct.pack("<H", 5) and ok.code == 0x2001


def _factory(tmp_path: Any, **kw: Any) -> Any:
    from twisted.internet import task

    from ptpip.devices.camera import filesystem_camera
    from ptpip.devices.profiles import get_profile
    from ptpip.fuji import FujiResponderFactory
    (tmp_path / "card").mkdir(exist_ok=True)
    clock = task.Clock()
    camera = filesystem_camera(str(tmp_path / "card"), scan_interval=None, profile=get_profile("fuji"),
                               reactor=clock)
    return FujiResponderFactory(camera, guid=GUID, reactor=clock, **kw), clock, camera


def _connect(factory: Any) -> tuple[Any, Any]:
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport
    p = factory.command.buildProtocol(None)
    t = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    p.makeConnection(t)
    return p, t


def test_a_socket_that_never_sends_its_init_request_is_closed(tmp_path):
    factory, clock, _ = _factory(tmp_path, init_timeout=10.0)
    silent, t = _connect(factory)
    clock.advance(9)
    assert not t.disconnecting
    clock.advance(2)
    assert t.disconnecting
    silent.connectionLost(None)
    assert silent not in factory.commands           # its slot is free again
    p, t2 = _connect(factory)
    p.dataReceived(fuji.InitRequest(GUID, "late").encode())
    clock.advance(60)
    assert not t2.disconnecting                     # an initiator that said hello stays


def test_silent_sockets_cannot_take_every_slot(tmp_path):
    factory, clock, _ = _factory(tmp_path, max_sessions=1, max_pending=2)
    conns = [_connect(factory) for _ in range(3)]
    assert all(not t.disconnecting for _, t in conns)
    _, t = _connect(factory)
    assert t.disconnecting and fuji.decode(t.value(), "initiator") == fuji.InitFail(2)     # BUSY, said so


def test_an_initiator_that_stops_reading_a_download_is_closed(tmp_path):
    factory, clock, camera = _factory(tmp_path, stall_timeout=60.0)
    (tmp_path / "card" / "DSCF0001.JPG").write_bytes(b"\xff\xd8" + b"x" * 500_000 + b"\xff\xd9")
    camera.store.scan(announce=False)
    (handle,) = [h for h in camera.store.handles() if not camera.store.objectInfo(h).is_folder]
    p, t = _connect(factory)
    p.dataReceived(fuji.InitRequest(GUID, "slow").encode())
    p.dataReceived(fuji.Container(fuji.COMMAND, 0x1002, 0, struct.pack("<I", 1)).encode())
    p.dataReceived(fuji.Container(fuji.COMMAND, 0x1009, 1, struct.pack("<I", handle)).encode())
    assert t.producer is not None                   # the object streams with backpressure
    t.producer.pauseProducing()                     # the socket buffer is full: the peer is not reading
    clock.advance(59)
    assert not t.disconnecting
    clock.advance(2)
    assert t.disconnecting


def _event_channel(factory: Any, port: int = 40001) -> tuple[Any, Any]:
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport
    e = factory.event.buildProtocol(None)
    t = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
    e.makeConnection(t)
    return e, t


def test_the_event_channel_belongs_to_a_session_past_open_capture(tmp_path):
    factory, clock, camera = _factory(tmp_path)
    early, te = _event_channel(factory)
    assert te.disconnecting                         # nobody waits for an event channel yet
    p, t = _connect(factory)
    p.dataReceived(fuji.InitRequest(GUID, "gphoto").encode())
    p.dataReceived(fuji.Container(fuji.COMMAND, 0x1002, 0, struct.pack("<I", 1)).encode())
    squat, ts = _event_channel(factory)
    assert ts.disconnecting                         # not before InitiateOpenCapture
    p.dataReceived(fuji.Container(fuji.COMMAND, 0x101C, 1, struct.pack("<II", 0, 0)).encode())
    e, te = _event_channel(factory)
    assert not te.disconnecting and p.events.channel is e
    camera.properties.setInternal(0x5007, 800)
    (event,) = fuji.FujiDecoder(side="initiator").feed(te.value())
    assert (event.kind, event.code, struct.unpack("<I", event.payload)) == (fuji.EVENT, 0x4006, (0x5007,))
    e.pauseProducing()                              # a peer that does not read its events
    for v in (560, 800) * 50:
        camera.properties.setInternal(0x5007, v)
    assert len(te.value()) == len(event.encode()) and p.events.dropped == 100
    # CloseSession ends the connection, and its event channel with it.
    t.clear()
    p.dataReceived(fuji.Container(fuji.COMMAND, 0x1003, 2).encode())
    (resp,) = fuji.FujiDecoder(side="initiator").feed(t.value())
    assert resp.code == 0x2001 and t.disconnecting
    p.connectionLost(None)
    assert te.disconnecting


def test_an_init_request_in_the_middle_of_a_session_ends_it(tmp_path):
    factory, clock, camera = _factory(tmp_path)
    p, t = _connect(factory)
    p.dataReceived(fuji.InitRequest(GUID, "gphoto").encode() * 2)
    acks = fuji.FujiDecoder(side="initiator").feed(t.value())
    assert [type(a) for a in acks] == [fuji.InitAck, fuji.InitAck]      # both get their ack
    p.dataReceived(fuji.Container(fuji.COMMAND, 0x1002, 0, struct.pack("<I", 1)).encode())
    assert not t.disconnecting
    p.dataReceived(fuji.InitRequest(GUID, "again").encode())
    assert t.disconnecting


def test_a_refused_initiator_gets_init_fail(tmp_path):
    from zope.interface import implementer

    from ptpip.interfaces import IInitiatorPolicy

    @implementer(IInitiatorPolicy)
    class Nobody:
        def accept(self, initiator: Any) -> bool:
            return False
    factory, clock, camera = _factory(tmp_path, policy=Nobody())
    p, t = _connect(factory)
    p.dataReceived(fuji.InitRequest(GUID, "stranger").encode())
    assert fuji.decode(t.value(), "initiator") == fuji.InitFail(1) and t.disconnecting


def test_the_next_command_waits_while_the_peer_does_not_read(tmp_path):
    factory, clock, camera = _factory(tmp_path, stall_timeout=30.0)
    p, t = _connect(factory)
    p.dataReceived(fuji.InitRequest(GUID, "gphoto").encode())
    p.dataReceived(fuji.Container(fuji.COMMAND, 0x1002, 0, struct.pack("<I", 1)).encode())
    t.clear()
    p.pauseProducing()                              # the socket buffer is full
    p.dataReceived(fuji.Container(fuji.COMMAND, 0x1001, 1).encode())
    assert t.value() == b""                         # not answered while the peer does not read
    p.resumeProducing()
    assert len(fuji.FujiDecoder(side="initiator").feed(t.value())) == 2   # data, then response
    p.pauseProducing()
    clock.advance(31)
    assert t.disconnecting                          # and not for ever
