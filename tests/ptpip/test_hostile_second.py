"""Hostile peers, second wave: leaks, races, floods and lock-outs found by attacking the
responder from outside. Each case runs over real sockets on 127.0.0.1 against the
``camera`` fixture of ``test_hostile``, which checks afterwards that a fresh session lists
and downloads byte-identically and that nothing in the store was added or changed."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from zope.interface import implementer

from ptpip.constants import DataPhase, FailReason
from ptpip.constants import OperationCode as Op
from ptpip.errors import InitFailed
from ptpip.initiator import connect
from ptpip.interfaces import IDataSource
from ptpip.packets import Data, EndData, OperationRequest

from .test_hostile import raw, response, session, sleep

IN = DataPhase.NO_DATA_OR_DATA_IN


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def server_side(cam: Any) -> list[Any]:
    return list(cam.factory.connections)


async def until(reactor: Any, cond: Any, timeout: float) -> float:
    """Wait for *cond*; the seconds it took (fails after *timeout*)."""
    start = reactor.seconds()
    while not cond():
        if reactor.seconds() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        await sleep(reactor, 0.02)
    return reactor.seconds() - start


async def big_handle(reactor: Any, cmd: Any, name: str = "big.avi") -> int:
    from ptpip.datasets import ObjectInfo, unpack_u32_array
    cmd.send(OperationRequest(IN, Op.GetObjectHandles, 1, (0xFFFFFFFF, 0, 0)))
    await response(reactor, cmd, 1)
    payload = b"".join(p.payload for p in cmd.packets if isinstance(p, (Data, EndData)) and p.transaction_id == 1)
    for i, h in enumerate(unpack_u32_array(payload)):
        tid = 100 + i
        cmd.send(OperationRequest(IN, Op.GetObjectInfo, tid, (h,)))
        await response(reactor, cmd, tid)
        data = b"".join(p.payload for p in cmd.packets if isinstance(p, (Data, EndData)) and p.transaction_id == tid)
        if ObjectInfo.decode(data).filename == name:
            return h
    raise AssertionError(f"no {name}")


# -- 1: a session that ends during a download closes both channels at once ---------------

@pytest.mark.parametrize("how", ["close", "garbage"])
@pytest.mark.parametrize("path", ["sendfile", "buffered"])
@pytest_twisted.ensureDeferred
async def test_1_session_ending_during_a_download_closes_both_channels_within_a_second(reactor, tmp_path,
                                                                                        how, path):
    """A slow reader is in the middle of a download (a file by sendfile, or a device's data
    written through Twisted's buffer) when its event channel ends, cleanly or with garbage:
    the command channel is closed by the responder within a second, whatever is still
    buffered (with the default 60 s stall timeout, which must not be what ends it), and
    once the reader has read and closed, no socket is left in CLOSE-WAIT."""
    import socket

    from ptpip.responder import ResponderFactory

    from ..conftest import start_responder, stop_responder
    from .helpers import OP_DATA_IN, ScriptedDevice
    root = str(tmp_path / "store")
    os.makedirs(root)
    with open(os.path.join(root, "huge.avi"), "wb") as f:      # more than both socket buffers hold
        f.write(b"RIFF\x00\x00\x00\x00AVI ")
        f.truncate(64 << 20)
    r = await start_responder(reactor, root)
    if path == "buffered":
        device = ScriptedDevice()
        device.source = lambda n: b"\x5a" * n
        r.listening.factory = ResponderFactory(device, friendly_name="buffered")
        r.factory = r.listening.factory
    try:
        before = open_fds()
        cmd, evt = await session(reactor, r.port)
        op = (Op.GetObject, (await big_handle(reactor, cmd, "huge.avi"),)) if path == "sendfile" \
            else (OP_DATA_IN, (32 << 20,))
        cmd.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        cmd.transport.pauseProducing()                   # a slow reader: it stops reading
        cmd.send(OperationRequest(IN, op[0], 9, op[1]))
        await sleep(reactor, 0.3)
        assert len(server_side(r)) == 2
        if how == "close":
            evt.transport.loseConnection()
        else:
            evt.transport.write(b"\xff" * 64)
        took = await until(reactor, lambda: not server_side(r), 3)
        assert took <= 1.2
        cmd.transport.resumeProducing()                  # it reads what reached it, then closes
        await sleep(reactor, 0.2)
        cmd.transport.loseConnection()
        await until(reactor, lambda: open_fds() <= before, 1.0)
    finally:
        await stop_responder(r)


# -- 2: a burst of initiators within the limits all get in ----------------------------------

def twistd(port: int, *args: str) -> subprocess.Popen[bytes]:
    """The responder as users run it, with the plugin's own options (its log goes to a
    file: a pipe nobody reads would block it)."""
    import tempfile
    log = tempfile.TemporaryFile()
    def more_fds() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    return subprocess.Popen([sys.executable, "-m", "twisted", "ptpip-responder", "--no-announce",
                             "--listen", f"tcp:{port}:interface=127.0.0.1", *args],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=more_fds)


def free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


async def wait_listening(reactor: Any, port: int, proc: subprocess.Popen[bytes]) -> None:
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.internet.protocol import Factory, Protocol
    for _ in range(200):
        assert proc.poll() is None, "the responder exited"
        try:
            p = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(Protocol))
            p.transport.abortConnection()
            return
        except Exception:
            await sleep(reactor, 0.05)
    raise AssertionError("the responder did not start")


async def sessions(reactor: Any, port: int, n: int, in_flight: int, deadline: float) -> tuple[list[Any], int]:
    """*n* initiators, at most *in_flight* handshakes at once, each retrying on BUSY after a
    short back-off; all the sessions, held open, and the number of BUSY answers."""
    sem = defer.DeferredSemaphore(in_flight)
    busy = 0
    start = reactor.seconds()

    async def one(i: int) -> Any:
        nonlocal busy
        while True:
            try:
                return await connect(reactor, "127.0.0.1", port, guid=i.to_bytes(16, "big"),
                                     friendly_name=f"burst {i}", timeout=10)
            except InitFailed as e:
                assert e.reason == FailReason.BUSY, e
                busy += 1
                assert reactor.seconds() - start < deadline, f"{i} still refused after {deadline} s"
                await sleep(reactor, 0.05)

    async def limited(i: int) -> Any:
        return await sem.run(lambda: defer.ensureDeferred(one(i)))
    got = await defer.gatherResults([defer.ensureDeferred(limited(i)) for i in range(n)], consumeErrors=True)
    return got, busy


def more_client_fds() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


@pytest_twisted.ensureDeferred
async def test_2_sixteen_initiators_at_once_within_the_limits_all_get_sessions(reactor):
    port = free_port()
    proc = twistd(port, "--max-sessions", "16", "--max-per-address", "16")
    try:
        await wait_listening(reactor, port, proc)
        got, busy = await sessions(reactor, port, 16, in_flight=16, deadline=0.001)   # no BUSY allowed
        assert len(got) == 16 and busy == 0
        await defer.gatherResults([s.close() for s in got])
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_2_a_thousand_initiators_200_in_flight_all_get_sessions_within_30_s(reactor):
    more_client_fds()
    port = free_port()
    proc = twistd(port, "--max-sessions", "5000", "--max-per-address", "5000")
    try:
        await wait_listening(reactor, port, proc)
        start = reactor.seconds()
        got, busy = await sessions(reactor, port, 1000, in_flight=200, deadline=30)
        took = reactor.seconds() - start
        assert len(got) == 1000 and took < 30, (took, busy)
        await defer.gatherResults([s.close() for s in got])
    finally:
        proc.terminate()
        proc.wait(10)


@pytest_twisted.ensureDeferred
async def test_2_a_pending_peer_that_goes_away_is_noticed_at_once(reactor, camera):
    """A command channel waiting for its event channel that disconnects frees its
    handshake slot at once, not after the establishment timeout."""
    cmd = await raw(reactor, camera.port)
    from ptpip.packets import InitCommandRequest
    cmd.send(InitCommandRequest(bytes(range(16)), "leaver"))
    await cmd.wait(reactor, lambda p: True)
    assert camera.factory.admission.pending.total == 1
    cmd.transport.loseConnection()
    took = await until(reactor, lambda: camera.factory.admission.pending.total == 0, 0.5)
    assert took < 0.3


@pytest_twisted.ensureDeferred
async def test_2_silent_sockets_of_one_address_cost_other_addresses_nothing(reactor, camera):
    share = camera.factory.admission.max_unidentified_per_address
    silent = [await raw(reactor, camera.port, bind="127.0.0.3") for _ in range(share + 5)]
    cmd, evt = await session(reactor, camera.port)          # from 127.0.0.1: served at once
    assert len(camera.factory.sessions) == 1
    for s in silent + [cmd, evt]:
        s.transport.loseConnection()
    await sleep(reactor, 0.05)


# -- 7: a peer that pipelines requests and never reads ---------------------------------------

@pytest_twisted.ensureDeferred
async def test_7_pipelining_without_reading_is_not_answered_without_limit(reactor, camera):
    """20,000 GetDeviceInfo requests sent by a peer that reads nothing: the responder stops
    reading while its answers cannot go out, so what it buffers stays bounded, and the
    stall timeout (0.5 s here) closes the connection."""
    cmd, evt = await session(reactor, camera.port)
    cmd.transport.pauseProducing()
    blob = b"".join(OperationRequest(IN, Op.GetDeviceInfo, tid, ()).encode() for tid in range(1, 20_001))
    cmd.transport.write(blob)
    command = next(p for p in server_side(camera) if p.role.value == "command")
    peak = 0
    for _ in range(40):
        t = command.transport
        if t is None or t.disconnected:
            break
        peak = max(peak, len(t.dataBuffer) - t.offset + t._tempDataLen)
        await sleep(reactor, 0.05)
    assert peak < 1 << 20, peak                   # the answers to 20,000 requests would be ~9 MB
    await until(reactor, lambda: command.transport is None or command.transport.disconnected, 2.0)
    cmd.transport.abortConnection()
    evt.transport.abortConnection()


# -- 11: protocol versions in the wild --------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_11_an_initiator_with_major_and_minor_swapped_gets_a_session(reactor, camera):
    """Initiator Protocol Version 0x00000064, as a Python PTP library in use with real
    cameras sends it: acknowledged with our version, and the session works."""
    from ptpip.packets import InitCommandAck, InitCommandRequest, InitEventAck, InitEventRequest
    cmd = await raw(reactor, camera.port)
    cmd.send(InitCommandRequest(bytes(range(16)), "swapped", 0x00000064))
    ack = await cmd.wait(reactor, lambda p: True)
    assert isinstance(ack, InitCommandAck) and ack.version == 0x00010000
    evt = await raw(reactor, camera.port)
    evt.send(InitEventRequest(ack.connection_number))
    assert await evt.wait(reactor, lambda p: True) == InitEventAck()
    cmd.send(OperationRequest(IN, Op.OpenSession, 0, (1,)))
    assert (await response(reactor, cmd, 0)).code == 0x2001
    cmd.transport.loseConnection()
    evt.transport.loseConnection()
    await sleep(reactor, 0.05)


# -- uploads: 3 the announced size is a limit, 4 races, 5 reservations, 6 names ----------------

def jpeg_info(name: str, size: int) -> Any:
    from ptpip.datasets import ObjectInfo
    return ObjectInfo(storage_id=0, object_format=0x3801, object_compressed_size=size, filename=name)


@implementer(IDataSource)
class Endless:
    """A data-out source of unknown length that writes 64 KiB pieces until stopped."""

    length = None

    def __init__(self, reactor: Any, limit: int = 64 << 20) -> None:
        self.reactor = reactor
        self.limit = limit
        self.sent = 0
        self.stopped = False
        self.done: defer.Deferred[None] = defer.Deferred()

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        self.consumer = consumer
        self.reactor.callLater(0, self._more)
        return self.done

    def _more(self) -> None:
        if self.stopped or self.sent >= self.limit:
            if not self.done.called:
                self.done.callback(None)
            return
        self.consumer.write(b"\xff" * 65536)
        self.sent += 65536
        self.reactor.callLater(0, self._more)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.stopped = True


async def client(reactor: Any, port: int) -> Any:
    from ptpip.client import PTPClient
    return await PTPClient.connect(reactor, "127.0.0.1", port)


def store_files(root: str) -> set[str]:
    out = set()
    for d, _, files in os.walk(root):
        out |= {os.path.relpath(os.path.join(d, f), root) for f in files}
    return out


@pytest_twisted.ensureDeferred
async def test_3_an_upload_of_unknown_length_stops_at_the_size_its_object_info_announced(reactor, camera):
    """SendObject with Start Data "unknown length" after an ObjectInfo of 1,000 bytes is
    refused as soon as the data passes 1,000 bytes, and nothing past them is written."""
    from ptpip.errors import PTPResponseError
    before = store_files(camera.root)
    c = await client(reactor, camera.port)
    await c.call(Op.SendObjectInfo, 0, 0, data=jpeg_info("BIG.JPG", 1000).encode())
    source = Endless(reactor)
    with pytest.raises(PTPResponseError) as e:
        await c.call(Op.SendObject, data=source)
    assert e.value.code == 0x2007                           # IncompleteTransfer
    assert source.sent <= 4 << 20                           # refused early, not after 64 MB
    assert store_files(camera.root) == before               # no file, no temporary file
    await c.close()


@pytest_twisted.ensureDeferred
async def test_3_a_start_data_that_disagrees_with_the_object_info_is_refused_before_any_data(reactor, camera):
    from ptpip.errors import PTPResponseError
    c = await client(reactor, camera.port)
    await c.call(Op.SendObjectInfo, 0, 0, data=jpeg_info("SIZE.JPG", 1000).encode())
    with pytest.raises(PTPResponseError) as e:
        await c.call(Op.SendObject, data=b"\xff\xd8" + b"x" * 5000)
    assert e.value.code == 0x2007
    await c.close()


@pytest_twisted.ensureDeferred
async def test_4_two_sessions_uploading_the_same_name_both_land(reactor, camera):
    """A: SendObjectInfo RACE.JPG; B: SendObjectInfo + SendObject RACE.JPG; A: SendObject.
    Both are answered OK, both files are on disk with their own bytes, under two names
    and two handles."""
    a, b = await client(reactor, camera.port), await client(reactor, camera.port)
    da, db = b"\xff\xd8A" + os.urandom(3000), b"\xff\xd8B" + os.urandom(5000)
    ra = await a.call(Op.SendObjectInfo, 0, 0, data=jpeg_info("RACE.JPG", len(da)).encode())
    rb = await b.call(Op.SendObjectInfo, 0, 0, data=jpeg_info("RACE.JPG", len(db)).encode())
    await b.call(Op.SendObject, data=db)
    await a.call(Op.SendObject, data=da)
    assert ra.params[2] != rb.params[2]
    landed = {p: open(os.path.join(camera.root, p), "rb").read() for p in ("RACE.JPG", "RACE_1.JPG")}
    assert sorted(landed.values()) == sorted([da, db])
    names = {oi.filename: h for _, h, oi in await a.walk()}
    assert {names["RACE.JPG"], names["RACE_1.JPG"]} == {ra.params[2], rb.params[2]}
    for h in (ra.params[2], rb.params[2]):
        await a.deleteObject(h)
    await a.close()
    await b.close()


@pytest_twisted.ensureDeferred
async def test_4_an_upload_never_replaces_a_file_that_landed_meanwhile(reactor, camera):
    """A file copied into the folder under the reserved name while the upload runs is
    kept; the upload lands beside it."""
    c = await client(reactor, camera.port)
    data = b"\xff\xd8" + os.urandom(2000)
    r = await c.call(Op.SendObjectInfo, 0, 0, data=jpeg_info("MINE.JPG", len(data)).encode())
    theirs = os.path.join(camera.root, "MINE.JPG")
    with open(theirs, "wb") as f:
        f.write(b"someone else's")
    await c.call(Op.SendObject, data=data)
    assert open(theirs, "rb").read() == b"someone else's"
    assert open(os.path.join(camera.root, "MINE_1.JPG"), "rb").read() == data
    assert (await c.getObjectInfo(r.params[2])).filename == "MINE_1.JPG"
    await c.deleteObject(r.params[2])
    os.unlink(theirs)
    await c.close()


@pytest_twisted.ensureDeferred
async def test_5_reservations_never_sent_are_given_back(reactor, camera):
    """Thousands of SendObjectInfo without SendObject hold one reservation at a time, and
    closing the session (or CloseSession) gives it back."""
    store = camera.camera.store
    c = await client(reactor, camera.port)
    for i in range(2000):
        await c.call(Op.SendObjectInfo, 0, 0, data=jpeg_info(f"N{i}.JPG", 10).encode())
    assert len(store._reservations) == 1 and len(store._reserved_paths) == 1
    await c.close()                                      # CloseSession
    assert store._reservations == {} and store._reserved_paths == set()
    d = await client(reactor, camera.port)
    await d.call(Op.SendObjectInfo, 0, 0, data=jpeg_info("LOST.JPG", 10).encode())
    await d.session.close()                              # the connection ends, no CloseSession
    await until(reactor, lambda: store._reservations == {}, 1.0)


@pytest.mark.parametrize("name", ["evil\r\n212 End of status\r\n500 x.jpg", "bell\x07.jpg", "esc\x1b[2J.jpg",
                                  "nel\x85.jpg", "del\x7f.jpg", "tab\t.jpg"])
@pytest_twisted.ensureDeferred
async def test_6_names_with_control_characters_are_refused(reactor, camera, name):
    from ptpip.errors import PTPResponseError
    c = await client(reactor, camera.port)
    with pytest.raises(PTPResponseError) as e:
        await c.call(Op.SendObjectInfo, 0, 0, data=jpeg_info(name, 10).encode())
    assert e.value.code == 0x201D                          # InvalidParameter
    await c.close()


# -- 8: decompression bombs and undecodable images -----------------------------------------------

def bomb_png(path: str, side: int = 9000) -> None:
    """A PNG of a few kB that declares side × side pixels."""
    from PIL import Image
    Image.new("1", (side, side)).save(path, optimize=True)


@pytest_twisted.ensureDeferred
async def test_8_a_decompression_bomb_is_never_decoded_and_gets_a_placeholder(reactor, tmp_path):
    """A 9000×9000 PNG of a few kB: ObjectInfo comes from its header (the size it
    declares), GetThumb answers a placeholder JPEG at once, the responder's memory does
    not grow, and another session is served meanwhile."""
    import io
    import time

    from PIL import Image

    from ..conftest import start_responder, stop_responder
    from .conftest import rss
    root = str(tmp_path / "store")
    os.makedirs(root)
    bomb_png(os.path.join(root, "bomb.png"))
    with open(os.path.join(root, "broken.jpg"), "wb") as f:     # a JPEG header, then garbage
        f.write(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(5000))
    assert os.path.getsize(os.path.join(root, "bomb.png")) < 50_000
    r = await start_responder(reactor, root)
    try:
        memory = rss()
        c, other = await client(reactor, r.port), await client(reactor, r.port)
        handles = {oi.filename: (h, oi) for _, h, oi in await c.walk()}
        h, oi = handles["bomb.png"]
        assert (oi.image_pix_width, oi.image_pix_height) == (9000, 9000)
        start = time.monotonic()
        thumbs = defer.gatherResults([c.getThumb(h), c.getThumb(handles["broken.jpg"][0])])
        await other.getDeviceInfo()
        for data in await thumbs:
            with Image.open(io.BytesIO(data)) as im:
                assert im.format == "JPEG" and im.size == (160, 120)
        assert time.monotonic() - start < 2.0
        assert rss() - memory < 64 << 20
        await c.close()
        await other.close()
    finally:
        await stop_responder(r)


@pytest_twisted.ensureDeferred
async def test_8_thumbnails_are_made_off_the_reactor_thread(reactor, tmp_path, monkeypatch):
    import threading

    from PIL import Image

    from ptpip.devices import filestore

    from ..conftest import start_responder, stop_responder
    root = str(tmp_path / "store")
    os.makedirs(root)
    Image.new("RGB", (2000, 1500), (200, 30, 30)).save(os.path.join(root, "big.png"))
    threads_used = []
    real = filestore.make_thumbnail

    def spy(path: str) -> Any:
        threads_used.append(threading.current_thread() is threading.main_thread())
        return real(path)
    monkeypatch.setattr(filestore, "make_thumbnail", spy)
    r = await start_responder(reactor, root)
    try:
        c = await client(reactor, r.port)
        (_, h, _), = await c.walk()
        data = await c.getThumb(h)
        assert data.startswith(b"\xff\xd8") and threads_used == [False]
        assert (await c.getObjectInfo(h)).thumb_compressed_size == len(data)   # known once made
        assert await c.getThumb(h) == data and threads_used == [False]          # and kept
        await c.close()
    finally:
        await stop_responder(r)


# -- 9: crash recovery ------------------------------------------------------------------------------

@implementer(IDataSource)
class Stalling:
    """Writes *first* bytes of a *length*-byte upload, then nothing more."""

    def __init__(self, first: bytes, length: int) -> None:
        self.first = first
        self.length = length

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(self.first)
        return defer.Deferred()

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def temporaries(root: str) -> list[str]:
    return [n for n in os.listdir(root) if n.startswith(".ptpip-upload-")]


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_9_after_kill_9_mid_upload_the_temporary_file_is_swept_and_the_upload_can_be_retried(reactor, tmp_path):
    from ptpip.client import PTPClient
    root = str(tmp_path / "store")
    os.makedirs(root)
    data = b"\xff\xd8" + os.urandom(2_000_000)
    port = free_port()
    proc = twistd(port, "--root", root)
    try:
        await wait_listening(reactor, port, proc)
        c = await PTPClient.connect(reactor, "127.0.0.1", port)
        await c.call(Op.SendObjectInfo, 0, 0, data=jpeg_info("CRASH.JPG", len(data)).encode())
        c.call(Op.SendObject, data=Stalling(data[:1_000_000], len(data))).addErrback(lambda f: None)
        await until(reactor, lambda: temporaries(root) and os.path.getsize(
            os.path.join(root, temporaries(root)[0])) >= 500_000, 10)
        proc.kill()                                       # kill -9 in the middle of the upload
        proc.wait(10)
        assert len(temporaries(root)) == 1
        await c.session.close()
        proc = twistd(port, "--root", root)
        await wait_listening(reactor, port, proc)
        assert temporaries(root) == []                    # swept at start
        c = await PTPClient.connect(reactor, "127.0.0.1", port)
        await c.call(Op.SendObjectInfo, 0, 0, data=jpeg_info("CRASH.JPG", len(data)).encode())
        await c.call(Op.SendObject, data=data)
        await c.close()
        assert open(os.path.join(root, "CRASH.JPG"), "rb").read() == data
        assert os.listdir(root) == ["CRASH.JPG"]
    finally:
        proc.kill()
        proc.wait(10)


# -- 10: a full disk -----------------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_10_two_uploads_on_a_full_disk_answer_store_full_and_leave_nothing(reactor, tmp_path):
    """The served folder is a 1 MiB tmpfs (in a mount namespace of the responder's own):
    two concurrent uploads that do not fit both fail with StoreFull, no temporary file is
    left behind, the disk is free again, and an upload that fits still lands."""
    import shlex
    import tempfile

    from ptpip.errors import PTPResponseError
    root = str(tmp_path / "tiny")
    os.makedirs(root)
    port = free_port()
    log = tempfile.TemporaryFile()
    cmd = (f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(root)} && exec {shlex.quote(sys.executable)} "
           f"-m twisted ptpip-responder --no-announce --root {shlex.quote(root)} "
           f"--listen tcp:{port}:interface=127.0.0.1")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
                            stdout=log, stderr=subprocess.STDOUT)

    def inside(*argv: str) -> str:
        return subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "--", *argv], capture_output=True,
                              text=True, check=True).stdout
    try:
        await wait_listening(reactor, port, proc)
        a, b = await client(reactor, port), await client(reactor, port)
        # Each announces 700 kB: both fit the free space when announced, not together.
        for c, name in ((a, "A.JPG"), (b, "B.JPG")):
            await c.call(Op.SendObjectInfo, 0, 0, data=jpeg_info(name, 700_000).encode())
        results = await defer.DeferredList([
            a.call(Op.SendObject, data=b"\xff\xd8" + os.urandom(699_998)),
            b.call(Op.SendObject, data=b"\xff\xd8" + os.urandom(699_998))], consumeErrors=True)
        failures = [r for ok, r in results if not ok]
        assert failures, "both uploads fitted a 1 MiB disk"
        for f in failures:
            assert isinstance(f.value, PTPResponseError) and f.value.code == 0x200C, f   # StoreFull
        listing = inside("ls", "-A", root).split()
        assert not [n for n in listing if n.startswith(".ptpip-upload-")], listing
        for name in [n for n in listing if n.endswith(".JPG")]:         # the one that fitted, if any
            assert int(inside("stat", "-c", "%s", os.path.join(root, name)).strip()) == 700_000
        small = b"\xff\xd8" + os.urandom(1000)
        await a.call(Op.SendObjectInfo, 0, 0, data=jpeg_info("SMALL.JPG", len(small)).encode())
        await a.call(Op.SendObject, data=small)
        assert "SMALL.JPG" in inside("ls", "-A", root).split()
        used = int(inside("df", "--output=used", "-B1", root).split()[-1])
        assert used < 700_000 * (3 - len(failures)), used               # nothing else holds space
        await a.close()
        await b.close()
    finally:
        proc.kill()
        proc.wait(10)
