"""The ``ptpip`` command line, run as a user would, against a responder on loopback."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest_twisted
from twisted.internet import defer, task, utils
from zope.interface import implementer

from ptpip.constants import EventCode
from ptpip.interfaces import ICaptureSource

from ..conftest import start_responder, stop_responder


async def run(reactor: Any, *args: str, cwd: str | None = None) -> tuple[str, str, int]:
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, ["-m", "ptpip.cli", *args], env=dict(os.environ), path=cwd, reactor=reactor)
    return out.decode(), err.decode(), code


@pytest_twisted.ensureDeferred
async def test_info_ls_get(reactor, responder, camera_files, tmp_path):
    root, files = camera_files
    port = str(responder.port)
    out, err, code = await run(reactor, "--port", port, "info")
    assert code == 0, err
    assert "Twisted PTP-IP" in out and "GetPartialObject" in out
    out, err, code = await run(reactor, "--port", port, "ls")
    assert code == 0, err
    assert "100TEST/" in out and "IMG_0001.JPG" in out and "notes.txt" in out
    dest = tmp_path / "out"
    out, err, code = await run(reactor, "--port", port, "get", "--all", "--keep-tree", "-o", str(dest))
    assert code == 0, err
    for name, data in files.items():
        assert (dest / name).read_bytes() == data


@pytest_twisted.ensureDeferred
async def test_json_output(reactor, responder):
    out, err, code = await run(reactor, "--port", str(responder.port), "--json", "ls")
    assert code == 0, err
    rows = json.loads(out)
    assert {r["path"] for r in rows} >= {"/readme.txt", "/DCIM/100TEST/IMG_0001.JPG"}
    # The connection options work after the subcommand too, as people type them.
    out2, err, code = await run(reactor, "ls", "--json", "--port", str(responder.port))
    assert code == 0, err
    assert json.loads(out2) == rows


@pytest_twisted.ensureDeferred
async def test_put_rm_props_capture(reactor, responder, tmp_path):
    port = str(responder.port)
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hi there")
    out, err, code = await run(reactor, "--port", port, "put", str(src), "--folder", "/DCIM/101TEST")
    assert code == 0, err
    assert (open(os.path.join(responder.root, "DCIM", "101TEST", "hello.txt"), "rb").read() == b"hi there")
    out, err, code = await run(reactor, "--port", port, "rm", "/readme.txt")
    assert code == 0, err
    assert not os.path.exists(os.path.join(responder.root, "readme.txt"))
    out, err, code = await run(reactor, "--port", port, "props", "set", "FNumber", "800")
    assert code == 0, err
    assert "FNumber" in out and "= 800" in out and "allowed" in out
    out, err, code = await run(reactor, "--port", port, "props", "set", "fnumber", "801")
    assert code == 1 and err.strip() == "ptpip: camera answered InvalidDevicePropValue (0x201C) to SetDevicePropValue"
    out, err, code = await run(reactor, "--port", port, "capture", "--download", "-o", str(tmp_path / "cap"))
    assert code == 0, err
    assert (tmp_path / "cap" / "CAP_0001.JPG").read_bytes()[:3] == b"\xff\xd8\xff"


@pytest_twisted.ensureDeferred
async def test_errors_are_one_clear_line(reactor, responder):
    out, err, code = await run(reactor, "--port", "1", "ls")
    assert code == 1
    assert err.startswith("ptpip: cannot reach a PTP-IP camera at 127.0.0.1:1")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    out, err, code = await run(reactor, "--port", str(responder.port), "get", "/nope.jpg")
    assert code == 1 and err.strip() == "ptpip: no object '/nope.jpg' on the camera (see 'ptpip ls')"
    out, err, code = await run(reactor, "--port", str(responder.port), "get", "/readme.txt", "-o", "/proc/version/x")
    assert code == 1 and err.strip() == "ptpip: /proc/version/x: Not a directory"


@pytest_twisted.ensureDeferred
async def test_capture_that_fails_is_one_line_and_status_1(reactor, tmp_path):
    """A capture folder removed after start-up: the camera answers StoreNotAvailable and
    ``ptpip capture`` says so in one line, exit status 1."""
    root, shutter = tmp_path / "cam", tmp_path / "shutter"
    root.mkdir()
    shutter.mkdir()
    r = await start_responder(reactor, str(root), capture_folder=str(shutter))
    try:
        shutter.rmdir()
        out, err, code = await run(reactor, "--port", str(r.port), "capture")
    finally:
        await stop_responder(r)
    assert code == 1 and out == ""
    assert err.strip() == "ptpip: camera answered StoreNotAvailable (0x2013) to InitiateCapture"


@implementer(ICaptureSource)
class _FailsLater:
    """A capture source whose picture never comes: it fails after InitiateCapture is answered."""

    def capture(self, object_format: int) -> Any:
        from twisted.internet import reactor

        def fail() -> None:
            raise OSError("sensor unplugged")
        return task.deferLater(reactor, 0.05, fail)


@pytest_twisted.ensureDeferred
async def test_capture_of_nothing_is_one_line_and_status_1(reactor, tmp_path):
    """CaptureComplete without ObjectAdded: ``ptpip capture`` says nothing was captured and
    exits 1, instead of printing "captured nothing" with status 0."""
    from ptpip.camera import Camera
    from ptpip.filestore import FilesystemStore
    from ptpip.responder import ResponderFactory
    camera = Camera(FilesystemStore(str(tmp_path)), capture=_FailsLater(), scan_interval=None)
    port = reactor.listenTCP(0, ResponderFactory(camera), interface="127.0.0.1")
    try:
        out, err, code = await run(reactor, "--port", str(port.getHost().port), "capture", "--wait", "10")
    finally:
        await port.stopListening()
    assert code == 1 and out == ""
    assert err.strip() == "ptpip: the camera captured nothing (CaptureComplete came without a new object)"


async def _cli_session(reactor: Any, r: Any, timeout: float = 20.0) -> None:
    """Wait until the CLI under test has opened its PTP session with the camera."""
    deadline = reactor.seconds() + timeout
    while not any(s.session_id for s in r.camera.sessions):
        assert reactor.seconds() < deadline, "the CLI never opened a session"
        await task.deferLater(reactor, 0.05, lambda: None)


@pytest_twisted.ensureDeferred
async def test_events_ended_by_the_camera_say_so_and_exit_1(reactor, tmp_path):
    """The camera closes the session (its idle timeout): one line on stderr, status 1,
    instead of a silent status 0 long before --duration."""
    root = tmp_path / "cam"
    root.mkdir()
    r = await start_responder(reactor, str(root), idle_timeout=1.0)
    try:
        start = reactor.seconds()
        cli = defer.ensureDeferred(run(reactor, "--port", str(r.port), "events", "--duration", "20"))
        await _cli_session(reactor, r)
        r.camera.properties.set(0x5007, 800)
        out, err, code = await cli
    finally:
        await stop_responder(r)
    assert reactor.seconds() - start < 15
    assert code == 1, err
    assert out == "DevicePropChanged FNumber (0x5007)\n"
    assert err == "ptpip: the camera closed the connection after 1 event\n"


@pytest_twisted.ensureDeferred
async def test_events_ended_by_duration_or_count_exit_0(reactor, responder):
    out, err, code = await run(reactor, "--port", str(responder.port), "events", "--duration", "0.5")
    assert (out, err, code) == ("", "", 0)
    cli = defer.ensureDeferred(run(reactor, "--port", str(responder.port), "events", "--count", "1"))
    await _cli_session(reactor, responder)
    responder.camera.broadcast(EventCode.StoreFull, (0x00010001,))
    out, err, code = await cli
    assert (out, err, code) == ("StoreFull storage 0x00010001\n", "", 0)


@pytest_twisted.ensureDeferred
async def test_events_are_named_with_codes_in_hex(reactor, responder):
    """Property codes by name and in hex, object events with the handle, unknown (vendor)
    event codes and their parameters in hex; --json carries the numbers and the names."""
    port = str(responder.port)
    lines = {}
    for mode in ("text", "json"):
        json_flag = ["--json"] if mode == "json" else []
        cli = defer.ensureDeferred(run(reactor, "--port", port, *json_flag, "events", "--count", "5"))
        await _cli_session(reactor, responder)
        camera = responder.camera
        camera.properties.set(0x5007, 800 if mode == "text" else 560)
        camera.broadcast(EventCode.DevicePropChanged, (0xD123,))
        camera.broadcast(EventCode.ObjectAdded, (7,))
        camera.broadcast(0xC101, (1, 0xABCDEF))
        camera.broadcast(EventCode.CaptureComplete, (), 12)
        out, err, code = await cli
        assert code == 0, err
        lines[mode] = out.splitlines()
        while any(s.session_id for s in camera.sessions):       # the CLI has hung up
            await task.deferLater(reactor, 0.05, lambda: None)
    assert lines["text"] == [
        "DevicePropChanged FNumber (0x5007)",
        "DevicePropChanged 0xD123",
        "ObjectAdded handle 7",
        "0xC101 0x00000001 0x00ABCDEF",
        "CaptureComplete transaction 12",
    ]
    rows = [json.loads(line) for line in lines["json"]]
    assert rows[0] == {"event": "DevicePropChanged", "code": "0x4006", "transaction_id": 0xFFFFFFFF,
                       "params": [0x5007], "property": {"code": "0x5007", "name": "FNumber"}}
    assert rows[1]["property"] == {"code": "0xD123", "name": None}
    assert rows[2] == {"event": "ObjectAdded", "code": "0x4002", "transaction_id": 0xFFFFFFFF,
                       "params": [7], "handle": 7}
    assert rows[3] == {"event": "0xC101", "code": "0xC101", "transaction_id": 0xFFFFFFFF,
                       "params": [1, 0xABCDEF]}
    assert rows[4] == {"event": "CaptureComplete", "code": "0x400D", "transaction_id": 12, "params": []}


@pytest_twisted.ensureDeferred
async def test_capture_and_props_take_the_vendor_paths(reactor, tmp_path):
    """``ptpip capture`` on a Canon EOS releases the shutter and fetches the picture it holds
    for the host; on a Nikon it captures into SDRAM; ``ptpip props`` names vendor properties
    and sets them the vendor's way."""
    from ptpip.devices.profiles import get_profile
    from ptpip.wire.vendor import CanonOp, NikonOp
    for name in ("canon-eos", "canon-eos-classic", "nikon"):
        root = tmp_path / name
        root.mkdir()
        r = await start_responder(reactor, str(root), profile=get_profile(name))
        try:
            port = str(r.port)
            dest = tmp_path / f"{name}-shots"
            if name.startswith("canon"):
                out, err, code = await run(reactor, "--port", port, "props", "set", "CaptureDestination", "4")
                assert code == 0, err
            out, err, code = await run(reactor, "--port", port, "--json", "capture", "-o", str(dest))
            assert code == 0, err
            (shot,) = json.loads(out)
            assert shot["held"] is True                       # held in the camera, fetched, freed
            data = open(shot["file"], "rb").read()
            assert data[:2] == b"\xff\xd8" and len(data) > 1000
            assert not list(root.rglob("*.JPG"))              # nothing was written to the card
            seen = r.camera.operations_seen
            if name == "nikon":
                assert seen[NikonOp.InitiateCaptureRecInSdram] == 1 and seen[NikonOp.DeviceReady] >= 2
                assert seen[0x100E] == 0
                out, err, code = await run(reactor, "--port", port, "props", "set", "ExposureTime", str((1 << 16) | 125))
                assert code == 0, err
                assert out.startswith("ExposureTime") and "0xD100 = 65661" in out
                assert r.camera.properties.get(0xD100) == (1 << 16) | 125
            else:
                assert seen[CanonOp.TransferComplete] == 1
                assert seen[CanonOp.RemoteReleaseOn if name == "canon-eos" else CanonOp.RemoteRelease] >= 1
                out, err, code = await run(reactor, "--port", port, "props", "set", "aperture", "0x38")
                assert code == 0, err
                assert out.startswith("Aperture") and "0xD101 = 56" in out
                assert r.camera.properties.get(0xD101) == 0x38
                out, err, code = await run(reactor, "--port", port, "props")
                assert code == 0 and "ISOSpeed" in out and "CaptureDestination" in out
        finally:
            await stop_responder(r)


