"""The example programs of the documentation (docs/examples/*.py), run as a reader
would run them, against servers started here on 127.0.0.1: what they print, what
they download, and what they change on the other side."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, utils

from .cccp.conftest import fill, start_server, stop_server

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def test_every_example_is_tested_here():
    """A new example file needs a test in this module."""
    tested = {"tether.py", "cccp_control.py", "embedded.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


async def run_example(reactor: Any, name: str, *args: str, cwd: str | None = None) -> tuple[str, str, int]:
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, [str(EXAMPLES / name), *args], env=dict(os.environ), path=cwd, reactor=reactor)
    return out.decode(), err.decode(), code


def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


# -- tether.py: the PTP-IP initiator tutorial ------------------------------------------

@pytest_twisted.ensureDeferred
async def test_tether_lists_sets_captures_and_downloads(reactor, responder, camera_files, tmp_path):
    root, files = camera_files
    shots = tmp_path / "shots"
    out, err, code = await run_example(reactor, "tether.py", "--port", str(responder.port),
                                       "--output", str(shots), "--set", "FNumber=800")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "connected to 'test camera': Twisted PTP-IP Virtual Camera"
    assert "  /DCIM/100TEST/" in lines
    assert f"  /DCIM/100TEST/IMG_0001.JPG ({len(files['DCIM/100TEST/IMG_0001.JPG'])} bytes)" in lines
    assert f"  /readme.txt ({len(files['readme.txt'])} bytes)" in lines
    assert "FNumber: 560 -> 800" in lines
    assert responder.camera.properties.get(0x5007) == 800
    assert "event: DevicePropChanged FNumber" in lines
    # The capture: ObjectAdded, then CaptureComplete, then the download.
    added = [i for i, line in enumerate(lines) if line.startswith("event: ObjectAdded ")]
    complete = lines.index("event: CaptureComplete")
    captured = [i for i, line in enumerate(lines) if re.fullmatch(r"captured CAP_0001\.JPG \(handle \d+\)", line)]
    assert added and captured and added[0] < complete < captured[0]
    saved = (shots / "CAP_0001.JPG").read_bytes()
    assert saved == (Path(root) / "CAP_0001.JPG").read_bytes()     # what the camera stored
    assert saved[:3] == b"\xff\xd8\xff"
    assert f"saved {shots / 'CAP_0001.JPG'} ({len(saved)} bytes)" in lines
    assert f"CAP_0001.JPG: 100% ({len(saved)} of {len(saved)} bytes)" in err      # the progress line
    assert not list(shots.glob("*.part"))


@pytest_twisted.ensureDeferred
async def test_tether_all_downloads_every_file_byte_identical(reactor, responder, camera_files, tmp_path):
    root, files = camera_files
    dest = tmp_path / "everything"
    out, err, code = await run_example(reactor, "tether.py", "--port", str(responder.port), "--all",
                                       "--no-capture", "--output", str(dest), "--set", "ExposureIndex=1600")
    assert code == 0, err
    assert "ExposureIndex: 200 -> 1600" in out.splitlines()
    assert "captured" not in out
    for name, data in files.items():
        assert (dest / os.path.basename(name)).read_bytes() == data, name
    assert sorted(p.name for p in dest.iterdir()) == sorted(os.path.basename(n) for n in files)


@pytest_twisted.ensureDeferred
async def test_tether_reports_errors_in_one_line(reactor, responder, tmp_path):
    out, err, code = await run_example(reactor, "tether.py", "--port", str(responder.port), "--no-capture",
                                       "--output", str(tmp_path / "x"), "--set", "FNumber=801")
    assert code == 1
    assert err.strip() == "tether.py: camera answered InvalidDevicePropValue (0x201C) to SetDevicePropValue"
    assert responder.camera.properties.get(0x5007) == 560
    out, err, code = await run_example(reactor, "tether.py", "--port", "1", "--output", str(tmp_path / "y"))
    assert code == 1
    assert err.startswith("tether.py: Connection was refused") and len(err.strip().splitlines()) == 1
    out, err, code = await run_example(reactor, "tether.py", "--set", "Warp=1")
    assert code == 2 and "unknown property in --set 'Warp=1'" in err


# -- cccp_control.py: the CCCP client tutorial ------------------------------------------

@pytest.fixture
def media(tmp_path: Any) -> tuple[str, dict[str, bytes]]:
    root = str(tmp_path / "media")
    os.makedirs(root)
    files = fill(root)
    from cccp.media import sample_clip_path
    sample = sample_clip_path()
    assert sample, "the package ships cccp/samples/sample.ts"
    shutil.copy(sample, os.path.join(root, "sample.ts"))
    files["sample.ts"] = open(sample, "rb").read()
    return root, files


@pytest_twisted.async_yield_fixture
async def cccp_server(reactor: Any, media: Any) -> Any:
    s = start_server(reactor, media[0])
    s.files = media[1]
    yield s
    await stop_server(s)


@pytest_twisted.ensureDeferred
async def test_cccp_control_shows_status_and_moves_the_camera(reactor, cccp_server):
    out, err, code = await run_example(reactor, "cccp_control.py", "--port", str(cccp_server.port),
                                       "--move", "ZOOM=+", "--move", "PAN=+5", "--play", "0.3")
    assert code == 0, err
    lines = out.splitlines()
    assert "ZOOM      1  [1 .. 20]" in lines and "PAN       0  [-170 .. 170]" in lines
    assert "Command okay: ZOOM 1.5" in lines and "Command okay: PAN 5" in lines
    assert cccp_server.camera.status("PAN")[1] == 5
    assert any(re.fullmatch(r"tape: PLAY at 0\.[0-9]+", line) for line in lines), lines
    assert cccp_server.deck.state()[0] == "PAUS"
    assert {"  hello.txt", "  clips", "  sample.ts"} <= set(lines)


@pytest_twisted.ensureDeferred
async def test_cccp_control_downloads_byte_identical(reactor, cccp_server, tmp_path):
    dest = tmp_path / "clips"
    out, err, code = await run_example(reactor, "cccp_control.py", "--port", str(cccp_server.port),
                                       "--get", "/clips/a.ts", "--output", str(dest))
    assert code == 0, err
    data = cccp_server.files["clips/a.ts"]
    assert (dest / "a.ts").read_bytes() == data
    assert f"226 Transfer complete ({len(data)} bytes)" in out.splitlines()
    assert f"saved {dest / 'a.ts'} ({len(data)} bytes)" in out.splitlines()


@pytest_twisted.ensureDeferred
async def test_cccp_control_paced_download_answers_stat_meanwhile(reactor, cccp_server, tmp_path):
    """TYPE I M takes the clip's 4 seconds; STAT is answered while the data flows."""
    dest = tmp_path / "paced"
    out, err, code = await run_example(reactor, "cccp_control.py", "--port", str(cccp_server.port),
                                       "--get", "/sample.ts", "--paced", "--output", str(dest),
                                       "--user", "alice", "--password", "wonderland")
    assert code == 0, err
    progress = [line for line in out.splitlines() if line.startswith("RETR /sample.ts in progress: ")]
    assert len(progress) >= 2, out
    assert (dest / "sample.ts").read_bytes() == cccp_server.files["sample.ts"]


