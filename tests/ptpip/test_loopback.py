"""Our initiator against our responder over real sockets on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from zope.interface import implementer

from ptpip.client import PTPClient
from ptpip.constants import EventCode, FailReason, ResponseCode
from ptpip.constants import OperationCode as Op
from ptpip.errors import InitFailed, TransactionCancelled
from ptpip.initiator import connect
from ptpip.interfaces import IDataSource, IInitiatorPolicy
from ptpip.streams import FileConsumer

from ..conftest import start_responder, stop_responder


def sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_random(path: str, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 22)
            f.write(os.urandom(n))
            left -= n


def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


@pytest_twisted.async_yield_fixture
async def big(reactor: Any, tmp_path: Any) -> Any:
    root = str(tmp_path / "store")
    os.makedirs(root)
    write_random(os.path.join(root, "big.bin"), 48 * 1024 * 1024 + 12345)
    r = await start_responder(reactor, root)
    yield r
    await stop_responder(r)


@pytest_twisted.ensureDeferred
async def test_large_object_is_byte_identical(reactor, big, tmp_path):
    """A 48 MiB object comes through GetObject byte for byte, with progress reported."""
    client = await PTPClient.connect(reactor, "127.0.0.1", big.port)
    handle = await client.findPath("/big.bin")
    seen: list[int] = []
    target = str(tmp_path / "big.bin")
    size = await client.download(handle, target, resume=False, progress=lambda done, total: seen.append(done))
    await client.close()
    assert size == os.path.getsize(os.path.join(big.root, "big.bin"))
    assert sha(target) == sha(os.path.join(big.root, "big.bin"))
    assert seen[-1] == size and len(seen) > 10 and seen == sorted(seen)
    assert not os.path.exists(target + ".part")


@pytest_twisted.ensureDeferred
async def test_interrupted_download_resumes_with_get_partial_object(reactor, big, tmp_path):
    """A .part file is continued from where it stopped, not downloaded again."""
    src = os.path.join(big.root, "big.bin")
    target = str(tmp_path / "big.bin")
    with open(src, "rb") as f, open(target + ".part", "wb") as out:
        out.write(f.read(5_000_000))
    client = await PTPClient.connect(reactor, "127.0.0.1", big.port)
    seen: list[int] = []
    await client.download(await client.findPath("/big.bin"), target, progress=lambda d, t: seen.append(d))
    await client.close()
    assert seen[0] > 5_000_000            # the first 5 MB were not fetched again
    assert sha(target) == sha(src)


@pytest_twisted.ensureDeferred
async def test_two_sessions_download_at_once(reactor, big, tmp_path):
    a = await PTPClient.connect(reactor, "127.0.0.1", big.port, friendly_name="a")
    b = await PTPClient.connect(reactor, "127.0.0.1", big.port, friendly_name="b")
    h = await a.findPath("/big.bin")
    await defer.gatherResults([a.download(h, str(tmp_path / "a.bin")), b.download(h, str(tmp_path / "b.bin"))])
    await a.close()
    await b.close()
    want = sha(os.path.join(big.root, "big.bin"))
    assert sha(str(tmp_path / "a.bin")) == want == sha(str(tmp_path / "b.bin"))


@pytest_twisted.ensureDeferred
async def test_cancelled_download_fails_with_transaction_cancelled_and_session_goes_on(reactor, big, tmp_path):
    """Cancelling the request's Deferred sends Cancel on both channels (2.7.1.2)."""
    client = await PTPClient.connect(reactor, "127.0.0.1", big.port)
    h = await client.findPath("/big.bin")
    got = [0]

    class Sink(FileConsumer):
        def write(self, data: bytes) -> None:
            got[0] += len(data)
            if got[0] > 1_000_000 and not d.called:
                d.cancel()

    with open(str(tmp_path / "part"), "wb") as f:
        d = client.session.request(Op.GetObject, h, into=Sink(f))
        with pytest.raises(TransactionCancelled):
            await d
    assert got[0] < os.path.getsize(os.path.join(big.root, "big.bin"))
    info = await client.getObjectInfo(h)           # the same session still works
    assert info.filename == "big.bin"
    await client.close()


@pytest_twisted.ensureDeferred
async def test_large_upload_lands_byte_identical_and_is_announced(reactor, responder, tmp_path):
    src = str(tmp_path / "up.bin")
    write_random(src, 20 * 1024 * 1024 + 7)
    client = await PTPClient.connect(reactor, "127.0.0.1", responder.port)
    events: list[Any] = []
    client.subscribe(events.append)
    sent: list[int] = []
    handle = await client.upload(src, progress=lambda d, t: sent.append(d))
    await sleep(reactor, 0.05)
    await client.close()
    assert sha(os.path.join(responder.root, "up.bin")) == sha(src)
    assert sent[-1] == os.path.getsize(src)
    assert any(e.code == EventCode.ObjectAdded and e.params == (handle,) for e in events)


