"""The twistd plugins are found and build services with sensible defaults."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage


def test_twistd_finds_the_responder_plugin():
    names = {p.tapname for p in getPlugins(IServiceMaker)}
    assert "ptpip-responder" in names


def test_responder_options_defaults():
    from ptpip.tap import Options
    o = Options()
    o.parseOptions([])
    assert o["listen"] == ["tcp:15740"]
    assert len(o["guid"]) == 16
    assert o["root"] is None and o["max-sessions"] == 16


def test_responder_options_repeatable_listen_and_guid():
    from ptpip.tap import Options
    o = Options()
    o.parseOptions(["--listen", "tcp:1:interface=127.0.0.1", "--listen", "tcp6:2", "--guid",
                    "00112233-4455-6677-8899-aabbccddeeff"])
    assert o["listen"] == ["tcp:1:interface=127.0.0.1", "tcp6:2"]
    assert o["guid"] == bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.mark.parametrize("args,message", [
    (["--guid", "xyz"], "32 hex digits"),
    (["--guid", "0011"], "16 bytes"),
    (["--name", "n" * 40], "at most 39"),
])
def test_responder_options_are_validated(args, message):
    from ptpip.tap import Options
    with pytest.raises(usage.UsageError, match=message):
        Options().parseOptions(args)


def test_make_service_serves_the_demo_pictures_by_default(tmp_path):
    from ptpip.tap import Options, makeService
    o = Options()
    o.parseOptions(["--listen", "tcp:0:interface=127.0.0.1"])
    svc = makeService(o)
    services = list(svc)
    camera = services[0].camera
    names = [camera.store.objectInfo(h).filename for h in camera.store.handles()]
    assert {"DCIM", "100PTPIP", "IMG_0001.JPG", "IMG_0004.PNG"} <= set(names)
    root = services[0].cleanup
    svc.startService()
    svc.stopService()
    import os
    assert not os.path.exists(root)          # the demo folder goes away with the service


def test_property_presets(tmp_path):
    from ptpip.tap import Options, makeService
    o = Options()
    o.parseOptions(["--root", str(tmp_path), "--listen", "tcp:0:interface=127.0.0.1", "--preset", "FNumber=800",
                    "--preset", "imagesize=640x480", "--preset", "0x500F=400"])
    camera = next(iter(makeService(o))).camera
    assert camera.properties.get(0x5007) == 800 and camera.properties.get(0x5003) == "640x480"
    assert camera.properties.get(0x500F) == 400
    for bad in (["--preset", "FNumber=801"], ["--preset", "Warp=1"], ["--preset", "FNumber"],
                ["--preset", "BatteryLevel=5"]):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(["--root", str(tmp_path), "--listen", "tcp:0", *bad])


def _paths(tmp_path):
    """A file, a folder, a missing path and a path under a missing folder."""
    a_file = tmp_path / "a.txt"
    a_file.write_text("not a folder\n")
    return {"file": str(a_file), "folder": str(tmp_path), "missing": str(tmp_path / "nope"),
            "under-missing": str(tmp_path / "nope" / "x.guids")}


@pytest.mark.parametrize("args,message", [
    (["--root", "{missing}"], "--root '{missing}': no such folder"),
    (["--root", "{file}"], "--root '{file}': not a folder"),
    (["--capture-folder", "{missing}"], "--capture-folder '{missing}': no such folder"),
    (["--capture-folder", "{file}"], "--capture-folder '{file}': not a folder"),
    (["--allow-list", "{missing}"], "--allow-list '{missing}': no such file (create it, even empty, "
                                    "to allow no initiator yet)"),
    (["--allow-list", "{folder}"], "--allow-list '{folder}': a folder, not a GUID file"),
    (["--pair", "{folder}"], "--pair '{folder}': a folder, not a GUID file"),
    (["--pair", "{under-missing}"], "--pair '{under-missing}': no such folder '{missing}'"),
])
def test_responder_path_options_are_checked(tmp_path, args, message):
    """A path that cannot work is a usage error naming the path and why, not a traceback at
    start-up (--root) or a failure at every capture (--capture-folder)."""
    from ptpip.tap import Options
    paths = _paths(tmp_path)
    with pytest.raises(usage.UsageError) as e:
        Options().parseOptions([a.format(**paths) for a in args])
    assert str(e.value) == message.format(**paths)


def test_responder_path_options_that_work(tmp_path):
    from ptpip.tap import Options
    paths = _paths(tmp_path)
    o = Options()
    o.parseOptions(["--root", paths["folder"], "--capture-folder", paths["folder"],
                    "--pair", paths["missing"]])           # --pair creates its file
    assert o["root"] == o["capture-folder"] == paths["folder"]
    empty = tmp_path / "empty.guids"
    empty.write_text("")
    Options().parseOptions(["--allow-list", str(empty)])      # an existing file, even empty


def test_twistd_reports_a_missing_root_in_one_line(tmp_path):
    """As a user runs it: a usage message, exit status 1, no traceback."""
    missing = str(tmp_path / "nonexistent")
    proc = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
         "ptpip-responder", "--root", missing, "--listen", "tcp:0:interface=127.0.0.1", "--no-announce"],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "FileNotFoundError" not in out
    assert out.rstrip().splitlines()[-1].endswith(f": --root {missing!r}: no such folder")


ANONYMOUS = b"\xff" * 16
KNOWN = bytes(range(16))


async def _admits(reactor, args, guid):
    """Whether the camera the plugin builds from *args* admits an initiator with *guid*,
    over a real connection on loopback."""
    from ptpip.client import PTPClient
    from ptpip.constants import FailReason
    from ptpip.errors import InitFailed
    from ptpip.tap import Options, makeService
    o = Options()
    o.parseOptions([*args, "--listen", "tcp:0:interface=127.0.0.1", "--no-announce"])
    svc = makeService(o)
    camera_service, listener = list(svc)[:2]
    port = reactor.listenTCP(0, listener.factory, interface="127.0.0.1")
    try:
        client = await PTPClient.connect(reactor, "127.0.0.1", port.getHost().port, guid=guid, timeout=10)
    except InitFailed as e:
        assert e.reason == FailReason.REJECTED_INITIATOR
        return False
    else:
        await client.close()
        return True
    finally:
        await port.stopListening()
        camera_service.stopService()


@pytest.mark.parametrize("policy", ["allow-list", "pair"])
@pytest_twisted.ensureDeferred
async def test_restricted_responder_refuses_the_anonymous_initiator_by_default(reactor, tmp_path, policy):
    """With --allow-list or --pair, the anonymous initiator is refused unless --anonymous is
    given, as AllowListPolicy and PairingPolicy do; the listed initiator is let in."""
    from ptpip.policy import write_guids
    path = str(tmp_path / "known.guids")
    write_guids(path, [KNOWN])
    restricted = [f"--{policy}", path, "--root", str(tmp_path)]
    assert not await _admits(reactor, restricted, ANONYMOUS)
    assert not await _admits(reactor, [*restricted, "--no-anonymous"], ANONYMOUS)
    assert await _admits(reactor, [*restricted, "--anonymous"], ANONYMOUS)
    assert await _admits(reactor, restricted, KNOWN)


@pytest_twisted.ensureDeferred
async def test_open_responder_admits_the_anonymous_initiator_unless_told_not_to(reactor, tmp_path):
    root = ["--root", str(tmp_path)]
    assert await _admits(reactor, root, ANONYMOUS)
    assert await _admits(reactor, [*root, "--anonymous"], ANONYMOUS)
    assert not await _admits(reactor, [*root, "--no-anonymous"], ANONYMOUS)
    assert await _admits(reactor, [*root, "--no-anonymous"], KNOWN)


def test_anonymous_options_exclude_each_other():
    from ptpip.tap import Options
    with pytest.raises(usage.UsageError, match="--anonymous or --no-anonymous, not both"):
        Options().parseOptions(["--anonymous", "--no-anonymous"])


@pytest.mark.parametrize("name,manufacturer,model,vendor", [
    ("generic", "Twisted PTP-IP", "Virtual Camera", 0),
    ("canon-eos", "Canon Inc.", "Canon EOS 5D Mark IV", 0x0B),
    ("canon-eos-classic", "Canon Inc.", "Canon EOS 5D Mark II", 0x0B),
    ("nikon", "Nikon Corporation", "D750", 0x0A),
    ("fuji", "FUJIFILM", "X-T4", 0x0E),
])
def test_profile_option_sets_the_device_info(tmp_path, name, manufacturer, model, vendor):
    from ptpip.tap import Options, makeService
    o = Options()
    listen = "tcp:55810:interface=127.0.0.1" if name == "fuji" else "tcp:0:interface=127.0.0.1"
    o.parseOptions(["--root", str(tmp_path), "--listen", listen, "--no-announce", "--profile", name])
    camera = next(iter(makeService(o))).camera
    info = camera.deviceInfo()
    assert (info.manufacturer, info.model, info.vendor_extension_id) == (manufacturer, model, vendor)
    camera.stop()


def test_profile_option_keeps_an_explicit_model_and_refuses_an_unknown_profile(tmp_path):
    from ptpip.tap import Options, makeService
    o = Options()
    o.parseOptions(["--root", str(tmp_path), "--listen", "tcp:0", "--no-announce", "--profile", "nikon",
                    "--model", "Z 6"])
    camera = next(iter(makeService(o))).camera
    assert camera.deviceInfo().model == "Z 6" and camera.deviceInfo().manufacturer == "Nikon Corporation"
    camera.stop()
    with pytest.raises(usage.UsageError, match="--profile 'sony': unknown"):
        Options().parseOptions(["--profile", "sony"])


def test_profile_help_lists_every_profile_with_its_gphoto2_model(capsys):
    from ptpip.tap import Options
    with pytest.raises(SystemExit) as exit:
        Options().parseOptions(["--profile", "help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    for name, model in (("generic", "PTP/IP Camera"), ("canon-eos", "Canon EOS (WLAN)"),
                        ("nikon", "Nikon DSLR (WLAN)")):
        assert name in out and f'gphoto2 --camera "{model}"' in out


def test_eos_presets_take_vendor_codes(tmp_path):
    from ptpip.tap import Options, makeService
    o = Options()
    o.parseOptions(["--root", str(tmp_path), "--listen", "tcp:0", "--no-announce", "--profile", "canon-eos",
                    "--preset", "0xD101=0x38"])
    camera = next(iter(makeService(o))).camera
    assert camera.properties.get(0xD101) == 0x38
    camera.stop()
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--profile", "canon-eos", "--preset", "0xD101=0x31"])   # no such aperture


def _studio(tmp_path, text):
    path = tmp_path / "studio.toml"
    path.write_text(text)
    return str(path)


def test_cameras_file_makes_one_camera_per_table(tmp_path):
    from ptpip.tap import Options, makeService
    (tmp_path / "a").mkdir()
    path = _studio(tmp_path, f"""
