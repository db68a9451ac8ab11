"""gphoto2 with a restricted responder: it identifies itself with its own GUID, never the
anonymous one, so --pair and --allow-list work for it without --anonymous.

libgphoto2 makes a GUID up on first use and keeps it in ~/.gphoto/settings as
``ptp2_ip=guid=xx:xx:...``; that text pasted into a GUID file is understood as it is.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import utils

from ptpip.policy import read_guids


async def _gphoto2(reactor: Any, port: int, home: str, model: str = "PTP/IP Camera") -> tuple[int, str]:
    gphoto2 = shutil.which("gphoto2")
    assert gphoto2, "gphoto2 is not installed: .ci/run installs it with apt-get"
    env = {"HOME": home, "LANG": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    out, err, code = await utils.getProcessOutputAndValue(
        gphoto2, ["--camera", model, "--port", f"ptpip:127.0.0.1:{port}:{port}", "--summary"],
        env=env, path=home, reactor=reactor)
    return code, (out + err).decode("utf-8", "replace")


def _settings_guid(home: str) -> str:
    """The GUID gphoto2 keeps in its settings, as it writes it (colon-separated hex)."""
    with open(os.path.join(home, ".gphoto", "settings")) as f:
        for line in f:
            if line.startswith("ptp2_ip=guid="):
                return line.strip().split("=", 2)[2]
    raise AssertionError("gphoto2 kept no GUID")


def _home(tmp_path: Any, name: str, guid: str | None = None) -> str:
    home = tmp_path / name
    (home / ".gphoto").mkdir(parents=True)
    if guid:
        (home / ".gphoto" / "settings").write_text(f"ptp2_ip=guid={guid}\n")
    return str(home)


async def _serve(reactor: Any, args: list[str]) -> Any:
    from ptpip.tap import Options, makeService
    o = Options()
    o.parseOptions([*args, "--listen", "tcp:0:interface=127.0.0.1", "--no-announce"])
    camera_service, listener = list(makeService(o))[:2]
    port = reactor.listenTCP(0, listener.factory, interface="127.0.0.1")
    port.camera_service = camera_service
    return port


async def _stop(port: Any) -> None:
    await port.stopListening()
    port.camera_service.stopService()


@pytest.mark.parametrize("profile,model", [("generic", "PTP/IP Camera"), ("nikon", "Nikon DSLR (WLAN)"),
                                           ("canon-eos", "Canon EOS (WLAN)")])
@pytest_twisted.ensureDeferred
async def test_gphoto2_pairs_with_its_own_guid(reactor, tmp_path, profile, model):
    """libgphoto2 makes its GUID up once (``ptp_nikon_getptpipguid``, for every PTP/IP
    camera) and keeps it: a camera that paired with it (as a Nikon asks on its screen)
    knows it again at the next run, and refuses another computer."""
    paired = str(tmp_path / "paired.guids")
    port = await _serve(reactor, ["--pair", paired, "--root", str(tmp_path), "--profile", profile])
    try:
        first = _home(tmp_path, "first")                  # gphoto2 makes its GUID up
        code, out = await _gphoto2(reactor, port.getHost().port, first, model)
        assert code == 0, out
        guid = bytes.fromhex(_settings_guid(first).replace(":", ""))
        assert guid != b"\xff" * 16 and read_guids(paired) == {guid}
        other = _home(tmp_path, "other", ":".join(["5a"] * 16))
        code, out = await _gphoto2(reactor, port.getHost().port, other, model)
        assert "Manufacturer" not in out                  # refused: pairing is over
        code, out = await _gphoto2(reactor, port.getHost().port, first, model)
        assert code == 0, out                             # the paired one keeps working
    finally:
        await _stop(port)


@pytest_twisted.ensureDeferred
async def test_gphoto2_guid_pasted_into_an_allow_list(reactor, tmp_path):
    home = _home(tmp_path, "home", "22:5f:7a:1d:00:11:22:33:44:55:66:77:88:99:aa:bb")
    allow = tmp_path / "known.guids"
    allow.write_text(_settings_guid(home) + "   # gphoto2 on this computer\n")
    port = await _serve(reactor, ["--allow-list", str(allow), "--root", str(tmp_path)])
    try:
        code, out = await _gphoto2(reactor, port.getHost().port, home)
        assert code == 0 and "Manufacturer: Twisted PTP-IP" in out, out
    finally:
        await _stop(port)
