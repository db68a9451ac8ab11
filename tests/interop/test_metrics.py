"""Prometheus metrics of both plugins: what ``curl /metrics`` gets passes ``promtool check
metrics`` (Debian's prometheus), and the counters move as a scripted session runs: CCCP
replies, logins, transfers, bytes and media errors; the deck and camera values TSTA and
CSTA report; PTP-IP transactions by operation and response (gphoto2 drives them), data
bytes and Init Fail reasons; both twistd plugins serve them with ``--metrics``."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import utils

from cccp.client import _Collect, connect
from cccp.devices import FileMediaSource
from cccp.errors import CommandFailed
from ptpip.metrics import metrics_site

from ..conftest import make_tree, start_responder, stop_responder
from .test_gphoto2 import GPhoto
from .test_media_peers import free_port, sleep

CURL = shutil.which("curl")
PROMTOOL = shutil.which("promtool")


def test_promtool_is_installed():
    assert PROMTOOL, "promtool is not installed: .ci/run installs Debian's prometheus"


async def scrape(reactor: Any, port: int) -> dict[str, float]:
    """``curl /metrics``, checked by promtool; the samples, by name and labels."""
    assert CURL and PROMTOOL
    out, err, code = await utils.getProcessOutputAndValue(
        CURL, ["-s", "-f", "-D", "-", f"http://127.0.0.1:{port}/metrics"], reactor=reactor)
    assert code == 0, err
    head, _, body = out.decode().partition("\r\n\r\n")
    assert "content-type: text/plain; version=0.0.4" in head.lower(), head
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples
    return samples


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sample of *name* with these labels (among others); 0 when there is none."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    found = [v for key, v in samples.items() if (key == name or key.startswith(name + "{"))
             and all(w in key for w in want)]
    return sum(found)


@pytest_twisted.async_yield_fixture
async def server(reactor: Any, tmp_path: Any) -> Any:
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

    from cccp.devices import FileMediaStore, VirtualCamera, VirtualTapeDeck
    from cccp.live import MediaLibrary
    from cccp.media import sample_clip_path
    from cccp.realm import CCCPRealm, make_portal
    from cccp.server import CCCPFactory

    from ..cccp.conftest import Server, stop_server
    root = str(tmp_path / "media")
    os.makedirs(root)
    shutil.copy(sample_clip_path(), os.path.join(root, "sample.ts"))
    deck = VirtualTapeDeck(3600, clock=reactor)
    camera = VirtualCamera()
    store = MediaLibrary(FileMediaStore(root), reactor, deck, close_after=0)
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"wonderland")
    factory = CCCPFactory(make_portal(CCCPRealm(store, camera, deck), [checker], True), reactor=reactor,
                          login_delay=0.05)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    web = reactor.listenTCP(0, metrics_site(factory.metrics), interface="127.0.0.1")
    s = Server(factory, port, root, camera, deck, store)
    s.metrics_port = web.getHost().port
    yield s
    await web.stopListening()
    await stop_server(s)


@pytest_twisted.ensureDeferred
async def test_cccp_metrics_pass_promtool_and_move_with_a_session(reactor, server, tmp_path):
    before = await scrape(reactor, server.metrics_port)
    assert value(before, "cccp_deck_state", state="PAUS") == 1
    # a scripted session: a failed login, a login, LIST, RETR, deck and camera commands,
    # a STOR that is no TS
    bad = await connect(reactor, "127.0.0.1", server.port, user=None)
    with pytest.raises(CommandFailed):
        await bad.login("alice", "wrong")
    await bad.quit()
    c = await connect(reactor, "127.0.0.1", server.port, user="alice", password="wonderland")
    await c.nlst("/")
    await c.type("I")
    sink = _Collect()
    await c.retrieve("/sample.ts", sink)
    got = sink.value()
    await c.play()
    await c.camera("ZOOM", "+")
    await c.pan("-15")
    await c.type("I M")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"this is not a transport stream" * 10)
    with pytest.raises(CommandFailed):
        await c.store("/bad.ts", FileMediaSource(str(garbage)))
    zoom = (await c.sendCommand("CSTA ZOOM")).text
    tsta = (await c.sendCommand("TSTA")).text
    after = await scrape(reactor, server.metrics_port)
    await c.quit()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)
    assert moved("cccp_connections_total") == 2
    assert moved("cccp_logins_failed_total") == 1
    assert moved("cccp_replies_total", command="PASS", code="530") == 1
    assert moved("cccp_replies_total", command="PASS", code="230") == 1
    assert moved("cccp_replies_total", command="RETR", code="226") == 1
    assert moved("cccp_transfers_total", verb="RETR", code="226") == 1
    assert moved("cccp_transfers_total", verb="NLST", code="226") == 1
    assert moved("cccp_transfers_total", verb="STOR", code="451") == 1
    assert moved("cccp_stor_media_errors_total") == 1
    assert moved("cccp_transfer_bytes_total", direction="sent") >= len(got)
    assert value(after, "cccp_sessions", state="logged_in") == 1
    # the deck and the camera as TSTA and CSTA report them
    assert value(after, "cccp_deck_state", state="PLAY") == 1 and value(after, "cccp_deck_state", state="PAUS") == 0
    assert value(after, "cccp_deck_speed") == 1
    position = float(re.search(r"PLAY ([\d.]+)", tsta).group(1))
    assert abs(value(after, "cccp_deck_position_seconds") - position) < 1.0
    current = float(re.search(r"ZOOM [\d.]+,([\d.]+),", zoom).group(1))
    assert value(after, "cccp_camera_control", control="ZOOM") == current != value(before, "cccp_camera_control",
                                                                                     control="ZOOM")
    assert value(after, "cccp_camera_control", control="PAN") == -15


@pytest_twisted.ensureDeferred
async def test_live_viewers_and_their_misses_show(reactor, server):
    """A live source's viewers, and what a viewer that could not keep up missed."""
    from .test_fanout import Capture
    cap = reactor.listenUDP(0, Capture(), interface="127.0.0.1")
    c = await connect(reactor, "127.0.0.1", server.port)
    await c.type("I M")
    await c.mode("P 7")
    transfer = c.streamTo("/live/testpattern", "127.0.0.1", cap.getHost().port)
    await sleep(reactor, 1.0)
    tee = next(iter(server.store.live.tees.values()))
    viewer = tee.viewers[0]
    viewer.gate.dropped = 17                      # as if it had fallen behind
    now = await scrape(reactor, server.metrics_port)
    assert value(now, "cccp_live_sources") == 1 and value(now, "cccp_live_viewers", source="testpattern/33") == 1
    assert value(now, "cccp_live_viewer_missed_packets", path="/live/testpattern") == 17
    assert value(now, "cccp_live_missed_packets_total", source="testpattern/33") == 17
    await c.abort()
    transfer.addErrback(lambda f: None)
    await transfer
    await c.quit()
    await sleep(reactor, 0.2)
    later = await scrape(reactor, server.metrics_port)
    assert value(later, "cccp_live_sources") == 0
    assert value(later, "cccp_live_missed_packets_total", source="testpattern/33") == 17   # counters stay
    cap.stopListening()


