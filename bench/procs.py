"""Helper processes the benchmarks start: ``python -m bench.procs NAME ARGS``."""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

from twisted.internet import defer, protocol, reactor, task


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def responder(root: str, port: str) -> None:
    raise_fd_limit()
    from ptpip.devices.camera import filesystem_camera
    from ptpip.responder import ResponderFactory
    camera = filesystem_camera(root, scan_interval=None)
    factory = ResponderFactory(camera, max_sessions=5000, max_pending=5000, max_per_address=5000)
    reactor.listenTCP(int(port), factory, interface="127.0.0.1", backlog=2048)
    reactor.run()


class _FixedFrame:
    """A live view source that answers the same JPEG at once: the benchmark measures the
    protocol, not Pillow."""

    def __init__(self, path: str) -> None:
        self.jpeg = open(path, "rb").read()
        self.count = 0

    def frame(self) -> defer.Deferred[bytes]:
        self.count += 1
        return defer.succeed(self.jpeg)


def liveview_responder(root: str, port: str, profile: str, frame: str) -> None:
    """A responder of *profile* whose live view is the JPEG in *frame*."""
    from ptpip.devices.camera import filesystem_camera
    from ptpip.devices.profiles import get_profile
    from ptpip.responder import ResponderFactory
    camera = filesystem_camera(root, scan_interval=None, profile=get_profile(profile))
    camera.live_view = _FixedFrame(frame)
    reactor.listenTCP(int(port), ResponderFactory(camera), interface="127.0.0.1")
    reactor.run()


def ts_index(path: str) -> None:
    """Index a TS clip in 1 MiB chunks; prints access points, bytes and seconds."""
    from cccp.wire.ts import TSIndexer
    ix = TSIndexer()
    t0 = time.monotonic()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            ix.feed(chunk)
    index = ix.finish()
    print(f"{len(index)} {index.size} {time.monotonic() - t0:.3f}", flush=True)


def ptpip_liveview(port: str, seconds: str) -> None:
    """Live view frames per second through PTPClient.liveview(); prints frames, seconds, bytes."""
    from ptpip.client import PTPClient

    async def go(r: Any) -> None:
        client = await PTPClient.connect(r, "127.0.0.1", int(port))
        n = size = 0
        t0 = time.monotonic()
        async with client.liveview(r, duration=float(seconds)) as view:
            async for jpeg in view:
                if n == 0:
                    t0 = time.monotonic()          # from the first frame: switching on is not counted
                n += 1
                size += len(jpeg)
        print(f"{n - 1} {time.monotonic() - t0:.6f} {size // max(n, 1)}", flush=True)
        await client.close()

    task.react(lambda r: defer.ensureDeferred(go(r)))


class _Stream(protocol.Protocol):
    """Writes the factory's *size* bytes with a push producer, then closes."""

    def connectionMade(self) -> None:
        self.left = self.factory.size
        self.chunk = b"\x5a" * (1 << 18)
        self.paused = False
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.left > 0:
            n = min(self.left, len(self.chunk))
            self.transport.write(self.chunk[:n] if n < len(self.chunk) else self.chunk)
            self.left -= n
        if self.left == 0:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def stopProducing(self) -> None:
        self.left = 0


def bare_server(port: str, size: str) -> None:
    f = protocol.ServerFactory.forProtocol(_Stream)
    f.size = int(size)
    reactor.listenTCP(int(port), f, interface="127.0.0.1")
    reactor.run()


class _Sink(protocol.Protocol):
    def connectionMade(self) -> None:
        self.n = 0
        self.t0 = time.monotonic()

    def dataReceived(self, data: bytes) -> None:
        self.n += len(data)

    def connectionLost(self, reason: Any = None) -> None:
        print(f"{self.n} {time.monotonic() - self.t0:.6f}", flush=True)
        reactor.stop()


def bare_client(port: str) -> None:
    reactor.connectTCP("127.0.0.1", int(port), protocol.ClientFactory.forProtocol(_Sink))
    reactor.run()


