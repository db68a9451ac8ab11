"""``twistd ptpip-responder --cameras FILE``: a studio of cameras of different profiles in one
process, each on its own port with its own card and GUID, all driven by gphoto2 at once."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from typing import Any

import pytest_twisted
from twisted.internet import defer, utils

from ..conftest import make_tree

GPHOTO2 = shutil.which("gphoto2")
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
CAMERAS = [("EOS left", "canon-eos", "Canon EOS (WLAN)", "Canon EOS 5D Mark IV"),
           ("Nikon right", "nikon", "Nikon DSLR (WLAN)", "D750"),
           ("Plain top", "generic", "PTP/IP Camera", "Virtual Camera")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


async def gphoto(reactor: Any, model: str, port: int, home: str, *args: str) -> str:
    assert GPHOTO2, "gphoto2 is not installed: .ci/run installs it with apt-get"
    out, err, code = await utils.getProcessOutputAndValue(
        "timeout", ["-k", "5", "60", GPHOTO2, "--camera", model, "--port", f"ptpip:127.0.0.1:{port}:{port}", *args],
        env={"HOME": home, "LANG": "C", "PATH": os.environ["PATH"]}, path=home, reactor=reactor)
    text = (out + err).decode("utf-8", "replace")
    assert code == 0, f"gphoto2 {model} {' '.join(args)} failed ({code}):\n{text}"
    return text


@pytest_twisted.ensureDeferred
async def test_three_cameras_of_different_profiles_in_one_process(reactor, tmp_path):
    ports, roots = [], []
    lines = []
    for i, (name, profile, _, _) in enumerate(CAMERAS):
        port, root = free_port(), tmp_path / f"card{i}"
        root.mkdir()
        make_tree(str(root))
        (root / "DCIM" / "100TEST" / f"CAM{i}.TXT").write_text(name)
        ports.append(port)
        roots.append(root)
        lines += ["[[camera]]", f'name = "{name}"', f'profile = "{profile}"',
                  f'listen = "tcp:{port}:interface=127.0.0.1"', f'root = "{root}"',
                  f'guid = "{i:02x}' + "00" * 15 + '"', ""]
    cameras = tmp_path / "studio.toml"
    cameras.write_text("\n".join(lines))
    quiet = _Quiet()
    proc = reactor.spawnProcess(quiet, TWISTD, [TWISTD, "-n", "--pidfile=", "ptpip-responder", "--cameras",
                                                   str(cameras), "--no-announce"],
                                env=dict(os.environ), path=str(tmp_path))
    try:
        for _ in range(100):                       # until every camera listens
            if all(_listening(p) for p in ports):
                break
            await sleep(reactor, 0.1)
        else:
            raise AssertionError(f"the cameras never listened:\n{quiet.log.decode(errors='replace')}")
        homes = []
        for i in range(len(CAMERAS)):
            homes.append(str(tmp_path / f"home{i}"))
            os.makedirs(homes[-1])
        # All three at once: their summaries, then a capture on each at the same time.
        summaries = await defer.gatherResults([
            defer.ensureDeferred(gphoto(reactor, gmodel, port, home, "--summary"))
            for (_, _, gmodel, _), port, home in zip(CAMERAS, ports, homes, strict=True)])
        for (_, _, _, model), text in zip(CAMERAS, summaries, strict=True):
            assert f"Model: {model}" in text
        listings = await defer.gatherResults([
            defer.ensureDeferred(gphoto(reactor, gmodel, port, home, "-R", "--list-files"))
            for (_, _, gmodel, _), port, home in zip(CAMERAS, ports, homes, strict=True)])
        for i, text in enumerate(listings):
            assert f"CAM{i}.TXT" in text and all(f"CAM{j}.TXT" not in text for j in range(3) if j != i)
        shots = await defer.gatherResults([
            defer.ensureDeferred(gphoto(reactor, gmodel, port, home, "--capture-image-and-download"))
            for (_, _, gmodel, _), port, home in zip(CAMERAS, ports, homes, strict=True)])
        for text, home in zip(shots, homes, strict=True):
            assert "Saving file as" in text
            saved = [n for n in os.listdir(home) if n.lower().endswith(".jpg")]
            assert len(saved) == 1 and os.path.getsize(os.path.join(home, saved[0])) > 1000
    finally:
        proc.signalProcess("TERM")
        await quiet.ended


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class _Quiet:
    """A process protocol that keeps twistd's log and tells when it ended."""

    def __init__(self) -> None:
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.log = b""

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport

    def childDataReceived(self, fd: int, data: bytes) -> None:
        self.log += data

    def childConnectionLost(self, fd: int) -> None:
        pass

    def processExited(self, reason: Any) -> None:
        pass

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)
