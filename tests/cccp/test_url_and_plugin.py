"""cccp:// URLs and the cccp-server twistd plugin."""

from __future__ import annotations

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from cccp.errors import LocalProtocolError
from cccp.url import CCCPURL, parse_url


@pytest.mark.parametrize("url,expected", [
    ("cccp://cam.example", CCCPURL("cam.example", 5021, None, None, "/")),
    ("cccp://bob:s%3Acret@127.0.0.1:7000/clips/a%20b.ts",
     CCCPURL("127.0.0.1", 7000, "bob", "s:cret", "/clips/a b.ts")),
    ("CCCP://h/x.ts;type=i", CCCPURL("h", 5021, None, None, "/x.ts", "i")),
])
def test_parse(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["ftp://h/", "cccp:///x", "cccp://h:99999/", "cccp://h/x;type=q",
                                 "cccp://h/a%2Fb"])
def test_bad_urls(url):
    with pytest.raises(LocalProtocolError):
        parse_url(url)


def test_round_trip():
    u = CCCPURL("h", 7000, "bob", "p w", "/a b/c.ts")
    assert parse_url(str(u)) == u


def test_twistd_finds_both_plugins():
    names = {p.tapname for p in getPlugins(IServiceMaker)}
    assert {"ptpip-responder", "cccp-server"} <= names


def test_cccp_options_defaults_and_validation(tmp_path):
    from cccp.tap import Options, makeService
    o = Options()
    o.parseOptions([])
    assert o["listen"] == ["tcp:5021"] and o["camera"] == "virtual"
    for args in (["--passive-ports", "10-20"], ["--passive-ports", "x"], ["--camera", "ptz9000"],
                 ["--root", str(tmp_path / "missing")]):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(args)
    o = Options()
    o.parseOptions(["--root", str(tmp_path), "--auth", "memory:bob:pw", "--passive-ports", "40000-40010",
                    "--listen", "tcp:0:interface=127.0.0.1"])
    svc = makeService(o)
    factory = list(svc)[1].factory
    assert factory.passive_ports == (40000, 40010) and not factory.allow_anonymous


def test_cccp_server_can_bridge_a_ptpip_camera():
    from cccp.adapters import PTPBridge
    from cccp.tap import Options, makeService
    o = Options()
    o.parseOptions(["--camera", "ptpip:127.0.0.1:15999", "--listen", "tcp:0:interface=127.0.0.1"])
    svc = makeService(o)
    bridges = [s for s in svc if isinstance(s, PTPBridge)]
    assert len(bridges) == 1 and (bridges[0].host, bridges[0].port) == ("127.0.0.1", 15999)
    for bad in ("ptpip:", "ptpip:host:port", "usb:1"):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(["--camera", bad])
