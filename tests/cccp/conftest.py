from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse


class Server:
    def __init__(self, factory: Any, port: Any, root: str, camera: Any, deck: Any, store: Any = None) -> None:
        self.factory = factory
        self.store = store
        self.listening = port
        self.port = port.getHost().port
        self.root = root
        self.camera = camera
        self.deck = deck


def start_server(reactor: Any, root: str, *, camera: Any = "virtual", deck: Any = "virtual",
                 anonymous: bool = True, library: bool = False, **kwargs: Any) -> Server:
    from cccp.devices import FileMediaStore, VirtualCamera, VirtualTapeDeck
    from cccp.realm import CCCPRealm, make_portal
    from cccp.server import CCCPFactory
    store = FileMediaStore(root)
    cam = VirtualCamera() if camera == "virtual" else camera
    tape = VirtualTapeDeck(3600, clock=reactor) if deck == "virtual" else deck
    if library:                 # the live sources and /tape beside the files, as the plugin serves them
        from cccp.devices.live import MediaLibrary
        store = MediaLibrary(store, reactor, tape, encoder=None)
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"wonderland")
    portal = make_portal(CCCPRealm(store, cam, tape), [checker], anonymous)
    kwargs.setdefault("login_delay", 0.05)
    factory = CCCPFactory(portal, allow_anonymous=anonymous, reactor=reactor, **kwargs)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return Server(factory, port, root, cam, tape, store)


async def stop_server(s: Server) -> None:
    for p in list(s.factory.connections):
        p.transport.abortConnection()
    await s.listening.stopListening()
    close = getattr(s.store, "close", None)
    if close is not None:
        close()                      # a live source still running after its last viewer


def fill(root: str) -> dict[str, bytes]:
    files = {"hello.txt": b"hello world\n", "clips/a.ts": bytes(range(256)) * 1000,
             "clips/deep/b.ts": b"\x47" + b"\x00" * 187}
    for name, data in files.items():
        path = os.path.join(root, *name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return files


@pytest.fixture
def media(tmp_path: Any) -> tuple[str, dict[str, bytes]]:
    root = str(tmp_path / "media")
    os.makedirs(root)
    return root, fill(root)


@pytest_twisted.async_yield_fixture
async def server(reactor: Any, media: Any) -> Any:
    s = start_server(reactor, media[0])
    s.files = media[1]
    yield s
    await stop_server(s)
