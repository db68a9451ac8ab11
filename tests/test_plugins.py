"""The twistd plugins are found and build services with sensible defaults."""

from __future__ import annotations

import pytest
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
