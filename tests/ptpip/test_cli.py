"""The ``ptpip`` command line, run as a user would, against a responder on loopback."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest_twisted
from twisted.internet import utils


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