class _Pong(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.buf = b""

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        req, resp = self.factory.req, self.factory.resp
        while len(self.buf) >= req:
            self.buf = self.buf[req:]
            self.transport.write(b"r" * resp)


def pong_server(port: str, req: str, resp: str) -> None:
    f = protocol.ServerFactory.forProtocol(_Pong)
    f.req, f.resp = int(req), int(resp)
    reactor.listenTCP(int(port), f, interface="127.0.0.1")
    reactor.run()


def cccp_server(root: str, port: str) -> None:
    from twisted.cred.checkers import AllowAnonymousAccess
    from twisted.cred.portal import Portal

    from cccp.devices import FileMediaStore
    from cccp.live import MediaLibrary
    from cccp.realm import CCCPRealm
    from cccp.server import CCCPFactory
    store = MediaLibrary(FileMediaStore(root), reactor, None)
    factory = CCCPFactory(Portal(CCCPRealm(store), [AllowAnonymousAccess()]), max_per_address=100)
    reactor.listenTCP(int(port), factory, interface="127.0.0.1")
    reactor.run()


def cccp_live(root: str, port: str, bitrate: str) -> None:
    """A CCCP server whose /live/testpattern is encoded at *bitrate* (constant)."""
    from twisted.cred.checkers import AllowAnonymousAccess
    from twisted.cred.portal import Portal

    from cccp.devices import FileMediaStore
    from cccp.devices.live import MediaLibrary, parse_bitrate
    from cccp.realm import CCCPRealm
    from cccp.server import CCCPFactory
    raise_fd_limit()
    store = MediaLibrary(FileMediaStore(root), reactor, None, bitrate=parse_bitrate(bitrate), close_after=0)
    factory = CCCPFactory(Portal(CCCPRealm(store), [AllowAnonymousAccess()]), max_per_address=200,
                          max_connections=400)
    reactor.listenTCP(int(port), factory, interface="127.0.0.1")
    reactor.addSystemEventTrigger("before", "shutdown", store.close)
    reactor.run()


def ptpip_get(port: str, path: str, sink: str = "/dev/null") -> None:
    """GetObject of *path* into *sink* with our initiator; prints bytes and seconds."""
    from ptpip.client import PTPClient
    from ptpip.streams import FileConsumer

    async def go(r: Any) -> None:
        client = await PTPClient.connect(r, "127.0.0.1", int(port))
        handle = await client.findPath(path)
        with open(sink, "wb") as f:
            consumer = FileConsumer(f)
            t0 = time.monotonic()
            await client.getObject(handle, consumer)
            dt = time.monotonic() - t0
        print(f"{consumer.written} {dt:.6f}", flush=True)
        await client.close()

    task.react(lambda r: defer.ensureDeferred(go(r)))


def ptpip_latency(port: str, path: str, seconds: str) -> None:
    """GetObjectInfo transactions per second on one session."""
    from ptpip.client import PTPClient
    from ptpip.constants import OperationCode as Op

    async def go(r: Any) -> None:
        client = await PTPClient.connect(r, "127.0.0.1", int(port))
        handle = await client.findPath(path)
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < float(seconds):
            await client.session.request(Op.GetObjectInfo, handle)
            n += 1
        print(f"{n} {time.monotonic() - t0:.6f}", flush=True)
        await client.close()

    task.react(lambda r: defer.ensureDeferred(go(r)))


def pong_client(port: str, req: str, resp: str, seconds: str) -> None:
    """Request/response ping-pong of fixed sizes; prints round trips and seconds."""
    class Ping(protocol.Protocol):
        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)
            self.got = 0
            self.n = 0
            self.t0 = time.monotonic()
            self.transport.write(b"q" * int(req))

        def dataReceived(self, data: bytes) -> None:
            self.got += len(data)
            while self.got >= int(resp):
                self.got -= int(resp)
                self.n += 1
                if time.monotonic() - self.t0 >= float(seconds):
                    print(f"{self.n} {time.monotonic() - self.t0:.6f}", flush=True)
                    self.transport.loseConnection()
                    reactor.stop()
                    return
                self.transport.write(b"q" * int(req))

    reactor.connectTCP("127.0.0.1", int(port), protocol.ClientFactory.forProtocol(Ping))
    reactor.run()


def ptpip_many(port: str, sessions: str, path: str) -> None:
    """Open *sessions* sessions at once; each does GetDeviceInfo and a small GetObject.
    Prints: seconds errors, then waits for a line on stdin before closing (RSS is read then)."""
    raise_fd_limit()
    from ptpip.constants import OperationCode as Op
    from ptpip.initiator import connect

    async def one(r: Any) -> Any:
        session = await connect(r, "127.0.0.1", int(port), timeout=120)
        info = await session.request(Op.GetDeviceInfo)
        await session.request(Op.OpenSession, 1)
        obj = await session.request(Op.GetObject, 1)
        if not (info.ok and obj.ok and obj.data):
            raise RuntimeError("bad answer")
        return session

    async def go(r: Any) -> None:
        t0 = time.monotonic()
        results = await defer.DeferredList([defer.ensureDeferred(one(r)) for _ in range(int(sessions))],
                                           consumeErrors=True)
        dt = time.monotonic() - t0
        errors = [f for ok, f in results if not ok]
        print(f"{dt:.3f} {len(errors)} {errors[0].getErrorMessage() if errors else ''}", flush=True)
        await threads_wait_stdin(r)
        for ok, s in results:
            if ok:
                s.close()

    task.react(lambda r: defer.ensureDeferred(go(r)))


def threads_wait_stdin(r: Any) -> defer.Deferred[Any]:
    from twisted.internet import threads
    return threads.deferToThread(sys.stdin.readline)


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    if os.environ.get("BENCH_CPU") and hasattr(os, "sched_setaffinity"):
        # Pinned: a server on one core and its client on the other, for ours and the
        # anchor alike, so that neither run pays for the scheduler moving it around.
        os.sched_setaffinity(0, {int(os.environ["BENCH_CPU"]) % (os.cpu_count() or 1)})
    {"responder": responder, "bare-server": bare_server, "bare-client": bare_client,
     "pong-server": pong_server, "cccp-server": cccp_server, "cccp-live": cccp_live, "ptpip-get": ptpip_get,
     "ptpip-latency": ptpip_latency, "pong-client": pong_client, "ptpip-many": ptpip_many,
     "liveview-responder": liveview_responder, "ptpip-liveview": ptpip_liveview,
     "ts-index": ts_index}[name](*args)