@pytest_twisted.ensureDeferred
async def test_liveview_writes_mjpeg_that_ffprobe_counts(reactor, tmp_path):
    """``ptpip liveview --frames 50 --stdout | ffprobe -f mjpeg -`` counts 50 frames, on a
    Canon EOS, a Nikon and a standard camera (PTP 1.1 streams); live view is off again
    afterwards."""
    import shlex
    import shutil

    from ptpip.devices.profiles import get_profile
    ffprobe = shutil.which("ffprobe")
    assert ffprobe, "ffprobe is needed (.ci/run installs ffmpeg)"
    for name, prop in (("canon-eos", 0xD1B0), ("nikon", 0xD1A2), ("generic", 0x5021)):
        root = tmp_path / name
        root.mkdir()
        r = await start_responder(reactor, str(root), profile=get_profile(name))
        try:
            cmd = (f"{shlex.quote(sys.executable)} -m ptpip.cli --port {r.port} liveview --frames 50 --stdout"
                   f" | {ffprobe} -v error -f mjpeg -count_frames -select_streams v:0"
                   " -show_entries stream=nb_read_frames,width,height -of csv=p=0 -")
            out, err, code = await utils.getProcessOutputAndValue(
                "/bin/sh", ["-c", cmd], env=dict(os.environ), reactor=reactor)
            assert code == 0, err.decode()
            assert out.decode().strip() == "640,480,50", (out, err)
            assert b"50 frames in" in err
            assert r.camera.properties.get(prop) == 0             # switched off again
        finally:
            await stop_responder(r)
