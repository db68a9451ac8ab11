"""Real FTP clients drive the FTP-compatible subset of CCCP unchanged:
curl, lftp and Python's ftplib, each byte-identical. curl and lftp are
installed by .ci/run; missing, they fail these tests."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import shutil
from typing import Any

import pytest_twisted
from twisted.internet import threads, utils

from ..cccp.conftest import fill, start_server, stop_server

CURL = shutil.which("curl")
LFTP = shutil.which("lftp")


def test_curl_and_lftp_are_installed():
    assert CURL, "curl is not installed: .ci/run installs it"
    assert LFTP, "lftp is not installed: .ci/run installs it"


@pytest_twisted.async_yield_fixture
async def ftp(reactor: Any, tmp_path: Any) -> Any:
    root = str(tmp_path / "media")
    os.makedirs(root)
    files = fill(root)
    big = os.urandom(5 * 1024 * 1024 + 17)
    with open(os.path.join(root, "clips", "big.ts"), "wb") as f:
        f.write(big)
    files["clips/big.ts"] = big
    s = start_server(reactor, root)
    s.files = files
    yield s
    await stop_server(s)


async def run(reactor: Any, exe: str | None, *args: str, cwd: str | None = None) -> tuple[str, int]:
    assert exe, "client not installed"
    env = {"HOME": cwd or "/tmp", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}
    out, err, code = await utils.getProcessOutputAndValue(exe, args, env=env, path=cwd, reactor=reactor)
    return (out + err).decode("utf-8", "replace"), code


# -- curl -------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_curl_download_byte_identical(reactor, ftp, tmp_path):
    out = tmp_path / "big.ts"
    text, code = await run(reactor, CURL, "-sS", f"ftp://127.0.0.1:{ftp.port}/clips/big.ts", "-o", str(out))
    assert code == 0, text
    assert out.read_bytes() == ftp.files["clips/big.ts"]


@pytest_twisted.ensureDeferred
async def test_curl_listing_and_name_listing(reactor, ftp):
    text, code = await run(reactor, CURL, "-sS", f"ftp://127.0.0.1:{ftp.port}/clips/")
    assert code == 0, text
    lines = text.splitlines()
    assert len(lines) == 3 and lines[0].startswith("-rw") and lines[0].endswith(" a.ts")
    text, code = await run(reactor, CURL, "-sS", "-l", f"ftp://127.0.0.1:{ftp.port}/clips/")
    assert code == 0 and text.splitlines() == ["a.ts", "big.ts", "deep"]


@pytest_twisted.ensureDeferred
async def test_curl_upload(reactor, ftp, tmp_path):
    src = tmp_path / "up.ts"
    src.write_bytes(os.urandom(2_000_000))
    text, code = await run(reactor, CURL, "-sS", "-T", str(src),
                           f"ftp://alice:wonderland@127.0.0.1:{ftp.port}/clips/up.ts")
    assert code == 0, text
    assert open(os.path.join(ftp.root, "clips", "up.ts"), "rb").read() == src.read_bytes()


@pytest_twisted.ensureDeferred
async def test_curl_active_mode(reactor, ftp, tmp_path):
    out = tmp_path / "a.ts"
    text, code = await run(reactor, CURL, "-sS", "-P", "-", f"ftp://127.0.0.1:{ftp.port}/clips/a.ts", "-o", str(out))
    assert code == 0, text
    assert out.read_bytes() == ftp.files["clips/a.ts"]


@pytest_twisted.ensureDeferred
async def test_curl_wrong_password(reactor, ftp):
    text, code = await run(reactor, CURL, "-sS", f"ftp://alice:nope@127.0.0.1:{ftp.port}/")
    assert code == 67 and "530" in text


# -- lftp ----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_lftp_get_and_ls(reactor, ftp, tmp_path):
    script = (f"set cmd:fail-exit yes; set net:max-retries 1; set ftp:ssl-allow no; "
              f"open -p {ftp.port} 127.0.0.1; user anonymous x; ls clips; get clips/big.ts -o {tmp_path}/big.ts; bye")
    text, code = await run(reactor, LFTP, "-c", script, cwd=str(tmp_path))
    assert code == 0, text
    assert "a.ts" in text and "deep" in text
    assert (tmp_path / "big.ts").read_bytes() == ftp.files["clips/big.ts"]


# -- ftplib --------------------------------------------------------------------------------

def _ftplib_session(port: int, root: str, files: dict[str, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    f = ftplib.FTP()
    f.connect("127.0.0.1", port, timeout=10)
    f.login("alice", "wonderland")
    out["pwd"] = f.pwd()
    out["nlst"] = f.nlst()
    out["nlst_arg"] = f.nlst("clips")
    lines: list[str] = []
    f.retrlines("LIST clips", lines.append)
    out["list"] = lines
    f.cwd("clips")
    out["pwd2"] = f.pwd()
    buf = io.BytesIO()
    f.retrbinary("RETR big.ts", buf.write)
    out["retr"] = hashlib.sha256(buf.getvalue()).hexdigest()
    data = os.urandom(1_500_000)
    f.storbinary("STOR stored.ts", io.BytesIO(data))
    out["stor"] = hashlib.sha256(data).hexdigest()
    f.cwd("/")
    out["pwd3"] = f.pwd()
    f.quit()
    return out


@pytest_twisted.ensureDeferred
async def test_ftplib(reactor, ftp):
    out = await threads.deferToThread(_ftplib_session, ftp.port, ftp.root, ftp.files)
    assert out["pwd"] == "/" and out["pwd2"] == "/clips" and out["pwd3"] == "/"
    assert out["nlst"] == ["clips", "hello.txt"]
    assert out["nlst_arg"] == ["a.ts", "big.ts", "deep"]
    assert len(out["list"]) == 3 and out["list"][2].startswith("d") and out["list"][2].endswith(" deep")
    assert out["retr"] == hashlib.sha256(ftp.files["clips/big.ts"]).hexdigest()
    stored = open(os.path.join(ftp.root, "clips", "stored.ts"), "rb").read()
    assert hashlib.sha256(stored).hexdigest() == out["stor"]


def _ftplib_errors(port: int) -> list[str]:
    f = ftplib.FTP()
    f.connect("127.0.0.1", port, timeout=10)
    f.login()
    errors = []
    for call in (lambda: f.cwd("nope"), lambda: f.retrbinary("RETR nope.ts", lambda b: None),
                 lambda: f.storbinary("STOR x.ts", io.BytesIO(b"x"))):
        try:
            call()
        except ftplib.error_perm as e:
            errors.append(str(e))
    f.quit()
    return errors


@pytest_twisted.ensureDeferred
async def test_ftplib_sees_clear_errors(reactor, ftp):
    errors = await threads.deferToThread(_ftplib_errors, ftp.port)
    assert errors == ["550 nope: no such directory", "550 /nope.ts: no such file",
                      "550 Permission denied: this user may not store"]


def _ftplib_abort(port: int) -> tuple[str, str, str]:
    """ftplib.abort() sends ABOR as TCP urgent data in the middle of a RETR."""
    f = ftplib.FTP()
    f.connect("127.0.0.1", port, timeout=10)
    f.login()
    f.voidcmd("TYPE I")
    conn = f.transfercmd("RETR clips/big.ts")
    conn.recv(65536)
    first = f.abort()                 # the 426 for the transfer
    second = f.getresp()              # then the 226 for ABOR (RFC 959)
    conn.close()
    third = f.voidcmd("NOOP")
    f.quit()
    return first, second, third


@pytest_twisted.ensureDeferred
async def test_ftplib_abort_mid_transfer(reactor, ftp):
    first, second, third = await threads.deferToThread(_ftplib_abort, ftp.port)
    assert first.startswith("426 Connection closed; RETR /clips/big.ts aborted after")
    assert second == "226 ABOR command successful" and third == "200 NOOP ok"