[[camera]]
name = "EOS"
profile = "canon-eos"
listen = ["tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.2"]
root = "{tmp_path / 'a'}"
guid = "00112233445566778899aabbccddeeff"
presets = {{ 0xD101 = "0x38" }}

[[camera]]
name = "Nikon"
profile = "nikon"
listen = "tcp:0:interface=127.0.0.1"
model = "Z 6"
presets = {{ FNumber = "800" }}
""")
    o = Options()
    o.parseOptions(["--cameras", path, "--no-announce"])
    top = makeService(o)
    cams = [s.camera for s in top if hasattr(s, "camera")]
    assert [c.deviceInfo().model for c in cams] == ["Canon EOS 5D Mark IV", "Z 6"]
    assert cams[0].properties.get(0xD101) == 0x38 and cams[1].properties.get(0x5007) == 800
    assert cams[0].store.root == os.path.realpath(tmp_path / "a")
    endpoints = [s for s in top if not hasattr(s, "camera")]
    assert len(endpoints) == 3                   # two for the EOS, one for the Nikon
    for c in cams:
        c.stop()
    for s in top:
        if getattr(s, "cleanup", None):
            shutil.rmtree(s.cleanup, ignore_errors=True)


@pytest.mark.parametrize("text,message", [
    ("", "no [[camera]] table"),
    ("[[camera]]\nname = 'x'\n", "camera 'x': no listen endpoint"),
    ("[[camera]]\nlisten = 'tcp:1'\n", "camera 1: no name"),
    ("[[camera]]\nname = 'x'\nlisten = 'tcp:1'\nzoom = 3\n", "unknown key 'zoom'"),
    ("[[camera]]\nname = 'x'\nlisten = 'tcp:1'\n[[camera]]\nname = 'y'\nlisten = 'tcp:1'\n",
     "camera 'y': listens on 'tcp:1' like camera 1"),
    ("[[camera]]\nname = 'x'\nlisten = 'tcp:1'\n[[camera]]\nname = 'x'\nlisten = 'tcp:2'\n",
     "the same name as camera 1"),
    ("[[camera]]\nname = 'x'\nlisten = 'tcp:1'\nprofile = 'sony'\n", "unknown profile 'sony'"),
    ("[[camera]]\nname = 'x'\nlisten = 'tcp:1'\nguid = 'zz'\n", "--guid must be 32 hex digits"),
    ("[[camera]]\nname = 'x'\nlisten = 'tcp:1'\nroot = '/nonexistent/card'\n", "no such folder"),
    ("[[camera]]\nname = 'x'\nlisten = 'tcp:1'\nprofile = 'canon-eos'\npresets = { 0xD101 = '7' }\n",
     "--preset 0xD101=7"),
    ("[[camera]]\nname = 'x'\nlisten = 1\n", "listen must be str or list"),
    ("[[camera]\n", "not TOML"),
    ("[[camera]]\nname = 'f'\nprofile = 'fuji'\nlisten = 'tcp:55740'\n[[camera]]\nname = 'n'\n"
     "listen = 'tcp:port=55741'\n", "camera 'n': listens on 'tcp:port=55741' like camera 1"),
    ("[[camera]]\nname = 'x'\nlisten = 'tcp:1'\nroot = '/tmp'\n[[camera]]\nname = 'y'\nlisten = 'tcp:2'\n"
     "root = '/tmp/'\n", "camera 'y': the same root as camera 1"),
])
def test_cameras_file_mistakes_are_usage_errors(tmp_path, text, message):
    from ptpip.tap import Options
    with pytest.raises(usage.UsageError) as e:
        Options().parseOptions(["--cameras", _studio(tmp_path, text)])
    assert message in str(e.value)


def test_cameras_file_excludes_the_single_camera_options(tmp_path):
    from ptpip.tap import Options
    path = _studio(tmp_path, "[[camera]]\nname = 'x'\nlisten = 'tcp:1'\n")
    for extra in (["--root", str(tmp_path)], ["--listen", "tcp:2"], ["--guid", "00" * 16], ["--model", "X"],
                  ["--manufacturer", "Y"], ["--name", "Z"], ["--preset", "FNumber=800"]):
        with pytest.raises(usage.UsageError, match="--cameras"):
            Options().parseOptions(["--cameras", path, *extra])


def test_fuji_profile_listens_on_three_consecutive_ports(tmp_path):
    from twisted.application.internet import StreamServerEndpointService

    from ptpip.tap import Options, makeService
    o = Options()
    o.parseOptions(["--root", str(tmp_path), "--no-announce", "--profile", "fuji", "--listen",
                    "tcp:55800:interface=127.0.0.1"])
    top = makeService(o)
    ports = [s.endpoint._port for s in top if isinstance(s, StreamServerEndpointService)]
    assert ports == [55800, 55801, 55802]
    next(s for s in top if hasattr(s, "camera")).camera.stop()
    o = Options()
    o.parseOptions(["--root", str(tmp_path), "--no-announce", "--profile", "fuji"])
    assert o["listen"] == ["tcp:55740"]
    with pytest.raises(usage.UsageError, match="fixed port"):
        o = Options()
        o.parseOptions(["--root", str(tmp_path), "--no-announce", "--profile", "fuji", "--listen", "tcp:0"])
        makeService(o)
