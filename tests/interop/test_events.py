"""The status feed (``RETR /events``): any FTP client watches the tape, the camera and the
transfers change, without polling."""

from __future__ import annotations

import os
import re
import shutil
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task, utils

from cccp.client import _Collect, connect
from tests.cccp.conftest import fill, start_server, stop_server

CURL = shutil.which("curl")


def sleep(reactor: Any, seconds: float) -> Any:
    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_curl_sees_each_change_once_in_order_with_the_values_the_status_commands_report(reactor, tmp_path):
    assert CURL, "curl is needed (.ci/run installs it)"
    root = str(tmp_path / "media")
    os.makedirs(root)
    fill(root)
    s = start_server(reactor, root)
    hub = s.factory.events
    hub.interval = 0.5
    try:
        watching = utils.getProcessOutputAndValue(
            CURL, ["-s", "--max-time", "6", f"ftp://127.0.0.1:{s.port}/events"], env=os.environ, reactor=reactor)
        for _ in range(100):
            if hub.readers:
                break
            await sleep(reactor, 0.05)
        assert hub.readers, "curl never started RETR /events"
        c = await connect(reactor, "127.0.0.1", s.port)
        await c.play()
        await c.camera("ZOOM", "+")
        await c.camera("PAN", "-15")
        cam = await c.cameraStatus()
        sink = _Collect()
        await c.type("I")
        await c.retrieve("/hello.txt", sink)
        await sleep(reactor, 1.6)
        tape = await c.tapeStatus()
        await c.pause()
        await sleep(reactor, 0.3)
        await c.quit()
        out, err, code = await watching
    finally:
        await stop_server(s)
    assert code == 28, err                                   # (curl --max-time: the feed never ends)
    lines = out.decode().splitlines()
    controls = s.camera.controls()
    snapshot, changes = lines[:1 + len(controls)], lines[1 + len(controls):]
    assert snapshot[0] == "TSTA PAUS 0 0"
    assert [x.split()[1] for x in snapshot[1:]] == controls    # the camera, in CSTA order
    assert changes[0] == "TSTA PLAY 0 1"
    zoom = cam.controls["ZOOM"]
    pan = cam.controls["PAN"]
    fmt = "CSTA {} {},{},{}"
    from cccp.wire.commands import format_number as f
    assert changes[1] == fmt.format("ZOOM", f(zoom[0]), f(zoom[1]), f(zoom[2])) == "CSTA ZOOM 1,1.5,20"
    assert changes[2] == fmt.format("PAN", f(pan[0]), f(pan[1]), f(pan[2])) == "CSTA PAN -170,-15,170"
    assert sum(1 for x in changes if x.startswith("CSTA ZOOM")) == 1 and sum(
        1 for x in changes if x.startswith("CSTA PAN")) == 1
    assert changes[3] == "XFER RETR /hello.txt started"
    assert re.fullmatch(r"XFER RETR /hello.txt ended 12 bytes [\d.]+ s [\d.]+ kB/s 226", changes[4]), changes[4]
    moving = [Decimal(x.split()[2]) for x in changes[5:] if x.startswith("TSTA PLAY")]
    assert len(moving) >= 2 and moving == sorted(moving) and moving[0] > 0   # the position while it moves
    assert any(abs(p - tape.position) < Decimal("0.6") for p in moving)
    assert changes[-1].startswith("TSTA PAUS ")                # then it stopped, once
    assert sum(1 for x in changes if x.startswith("TSTA PAUS")) == 1


@pytest_twisted.ensureDeferred
async def test_the_feed_is_text_only(reactor, tmp_path):
    root = str(tmp_path / "media")
    os.makedirs(root)
    s = start_server(reactor, root)
    try:
        c = await connect(reactor, "127.0.0.1", s.port)
        await c.type("I M")
        from cccp.client import CommandFailed
        with pytest.raises(CommandFailed) as refused:
            await c.retrieve("/events", _Collect())
        assert refused.value.code == 504 and "TYPE A" in str(refused.value)
        await c.quit()
    finally:
        await stop_server(s)
