"""SSDP messages and the device description (ptpip/wire/ssdp.py), and the announcer's
answers over a real UDP socket on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, threads

from ptpip.wire import ssdp

GUID = bytes.fromhex("0123456789abcdef0123456789abcdef")
UDN = "uuid:01234567-89ab-cdef-0123-456789abcdef"


def test_notify_and_search_messages():
    alive = ssdp.parse(ssdp.notify("upnp:rootdevice", f"{UDN}::upnp:rootdevice", "http://h:1/d.xml"))
    assert alive is not None and alive.start == "NOTIFY * HTTP/1.1"
    assert alive.headers["NTS"] == "ssdp:alive" and alive.headers["LOCATION"] == "http://h:1/d.xml"
    assert alive.headers["CACHE-CONTROL"] == "max-age=1800" and alive.headers["HOST"] == "239.255.255.250:1900"
    bye = ssdp.parse(ssdp.notify(UDN, UDN, "http://h:1/d.xml", alive=False))
    assert bye is not None and bye.headers["NTS"] == "ssdp:byebye" and "LOCATION" not in bye.headers
    search = ssdp.parse(ssdp.search_request("ssdp:all", 2))
    assert search is not None and search.is_search and search.headers["MX"] == "2"
    assert not ssdp.parse(b"NOTIFY * HTTP/1.1\r\nMAN: x\r\n\r\n").is_search      # type: ignore[union-attr]


def test_search_targets_answered():
    assert [st for st, _ in ssdp.matches("ssdp:all", GUID)] == [
        "upnp:rootdevice", UDN, ssdp.DEVICE_TYPE, ssdp.SERVICE_TYPE]
    assert ssdp.matches(UDN, GUID) == [(UDN, UDN)]
    assert ssdp.matches(ssdp.SERVICE_TYPE, GUID) == [(ssdp.SERVICE_TYPE, f"{UDN}::{ssdp.SERVICE_TYPE}")]
    assert ssdp.matches("urn:schemas-upnp-org:device:MediaRenderer:1", GUID) == []


def test_description_round_trip():
    doc = ssdp.description(GUID, name="Cam <&>", manufacturer="Canon Inc.", model="Canon EOS R5",
                           serial="123", port=15740)
    d = ssdp.parse_description(doc)
    assert d == ssdp.Described("Cam <&>", "Canon Inc.", "Canon EOS R5", GUID.hex(), 15740)
    assert b"<UDN>" + UDN.encode() + b"</UDN>" in doc
    assert ssdp.parse_description(b"<root/>") is None and ssdp.parse_description(b"not xml") is None


@given(st.binary(max_size=300))
def test_garbage_is_ignored_never_raised(data):
    m = ssdp.parse(data)
    assert m is None or isinstance(m, ssdp.Message)
    ssdp.parse_description(data)
    assert ssdp.parse(b"M" * (ssdp.MAX_MESSAGE + 1)) is None


def _search(port: int, st: str) -> list[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.5)
        s.sendto(ssdp.search_request(st, mx=1), ("127.0.0.1", port))
        out = []
        try:
            while True:
                out.append(s.recvfrom(ssdp.MAX_MESSAGE)[0])
        except OSError:
            return out


@pytest_twisted.ensureDeferred
async def test_the_announcer_answers_searches_for_its_targets_only(reactor, monkeypatch):
    """M-SEARCH sent straight to the announcer's socket (no multicast leaves the machine)."""
    from ptpip import ssdp as glue
    monkeypatch.setattr(ssdp, "SSDP_PORT", 0)         # any free port instead of 1900
    a = glue.SSDPAnnouncer(GUID, name="Cam", manufacturer="M", model="X", serial="1", port=15740,
                           addresses=[], reactor=reactor)
    a.startService()
    try:
        port = a._udp.getHost().port
        replies = await threads.deferToThread(_search, port, ssdp.SERVICE_TYPE)
        (reply,) = [ssdp.parse(r) for r in replies]
        assert reply is not None and reply.start == "HTTP/1.1 200 OK"
        assert reply.headers["ST"] == ssdp.SERVICE_TYPE and reply.headers["USN"].startswith(UDN)
        assert reply.headers["LOCATION"].startswith("http://127.0.0.1:")
        everything = await threads.deferToThread(_search, port, "ssdp:all")
        assert len(everything) == 4
        assert await threads.deferToThread(_search, port, "urn:other:device:X:1") == []
        import urllib.request
        body = await threads.deferToThread(lambda: urllib.request.urlopen(reply.headers["LOCATION"], timeout=5).read())
        assert ssdp.parse_description(body) == ssdp.Described("Cam", "M", "X", GUID.hex(), 15740)
    finally:
        await defer.maybeDeferred(a.stopService)




def test_searches_from_afar_or_too_often_are_not_answered():
    """The announcer is no reflector: a search from outside its networks gets nothing, the
    same searcher at most one answer a second, and few answers are owed at once."""
    from twisted.internet import task

    from ptpip.ssdp import _SSDP, MAX_PENDING_ANSWERS, SSDPAnnouncer
    clock = task.Clock()
    a = SSDPAnnouncer(GUID, name="Cam", manufacturer="M", model="X", serial="1", port=15740,
                      addresses=[], reactor=clock)
    a._networks = [__import__("ipaddress").ip_network("10.9.8.0/24")]
    answered: list = []
    a.answer = lambda answers, addr: answered.append(addr)           # type: ignore[method-assign]
    p = _SSDP(a)
    search = ssdp.search_request("ssdp:all", 1)
    p.datagramReceived(search, ("203.0.113.5", 1900))               # not ours
    p.datagramReceived(search, ("10.9.8.7", 1900))
    p.datagramReceived(search, ("10.9.8.7", 1900))                  # again within a second
    clock.advance(1.5)
    assert answered == [("10.9.8.7", 1900)]
    p.datagramReceived(search, ("10.9.8.7", 1900))                  # a second later: answered
    clock.advance(1.5)
    assert len(answered) == 2
    for i in range(MAX_PENDING_ANSWERS + 10):
        p.datagramReceived(search, (f"10.9.8.{i % 250}", 1000 + i))
    assert p.pending <= MAX_PENDING_ANSWERS
