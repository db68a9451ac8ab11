"""gphoto2 against a capture that cannot work: it must end, not wait for ever.

libgphoto2 up to 2.5.30 ignores the response code of InitiateCapture (later versions
still ignore GeneralError) and waits for CaptureComplete; the camera answers the error and
sends CaptureComplete too, so gphoto2 reports the failure at once.
"""

from __future__ import annotations

import os
import shutil

import pytest_twisted
from twisted.internet import utils

from ..conftest import start_responder, stop_responder


@pytest_twisted.ensureDeferred
async def test_gphoto2_capture_with_the_capture_folder_gone_ends_at_once(reactor, tmp_path):
    # gphoto2 shrugs off SIGTERM while it waits for events: timeout(1) sends SIGKILL 2 s later.
    gphoto2, timeout = shutil.which("gphoto2"), shutil.which("timeout")
    assert gphoto2 and timeout, "gphoto2 (and coreutils' timeout) are needed"
    root, shutter, home = tmp_path / "cam", tmp_path / "shutter", tmp_path / "home"
    for d in (root, shutter, home):
        d.mkdir()
    r = await start_responder(reactor, str(root), capture_folder=str(shutter))
    env = {"HOME": str(home), "LANG": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    argv = ["-k", "2", "15", gphoto2, "--camera", "PTP/IP Camera", "--port", f"ptpip:127.0.0.1:{r.port}:{r.port}",
            "--capture-image"]
    try:
        for _ in ("empty", "gone"):
            out, err, code = await utils.getProcessOutputAndValue(timeout, argv, env=env, path=str(home),
                                                                  reactor=reactor)
            text = (out + err).decode("utf-8", "replace")
            assert code not in (124, 137), f"gphoto2 was still waiting after 15 s:\n{text}"
            assert "Could not capture" in text and "New file" not in text
            if shutter.exists():
                shutter.rmdir()
        assert os.listdir(root) == []
    finally:
        await stop_responder(r)