@pytest_twisted.ensureDeferred
async def test_ptpip_metrics_count_gphoto2s_transactions_and_init_fail_reasons(reactor, tmp_path):
    root = str(tmp_path / "camera")
    os.makedirs(root)
    make_tree(root)
    r = await start_responder(reactor, root)
    web = reactor.listenTCP(0, metrics_site(r.factory.metrics), interface="127.0.0.1")
    try:
        before = await scrape(reactor, web.getHost().port)
        home = str(tmp_path / "home")
        os.makedirs(home)
        await GPhoto(reactor, r.port, home)("--list-files")
        # an event channel naming a connection that does not exist: Init Fail
        from ptpip.wire.packets import InitEventRequest
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(InitEventRequest(12345).encode())
        await sleep(reactor, 0.3)
        s.close()
        after = await scrape(reactor, web.getHost().port)
    finally:
        await web.stopListening()
        await stop_responder(r)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)
    assert moved("ptpip_sessions_total", camera="test camera") == 1
    assert moved("ptpip_transactions_total", operation="OpenSession", response="OK") == 1
    assert moved("ptpip_transactions_total", operation="GetObjectInfo", response="OK") >= 3
    assert moved("ptpip_transactions_total", operation="CloseSession", response="OK") == 1
    assert moved("ptpip_data_bytes_total", direction="in") > 0
    assert moved("ptpip_init_fail_total", reason="UNSPECIFIED") == 1
    assert moved("ptpip_connections_total") == 3


def _twistd(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                             "--pidfile=", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest_twisted.ensureDeferred
async def test_both_plugins_serve_metrics_with_the_option(reactor, tmp_path):
    m1, m2, p1, p2 = (free_port() for _ in range(4))
    procs = [_twistd("ptpip-responder", "--no-announce", "--listen", f"tcp:{p1}:interface=127.0.0.1",
                     "--metrics", f"tcp:{m1}:interface=127.0.0.1"),
             _twistd("cccp-server", "--listen", f"tcp:{p2}:interface=127.0.0.1",
                     "--metrics", f"tcp:{m2}:interface=127.0.0.1")]
    try:
        for port, prefix in ((m1, "ptpip_"), (m2, "cccp_")):
            deadline = time.monotonic() + 30
            while True:
                try:
                    samples = await scrape(reactor, port)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    await sleep(reactor, 0.2)
            assert all(k.startswith(prefix) for k in samples), list(samples)[:5]
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
