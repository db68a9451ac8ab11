"""STOR lands atomically or not at all, over real sockets on 127.0.0.1.

In a media TYPE (``I M``, ``I R``, and every TYPE in MODE P) the upload must be
whole MPEG2-TS (or RTP) packets: data too short for one packet, leftover bytes
that do not make a whole packet, bytes between packets that are not TS, and an
upload that holds no packet at all are refused with 451, and the file of that
name (if any) stays as it was, with no temporary file left behind. In TYPE I
(raw, as FTP) any bytes are stored, a 0-byte upload included.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from cccp.client import CCCPClient, connect
from cccp.commands import Reply
from cccp.devices import RECORDING_PREFIX, FileMediaSource
from cccp.errors import CommandFailed
from cccp.media import TS_PACKET, sample_clip_path

CURL = shutil.which("curl")


def sample() -> bytes:
    path = sample_clip_path()
    assert path is not None
    with open(path, "rb") as f:
        return f.read()


def sleep(reactor: Any, s: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(s, d.callback, None)
    return d


async def ask(client: CCCPClient, line: str) -> Reply:
    try:
        return await client.sendCommand(line)
    except CommandFailed as e:
        return Reply(e.code, e.lines)


@pytest.fixture
def existing(server: Any) -> tuple[str, bytes]:
    """A valid TS file already on the server: /sample.ts."""
    data = sample()
    path = os.path.join(server.root, "sample.ts")
    with open(path, "wb") as f:
        f.write(data)
    return path, data


def leftovers(root: str) -> list[str]:
    return [n for _dir, _sub, names in os.walk(root) for n in names if n.startswith(RECORDING_PREFIX)]


async def alice(reactor: Any, server: Any) -> CCCPClient:
    return await connect(reactor, "127.0.0.1", server.port, user="alice", password="wonderland")


async def put(reactor: Any, server: Any, c: CCCPClient, type_: str, path: str, data: bytes, tmp: Any) -> Reply:
    """STOR *data* as it is (the client does not frame it) in TYPE *type_*; the final reply."""
    src = tmp / "upload.bin"
    src.write_bytes(data)
    await ask(c, f"TYPE {type_}")           # the server frames; the client sends the bytes unchanged
    try:
        return await c.store(path, FileMediaSource(str(src)))
    except CommandFailed as e:
        return Reply(e.code, e.lines)


@pytest.mark.parametrize("type_", ["I M", "I M MP@ML", "I R 33"])
@pytest.mark.parametrize("data", [b"garbage\n", b"", b"\x47" + b"\x00" * 100])
@pytest_twisted.ensureDeferred
async def test_a_short_media_upload_is_refused_and_the_file_kept(reactor, server, existing, tmp_path,
                                                                   type_, data):
    path, before = existing
    c = await alice(reactor, server)
    r = await put(reactor, server, c, type_, "/sample.ts", data, tmp_path)
    rtp = type_.startswith("I R")
    if not data:
        why = f"nothing to store: the upload held no {'RTP' if rtp else 'MPEG2-TS'} packet"
    elif rtp:
        why = f"not an RTP stream: {len(data)} bytes do not make a whole RTP packet"
    else:
        why = f"not an MPEG2-TS stream: {len(data)} bytes are less than one 188-byte TS packet"
    assert (r.code, r.text) == (451, f"Requested action aborted: {why}")
    assert open(path, "rb").read() == before
    assert leftovers(server.root) == []
    assert (await ask(c, "NOOP")).code == 200
    await c.quit()


@pytest_twisted.ensureDeferred
async def test_leftover_bytes_after_whole_ts_packets_are_refused(reactor, server, existing, tmp_path):
    path, before = existing
    c = await alice(reactor, server)
    r = await put(reactor, server, c, "I M", "/sample.ts", before[:TS_PACKET * 20] + b"\x47tail", tmp_path)
    assert r.code == 451
    assert r.text == ("Requested action aborted: not an MPEG2-TS stream: the last 5 bytes "
                      "do not make a whole 188-byte TS packet")
    assert open(path, "rb").read() == before and leftovers(server.root) == []


@pytest_twisted.ensureDeferred
async def test_bytes_between_ts_packets_are_refused(reactor, server, existing, tmp_path):
    """Over TCP nothing is lost on the way: bytes that are not TS mean the upload is not TS."""
    path, before = existing
    c = await alice(reactor, server)
    data = before[:TS_PACKET * 10] + b"junk" + before[TS_PACKET * 10:TS_PACKET * 30]
    r = await put(reactor, server, c, "I M", "/sample.ts", data, tmp_path)
    assert r.code == 451
    assert r.text == ("Requested action aborted: not an MPEG2-TS stream: byte 1880 should be "
                      "a sync byte (0x47) and is 0x6A")
    assert open(path, "rb").read() == before and leftovers(server.root) == []


@pytest_twisted.ensureDeferred
async def test_a_partial_rtp_frame_at_the_end_is_refused(reactor, server, existing, tmp_path):
    """RTP on TCP (2-byte length before each packet): a frame cut short is refused."""
    from cccp.media import TSPacketizer, frame_rfc4571
    path, before = existing
    frames = b"".join(frame_rfc4571(p) for p in TSPacketizer().packetize(0.0, before[:TS_PACKET * 14]))
    c = await alice(reactor, server)
    r = await put(reactor, server, c, "I R 33", "/sample.ts", frames + frames[:100], tmp_path)
    assert r.code == 451
    assert r.text == "Requested action aborted: not an RTP stream: the last 100 bytes do not make a whole RTP packet"
    assert open(path, "rb").read() == before and leftovers(server.root) == []
    # The whole frames alone are a good upload.
    r = await put(reactor, server, c, "I R 33", "/sample.ts", frames, tmp_path)
    assert r.code == 226 and open(path, "rb").read() == before[:TS_PACKET * 14]


@pytest_twisted.ensureDeferred
async def test_a_valid_media_upload_still_replaces_the_file(reactor, server, existing, tmp_path):
    path, before = existing
    c = await alice(reactor, server)
    r = await put(reactor, server, c, "I M", "/sample.ts", before[:TS_PACKET * 7], tmp_path)
    assert (r.code, r.text) == (226, f"Transfer complete: {TS_PACKET * 7} bytes stored in /sample.ts")
    assert open(path, "rb").read() == before[:TS_PACKET * 7]


# -- UDP (MODE P): a recording ends with ABOR -----------------------------------------------

async def udp_stor(reactor: Any, c: CCCPClient, path: str, datagrams: list[bytes]) -> tuple[Reply, Reply]:
    """MODE P STOR through PASV: send *datagrams*, then ABOR; (STOR's final reply, ABOR's reply)."""
    text = (await ask(c, "PASV")).text
    nums = [int(x) for x in text[text.index("(") + 1:text.index(")")].split(",")]
    port = nums[4] * 256 + nums[5]
    started: defer.Deferred[Reply] = defer.Deferred()
    final = c.sendCommand(f"STOR {path}", transfer=True, on_preliminary=started.callback)
    outcome: list[Any] = []
    final.addBoth(outcome.append)
    await started
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", port))
        await sleep(reactor, 0.2)
    finally:
        s.close()
    abor = await ask(c, "ABOR")
    while not outcome:
        await sleep(reactor, 0.01)
    result = outcome[0]
    stor = Reply(result.value.code, result.value.lines) if hasattr(result, "value") else result
    return stor, abor


@pytest.mark.parametrize("datagrams,why", [
    ([], "nothing to store: no MPEG2-TS datagram arrived"),
    ([b"garbage\n", b"\x47" * 100], "nothing to store: no MPEG2-TS datagram arrived (2 bad datagrams dropped)"),
])
@pytest_twisted.ensureDeferred
async def test_a_udp_recording_that_got_nothing_keeps_the_file(reactor, server, existing, datagrams, why):
    path, before = existing
    c = await alice(reactor, server)
    await ask(c, "TYPE I M")
    await ask(c, "MODE P 7")
    stor, abor = await udp_stor(reactor, c, "/sample.ts", datagrams)
    assert (stor.code, stor.text) == (451, f"Requested action aborted: {why}")
    assert (abor.code, abor.text) == (226, "ABOR command successful")
    assert open(path, "rb").read() == before and leftovers(server.root) == []
    await c.quit()


@pytest_twisted.ensureDeferred
async def test_a_udp_recording_keeps_the_good_datagrams(reactor, server, existing):
    path, before = existing
    c = await alice(reactor, server)
    await ask(c, "TYPE I M")
    await ask(c, "MODE P 7")
    good = before[:TS_PACKET * 7]
    stor, abor = await udp_stor(reactor, c, "/rec.ts", [good, b"bad"])
    assert stor.code == 226 and stor.text == (f"Transfer complete: {TS_PACKET * 7} bytes stored in /rec.ts "
                                              "(0 RTP packets lost, 1 bad datagrams dropped)")
    assert abor.code == 226
    assert open(os.path.join(server.root, "rec.ts"), "rb").read() == good


# -- TYPE I: raw, as in FTP ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_type_i_stores_any_bytes_an_empty_file_included(reactor, server, existing, tmp_path):
    c = await alice(reactor, server)
    r = await put(reactor, server, c, "I", "/notes.txt", b"garbage\n", tmp_path)
    assert r.code == 226 and open(os.path.join(server.root, "notes.txt"), "rb").read() == b"garbage\n"
    r = await put(reactor, server, c, "I", "/empty.txt", b"", tmp_path)
    assert (r.code, r.text) == (226, "Transfer complete: 0 bytes stored in /empty.txt")
    assert open(os.path.join(server.root, "empty.txt"), "rb").read() == b""
    # As in FTP, an empty upload replaces a file of that name with an empty one.
    r = await put(reactor, server, c, "I", "/sample.ts", b"", tmp_path)
    assert r.code == 226 and os.path.getsize(existing[0]) == 0
    assert leftovers(server.root) == []


@pytest_twisted.ensureDeferred
async def test_curl_uploads_an_empty_file(reactor, server, tmp_path):
    from twisted.internet import utils
    assert CURL, "curl is not installed: .ci/run installs it"
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    out, err, code = await utils.getProcessOutputAndValue(
        CURL, ["-sS", "-T", str(empty), f"ftp://alice:wonderland@127.0.0.1:{server.port}/empty.txt"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}, reactor=reactor)
    assert code == 0, err
    assert open(os.path.join(server.root, "empty.txt"), "rb").read() == b""


@pytest_twisted.ensureDeferred
async def test_cccp_put_of_a_short_file_as_ts_says_why_and_keeps_the_file(reactor, server, existing, tmp_path):
    """The command line as a user runs it: ``cccp put small.bin URL --type "I M"``."""
    from .test_cli import run
    path, before = existing
    small = tmp_path / "small.bin"
    small.write_bytes(b"garbage\n")
    out, err, code = await run(reactor, "put", str(small), f"cccp://alice:wonderland@127.0.0.1:{server.port}/sample.ts",
                               "--type", "I M")
    assert code == 1
    assert err.strip() == (f"cccp: {small} is not an MPEG2-TS stream (8 bytes is not a whole number of "
                           "188-byte packets); send it as it is with --type I over TCP")
    assert open(path, "rb").read() == before and leftovers(server.root) == []