@pytest_twisted.ensureDeferred
async def test_cccp_control_reports_errors_in_one_line(reactor, cccp_server, tmp_path):
    dest = tmp_path / "none"
    out, err, code = await run_example(reactor, "cccp_control.py", "--port", str(cccp_server.port),
                                       "--get", "/nope.ts", "--output", str(dest))
    assert code == 1 and err.strip() == "cccp_control.py: RETR: 550 /nope.ts: no such file"
    assert list(dest.iterdir()) == []                  # no empty file left behind
    out, err, code = await run_example(reactor, "cccp_control.py", "--port", str(cccp_server.port),
                                       "--user", "alice", "--password", "wrong")
    assert code == 1 and err.strip() == "cccp_control.py: PASS: 530 Login incorrect"
    out, err, code = await run_example(reactor, "cccp_control.py", "--port", str(cccp_server.port),
                                       "--move", "WARP=1")
    assert code == 1 and err.strip() == "cccp_control.py: WARP: 500 Syntax error, command unrecognized: WARP"


# -- embedded.py: both servers in one program --------------------------------------------

class _Running(protocol.ProcessProtocol):
    """Collects the example's output; fires *ports* once both servers listen."""

    def __init__(self) -> None:
        self.out = ""
        self.err = ""
        self.ports: defer.Deferred[dict[str, int]] = defer.Deferred()
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data.decode()
        found = dict(re.findall(r"^(PTP-IP camera|CCCP server) listening on 127\.0\.0\.1:(\d+)$", self.out, re.M))
        if len(found) == 2 and not self.ports.called:
            self.ports.callback({k: int(v) for k, v in found.items()})

    def errReceived(self, data: bytes) -> None:
        self.err += data.decode()

    def processEnded(self, reason: Any) -> None:
        if not self.ports.called:
            self.ports.errback(RuntimeError(f"embedded.py ended early:\n{self.out}\n{self.err}"))
        self.ended.callback(reason.value.exitCode)


@pytest_twisted.ensureDeferred
async def test_embedded_serves_both_protocols_over_one_folder(reactor, tmp_path):
    from cccp.client import connect as cccp_connect
    from cccp.errors import CommandFailed
    from ptpip.client import PTPClient

    root = tmp_path / "pictures"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello\n")
    proc = _Running()
    reactor.spawnProcess(proc, sys.executable, [sys.executable, str(EXAMPLES / "embedded.py"), "--root",
                                                str(root), "--ptpip-port", "0", "--cccp-port", "0"],
                         env=dict(os.environ))
    try:
        ports = await proc.ports.addTimeout(30, reactor)
        camera = await PTPClient.connect(reactor, "127.0.0.1", ports["PTP-IP camera"])
        try:
            assert camera.device_info.model == "Colour Card Camera"
            assert list(camera.device_info.device_properties_supported) == [0x5001, 0x5007, 0x500F]
            handles = await camera.capture(reactor)
            assert [(await camera.getObjectInfo(h)).filename for h in handles] == ["RED_0001.JPG"]
        finally:
            await camera.close()
        assert (root / "RED_0001.JPG").read_bytes()[:3] == b"\xff\xd8\xff"

        client = await cccp_connect(reactor, "127.0.0.1", ports["CCCP server"])
        assert "RED_0001.JPG" in await client.nlst("/")
        assert (await client.pan("+")).text == "Command okay: PAN 5"
        assert (await client.tilt(60)).text == "Command okay: TILT 45"
        assert list((await client.cameraStatus()).controls) == ["PAN", "TILT"]
        with pytest.raises(CommandFailed) as failed:
            await client.zoom("+")
        assert failed.value.code == 502
        await client.quit()
        await sleep(reactor, 0.2)
        assert "head: PAN now 5" in proc.out and "head: TILT now 45" in proc.out
    finally:
        if not proc.ended.called:
            proc.transport.signalProcess("TERM")
        code = await proc.ended
    assert code == 0, proc.err
