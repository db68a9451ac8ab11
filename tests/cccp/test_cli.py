"""The ``cccp`` command line, run as a user would, against a server on loopback."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest_twisted
from twisted.internet import utils


async def run(reactor: Any, *args: str, cwd: str | None = None) -> tuple[str, str, int]:
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, ["-m", "cccp.cli", *args], env=dict(os.environ), path=cwd, reactor=reactor)
    return out.decode(), err.decode(), code


@pytest_twisted.ensureDeferred
async def test_status_ptz_tape(reactor, server):
    url = f"cccp://127.0.0.1:{server.port}/"
    out, err, code = await run(reactor, "status", url)
    assert code == 0, err
    assert "tape: PAUS at 0" in out and "ZOOM" in out and "[-170 .. 170]" in out
    out, err, code = await run(reactor, "ptz", url, "pan", "+5", "zoom", "-", "focus", "3.5")
    assert code == 0, err
    assert out.splitlines() == ["PAN 5", "ZOOM 1", "FOCU 3.5"]
    out, err, code = await run(reactor, "tape", url, "play", "10", "20")
    assert code == 0 and out.startswith("PLAY; now PLAY at")
    assert out.rstrip("\n").endswith(", speed 8 (clamped from 20)"), out


@pytest_twisted.ensureDeferred
async def test_get_and_put(reactor, server, tmp_path):
    url = f"cccp://127.0.0.1:{server.port}/clips/a.ts"
    out, err, code = await run(reactor, "get", url, "-o", str(tmp_path / "a.ts"))
    assert code == 0, err
    assert (tmp_path / "a.ts").read_bytes() == server.files["clips/a.ts"]
    src = tmp_path / "up.ts"
    src.write_bytes(b"\x47" * 188 * 10)
    out, err, code = await run(reactor, "put", str(src), f"cccp://alice:wonderland@127.0.0.1:{server.port}/clips/")
    assert code == 0, err
    assert open(os.path.join(server.root, "clips", "up.ts"), "rb").read() == src.read_bytes()
    out, err, code = await run(reactor, "ls", f"cccp://127.0.0.1:{server.port}/clips/")
    assert code == 0 and "up.ts" in out


@pytest_twisted.ensureDeferred
async def test_get_and_put_show_progress_and_rate(reactor, server, tmp_path):
    # The 150 reply names the size, so a download shows a percentage; an upload knows its own.
    size = len(server.files["clips/a.ts"])
    url = f"cccp://127.0.0.1:{server.port}/clips/a.ts"
    out, err, code = await run(reactor, "get", url, "-o", str(tmp_path / "a.ts"), "--progress")
    assert code == 0, err
    last = err.rstrip("\n").split("\r")[-1]
    assert last.startswith("a.ts") and "100.0%" in last and last.endswith("MB/s"), err
    assert f"({size} bytes in " in out and " MB/s): " in out
    src = tmp_path / "big.ts"
    src.write_bytes(b"\x47" * 188 * 30000)
    out, err, code = await run(reactor, "put", str(src), f"cccp://alice:wonderland@127.0.0.1:{server.port}/clips/",
                               "--progress")
    assert code == 0, err
    last = err.rstrip("\n").split("\r")[-1]
    assert last.startswith("big.ts") and "100.0%" in last and f"{188 * 30000 / 1e6:8.1f} MB" in last, err
    assert f"({188 * 30000} bytes in " in out
    assert open(os.path.join(server.root, "clips", "big.ts"), "rb").read() == src.read_bytes()
    # Without --progress (and not on a terminal) nothing but the summary is printed.
    out, err, code = await run(reactor, "get", url, "-o", str(tmp_path / "b.ts"))
    assert code == 0 and err == ""


@pytest_twisted.ensureDeferred
async def test_put_in_a_media_type_refuses_a_file_that_is_not_ts(reactor, server, tmp_path):
    """Sent as TS packets (paced TCP, RTP or UDP) a file must be TS through and through; the
    command says so before connecting, and nothing reaches the server."""
    url = f"cccp://alice:wonderland@127.0.0.1:{server.port}/clips/"
    odd = tmp_path / "odd.ts"
    odd.write_bytes(b"\x47" * 188 * 3 + b"\x47" * 10)
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"\x47" * 188 * 2 + b"x" * 188)
    for f, why in ((odd, "574 bytes is not a whole number of 188-byte packets"),
                   (bad, "no sync byte at offset 376")):
        for extra in (["--type", "I M"], ["--udp"], ["--type", "I R 33"]):
            out, err, code = await run(reactor, "put", str(f), url, *extra)
            assert code == 1 and err.strip() == (
                f"cccp: {f} is not an MPEG2-TS stream ({why}); send it as it is with --type I over TCP"), err
            assert not os.path.exists(os.path.join(server.root, "clips", f.name))
    out, err, code = await run(reactor, "put", str(bad), url)       # TYPE I: any bytes, as FTP
    assert code == 0, err
    assert open(os.path.join(server.root, "clips", "bad.ts"), "rb").read() == bad.read_bytes()


@pytest_twisted.ensureDeferred
async def test_errors_are_one_line(reactor, server, tmp_path):
    out, err, code = await run(reactor, "get", f"cccp://127.0.0.1:{server.port}/nope.ts", "-o", str(tmp_path / "x"))
    assert code == 1 and err.strip() == "cccp: the server answered 550 /nope.ts: no such file"
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "x.part")
    out, err, code = await run(reactor, "ptz", f"cccp://127.0.0.1:{server.port}/", "warp", "9")
    assert code == 1 and err.startswith("cccp: unknown camera control 'warp'")
    out, err, code = await run(reactor, "status", "cccp://127.0.0.1:1/")
    assert code == 1 and err.strip() == "cccp: cannot reach the server at 127.0.0.1:1: ConnectionRefusedError"
    out, err, code = await run(reactor, "get", f"cccp://127.0.0.1:{server.port}/clips/a.ts", "-o",
                               "/proc/version/a.ts")
    assert code == 1 and err.strip() == "cccp: cannot write /proc/version/a.ts: Not a directory"
    assert "Traceback" not in err


@pytest_twisted.ensureDeferred
async def test_interactive_shell(reactor, server, tmp_path):
    """Lines typed go to the server as they are; replies come back in RFC 959 form."""
    from twisted.internet import defer, protocol

    class Collect(protocol.ProcessProtocol):
        def __init__(self) -> None:
            self.out = b""
            self.done: defer.Deferred[None] = defer.Deferred()

        def outReceived(self, data: bytes) -> None:
            self.out += data

        def processEnded(self, reason: Any) -> None:
            self.done.callback(None)

    p = Collect()
    env = dict(os.environ, HOME=str(tmp_path))
    reactor.spawnProcess(p, sys.executable, [sys.executable, "-m", "cccp.cli", "shell",
                                             f"cccp://127.0.0.1:{server.port}/"], env=env)
    p.transport.write(b"zoom +\nCSTA\nls clips\nXYZZY\nquit\n")
    p.transport.closeStdin()
    await p.done
    out = p.out.decode()
    assert "200 Command okay: ZOOM 1.5" in out
    assert "200-OK" in out and "200 End of status" in out
    assert "a.ts" in out and "500 Syntax error, command unrecognized: XYZZY" in out
