"""Fixtures of the PTP-IP hostile-peer suites (``test_hostile*.py``)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest_twisted

from ptpip.client import PTPClient

from ..conftest import make_tree, start_responder, stop_responder


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    """Resident memory of this process (the responder runs in it), in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def snapshot(root: str) -> dict[str, str]:
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest_twisted.async_yield_fixture
async def camera(reactor: Any, tmp_path: Any) -> Any:
    root = str(tmp_path / "store")
    os.makedirs(root)
    files = make_tree(root)
    with open(os.path.join(root, "big.avi"), "wb") as f:
        big = b"RIFF\x00\x00\x00\x00AVI " + os.urandom(3_000_000)
        f.write(big)
    files["big.avi"] = big
    r = await start_responder(reactor, root, establishment_timeout=1.0, stall_timeout=0.5,
                              max_pending=6, max_sessions=8)
    r.files = files
    r.before = snapshot(root)
    fds, memory = open_fds(), rss()
    yield r
    # After every case: the store is untouched (nothing added, changed, truncated or left
    # as a temporary file), a fresh session lists and downloads byte-identically, and once
    # the case's peers are gone the responder holds no connection, no descriptor and not
    # much more memory than before.
    from .test_hostile import RAW_PEERS
    for p in RAW_PEERS:
        if p.transport is not None and not p.closed.called:
            p.transport.abortConnection()
    RAW_PEERS.clear()
    for _ in range(100):
        if not r.factory.connections and open_fds() <= fds:
            break
        await _sleep(0.02)
    assert not r.factory.connections, "connections outlived their peers"
    assert open_fds() <= fds, "descriptors leaked"
    assert snapshot(root) == r.before
    client = await PTPClient.connect(reactor, "127.0.0.1", r.port)
    tree = await client.walk()
    assert len(tree) == 9
    target = os.path.join(str(tmp_path), "check.avi")
    await client.download(await client.findPath("/big.avi"), target, resume=False)
    assert open(target, "rb").read() == files["big.avi"]
    await client.close()
    assert rss() - memory < 64 << 20, "memory grew by more than 64 MB"
    await stop_responder(r)


def _sleep(s: float) -> Any:
    from twisted.internet import defer, reactor
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(s, d.callback, None)
    return d


