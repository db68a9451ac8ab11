"""Shared fixtures. The reactor is imported inside fixtures, never at module level,
so that pytest-twisted installs it first."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
import pytest_twisted


@pytest.fixture
def reactor() -> Any:
    from twisted.internet import reactor as _reactor
    return _reactor


def make_tree(root: str) -> dict[str, bytes]:
    """A small camera folder: nested folders, a JPEG, a PNG and a text file."""
    from ptpip.camera import sample_pictures
    files: dict[str, bytes] = {}
    os.makedirs(os.path.join(root, "DCIM", "100TEST"))
    os.makedirs(os.path.join(root, "DCIM", "101TEST", "deep"))
    for src in sample_pictures()[:2]:
        name = f"DCIM/100TEST/{os.path.basename(src)}"
        shutil.copy(src, os.path.join(root, name))
        files[name] = open(src, "rb").read()
    files["DCIM/101TEST/deep/notes.txt"] = b"hello camera\n"
    files["readme.txt"] = b"top level\n"
    for name in ("DCIM/101TEST/deep/notes.txt", "readme.txt"):
        with open(os.path.join(root, name), "wb") as f:
            f.write(files[name])
    return files


class Running:
    """A responder listening on 127.0.0.1 with a filesystem camera."""

    def __init__(self, factory: Any, port: Any, camera: Any, root: str) -> None:
        self.factory = factory
        self.listening = port
        self.port = port.getHost().port
        self.camera = camera
        self.root = root


async def start_responder(reactor: Any, root: str, **kwargs: Any) -> Running:
    from ptpip.camera import filesystem_camera
    from ptpip.responder import ResponderFactory
    camera_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in ("allow_format", "read_only", "capture_folder", "profile", "capture")}
    capture = camera_kwargs.pop("capture", None)
    camera = filesystem_camera(root, scan_interval=kwargs.pop("scan_interval", None), **camera_kwargs)
    if capture is not None:
        camera.capture_source = capture
    factory = ResponderFactory(camera, friendly_name="test camera", **kwargs)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    return Running(factory, port, camera, root)


class RunningFuji:
    """A Fuji X camera listening on three consecutive ports of 127.0.0.1."""

    def __init__(self, factory: Any, ports: list[Any], camera: Any, root: str) -> None:
        self.factory = factory
        self.listenings = ports
        self.port = ports[0].getHost().port
        self.event_port = self.port + 1
        self.camera = camera
        self.root = root


async def start_fuji(reactor: Any, root: str, capture: Any = None) -> RunningFuji:
    import random

    from twisted.internet import error

    from ptpip.camera import filesystem_camera
    from ptpip.devices.profiles import get_profile
    from ptpip.fuji import FujiResponderFactory
    camera = filesystem_camera(root, scan_interval=None, profile=get_profile("fuji"))
    if capture is not None:
        camera.capture_source = capture
    factory = FujiResponderFactory(camera, guid=bytes(range(16)), friendly_name="test fuji")
    for _ in range(50):
        base = random.randrange(20000, 60000)
        ports: list[Any] = []
        try:
            for offset, sub in enumerate((factory.command, factory.event, factory.liveview)):
                ports.append(reactor.listenTCP(base + offset, sub, interface="127.0.0.1"))
        except error.CannotListenError:
            for p in ports:
                await p.stopListening()
            continue
        return RunningFuji(factory, ports, camera, root)
    raise RuntimeError("no three free consecutive ports")


async def stop_fuji(r: RunningFuji) -> None:
    r.camera.stop()
    for proto in list(r.factory.connections):
        if proto.transport is not None:
            proto.transport.abortConnection()
    for p in r.listenings:
        await p.stopListening()


async def stop_responder(r: Running) -> None:
    from twisted.internet import defer
    r.camera.stop()
    for proto in list(r.factory.connections):
        if proto.transport is not None:
            proto.transport.abortConnection()
    await r.listening.stopListening()
    # Let the aborted connections finish closing.
    from twisted.internet import reactor
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(0.01, d.callback, None)
    await d


@pytest.fixture
def camera_files(tmp_path: Any) -> tuple[str, dict[str, bytes]]:
    root = str(tmp_path / "camera")
    os.makedirs(root)
    return root, make_tree(root)


@pytest_twisted.async_yield_fixture
async def responder(reactor: Any, camera_files: tuple[str, dict[str, bytes]]) -> Any:
    root, _ = camera_files
    r = await start_responder(reactor, root)
    yield r
    await stop_responder(r)