@implementer(IDataSource)
class StallingSource:
    """Announces *length* bytes, writes *first* of them, then never finishes."""

    def __init__(self, length: int, first: int) -> None:
        self.length = length
        self.first = first

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(b"x" * self.first)
        return defer.Deferred()

    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def stopProducing(self) -> None: ...


@pytest_twisted.ensureDeferred
async def test_broken_upload_leaves_nothing_behind(reactor, responder):
    """An upload whose connection drops midway leaves no file, not even a temporary one."""
    before = sorted(os.listdir(responder.root))
    client = await PTPClient.connect(reactor, "127.0.0.1", responder.port)
    from ptpip.datasets import ObjectInfo
    info = ObjectInfo(object_format=0x3000, object_compressed_size=10_000_000, filename="half.bin")
    await client.call(Op.SendObjectInfo, 0, 0, data=info.encode())
    d = client.session.request(Op.SendObject, data=StallingSource(10_000_000, 3_000_000))
    d.addErrback(lambda f: None)
    await sleep(reactor, 0.2)
    await client.session.close()
    await sleep(reactor, 0.1)
    assert sorted(os.listdir(responder.root)) == before
    # and the responder serves the next session as before
    again = await PTPClient.connect(reactor, "127.0.0.1", responder.port)
    assert len(await again.walk()) == 8
    await again.close()


@pytest_twisted.ensureDeferred
async def test_upload_with_a_wrong_byte_count_leaves_nothing(reactor, responder, tmp_path):
    """SendObject of fewer bytes than ObjectInfo announced is IncompleteTransfer; nothing lands."""
    from ptpip.datasets import ObjectInfo
    from ptpip.errors import PTPResponseError
    before = sorted(os.listdir(responder.root))
    client = await PTPClient.connect(reactor, "127.0.0.1", responder.port)
    info = ObjectInfo(object_format=0x3000, object_compressed_size=100, filename="short.bin")
    await client.call(Op.SendObjectInfo, 0, 0, data=info.encode())
    with pytest.raises(PTPResponseError) as e:
        await client.call(Op.SendObject, data=b"y" * 60)
    assert e.value.code == ResponseCode.IncompleteTransfer
    await client.close()
    assert sorted(os.listdir(responder.root)) == before


@implementer(IInitiatorPolicy)
class Refuse:
    def accept(self, initiator: Any) -> bool:
        return False


@pytest_twisted.ensureDeferred
async def test_init_fail_reason_reaches_the_initiator(reactor, camera_files):
    root, _ = camera_files
    r = await start_responder(reactor, root, policy=Refuse())
    try:
        with pytest.raises(InitFailed) as e:
            await connect(reactor, "127.0.0.1", r.port)
        assert e.value.reason == FailReason.REJECTED_INITIATOR
        assert "REJECTED_INITIATOR" in str(e.value)
    finally:
        await stop_responder(r)


@pytest_twisted.ensureDeferred
async def test_busy_reaches_the_initiator_and_the_first_session_is_unaffected(reactor, camera_files):
    root, _ = camera_files
    r = await start_responder(reactor, root, max_sessions=1)
    try:
        first = await PTPClient.connect(reactor, "127.0.0.1", r.port)
        with pytest.raises(InitFailed) as e:
            await connect(reactor, "127.0.0.1", r.port)
        assert e.value.reason == FailReason.BUSY
        assert len(await first.walk()) == 8
        await first.close()
        await sleep(reactor, 0.05)
        second = await PTPClient.connect(reactor, "127.0.0.1", r.port)
        await second.close()
    finally:
        await stop_responder(r)


@pytest_twisted.ensureDeferred
async def test_file_dropped_into_the_folder_is_announced(reactor, camera_files):
    root, _ = camera_files
    r = await start_responder(reactor, root, scan_interval=0.05)
    try:
        client = await PTPClient.connect(reactor, "127.0.0.1", r.port)
        got: defer.Deferred[Any] = defer.Deferred()
        client.subscribe(lambda e: got.called or got.callback(e))
        with open(os.path.join(root, "new.txt"), "wb") as f:
            f.write(b"fresh")
        event = await got.addTimeout(5, reactor)
        assert event.code == EventCode.ObjectAdded
        info = await client.getObjectInfo(event.params[0])
        assert info.filename == "new.txt"
        removed: defer.Deferred[Any] = defer.Deferred()
        client.subscribe(lambda e: e.code == EventCode.ObjectRemoved and not removed.called and removed.callback(e))
        os.unlink(os.path.join(root, "new.txt"))
        assert (await removed.addTimeout(5, reactor)).params == event.params
        await client.close()
    finally:
        await stop_responder(r)


@pytest_twisted.ensureDeferred
async def test_closing_the_session_closes_both_channels(reactor, responder):
    client = await PTPClient.connect(reactor, "127.0.0.1", responder.port)
    await client.close()
    await sleep(reactor, 0.05)
    assert responder.factory.sessions == set()
    assert client.session.closed


@pytest_twisted.ensureDeferred
async def test_cancelled_upload_leaves_nothing_and_the_session_goes_on(reactor, responder):
    """Initiator cancel during SendObject (2.7.1.1): TransactionCancelled, no file, no temp file."""
    before = sorted(os.listdir(responder.root))
    client = await PTPClient.connect(reactor, "127.0.0.1", responder.port)
    from ptpip.datasets import ObjectInfo
    info = ObjectInfo(object_format=0x3000, object_compressed_size=10_000_000, filename="cancelled.bin")
    await client.call(Op.SendObjectInfo, 0, 0, data=info.encode())
    d = client.session.request(Op.SendObject, data=StallingSource(10_000_000, 2_000_000))
    await sleep(reactor, 0.2)
    client.session.cancel()
    with pytest.raises(TransactionCancelled):
        await d
    assert sorted(os.listdir(responder.root)) == before
    assert len(await client.walk()) == 8
    await client.close()


@pytest_twisted.ensureDeferred
async def test_responder_refusing_a_data_out_midway_stops_the_initiator(reactor, tmp_path):
    """5.6.2 case 1 over sockets: the early response ends the transaction; the next one works."""
    from ptpip.responder import ResponderFactory
    from ptpip.streams import FileSource

    from .helpers import OP_DATA_IN, OP_REFUSE, ScriptedDevice
    factory = ResponderFactory(ScriptedDevice())
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        session = await connect(reactor, "127.0.0.1", port.getHost().port)
        path = tmp_path / "data"
        write_random(str(path), 30_000_000)
        r = await session.request(OP_REFUSE, data=FileSource(open(path, "rb")))
        assert r.code == ResponseCode.StoreFull
        r = await session.request(OP_DATA_IN, 1000)
        assert r.ok and len(r.data) == 1000
        await session.close()
    finally:
        for proto in list(factory.connections):
            proto.transport.abortConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_initiator_answers_probe_requests(reactor, responder):
    """Spec 2.3.13: a Probe Request is answered at once with a Probe Response."""
    from ptpip.packets import ProbeRequest, ProbeResponse
    client = await PTPClient.connect(reactor, "127.0.0.1", responder.port)
    [session] = responder.factory.sessions
    answered: defer.Deferred[Any] = defer.Deferred()
    original = session.eventPacket

    def spy(packet: Any) -> None:
        if isinstance(packet, ProbeResponse) and not answered.called:
            answered.callback(packet)
        original(packet)

    session.eventPacket = spy  # type: ignore[method-assign]
    session.event.sendPacket(ProbeRequest())
    assert isinstance(await answered.addTimeout(5, reactor), ProbeResponse)
    await client.close()


@implementer(IDataSource)
class FailingSource:
    """Writes some bytes, then fails (a read error on the camera)."""

    length = 1_000_000

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(b"p" * 300_000)
        return defer.fail(OSError("card read error"))

    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def stopProducing(self) -> None: ...


@pytest_twisted.ensureDeferred
async def test_responder_generated_cancel_during_data_in_is_discarded_by_the_initiator(reactor):
    """5.6.2 case 2: the responder stops the data-in and answers an error; the initiator
    discards the partial data and the session goes on."""
    from ptpip.responder import ResponderFactory

    from .helpers import OP_DATA_IN, ScriptedDevice
    device = ScriptedDevice()
    device.source = lambda n: FailingSource() if n == 1 else b"ok"
    factory = ResponderFactory(device)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        session = await connect(reactor, "127.0.0.1", port.getHost().port)
        r = await session.request(OP_DATA_IN, 1)
        assert r.code == ResponseCode.GeneralError and r.data is None
        r = await session.request(OP_DATA_IN, 2)
        assert r.ok and r.data == b"ok"
        await session.close()
    finally:
        for proto in list(factory.connections):
            proto.transport.abortConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_initiator_probes_a_silent_responder_and_gives_up_after_the_timeout(reactor):
    """A responder that acks, then never answers (nor a Probe Request): the initiator's
    request fails once the probe goes unanswered, instead of hanging."""
    from twisted.internet import protocol as tproto

    from ptpip.errors import ConnectionClosed
    from ptpip.framing import PacketParser
    from ptpip.packets import InitCommandAck, InitCommandRequest, InitEventAck, InitEventRequest

    class Mute(tproto.Protocol):
        def connectionMade(self) -> None:
            self.parser = PacketParser()

        def dataReceived(self, data: bytes) -> None:
            self.parser.receive_data(data)
            for p in self.parser.events():
                if isinstance(p, InitCommandRequest):
                    self.transport.write(InitCommandAck(7, b"\x01" * 16, "mute").encode())
                elif isinstance(p, InitEventRequest):
                    self.transport.write(InitEventAck().encode())
                # everything else, Probe Requests included, is ignored

    port = reactor.listenTCP(0, tproto.Factory.forProtocol(Mute), interface="127.0.0.1")
    try:
        session = await connect(reactor, "127.0.0.1", port.getHost().port, probe_interval=0.2, probe_timeout=0.3)
        with pytest.raises(ConnectionClosed, match="did not answer a Probe Request"):
            await session.request(0x1001).addTimeout(5, reactor)
    finally:
        await port.stopListening()
