"""Announcing a camera over SSDP/UPnP, and finding cameras that do (beside DNS-SD).

:class:`SSDPAnnouncer` joins 239.255.255.250:1900, multicasts ``ssdp:alive`` at start
and every half ``max-age`` (``ssdp:byebye`` at stop), answers M-SEARCH for its targets
after a random delay within MX, and serves the device description with twisted.web on
a port of its own. :func:`browse_ssdp` searches, fetches each LOCATION and keeps the
PTP-IP cameras (blocking: run it in a thread, as ``ptpip discover`` does).
"""

from __future__ import annotations

import http.client
import ipaddress
import random
import socket
import time
from typing import Any
from urllib.parse import urlparse

from twisted.application import service
from twisted.internet import defer, protocol, task
from twisted.logger import Logger
from twisted.web import resource, server

from .discovery import Found, local_addresses
from .wire import ssdp

log = Logger()


def address_towards(peer: str) -> str:
    """The local address the kernel would use to reach *peer* (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((peer, ssdp.SSDP_PORT))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class _Description(resource.Resource):
    isLeaf = True

    def __init__(self, document: bytes) -> None:
        super().__init__()
        self.document = document

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b'text/xml; charset="utf-8"')
        return self.document


#: Answers owed at once (each search waits up to a second); more searches are ignored.
MAX_PENDING_ANSWERS = 32
#: Seconds before the same address is answered again.
ANSWER_INTERVAL = 1.0


class _SSDP(protocol.DatagramProtocol):
    def __init__(self, announcer: SSDPAnnouncer) -> None:
        self.announcer = announcer
        self.last: dict[str, float] = {}
        self.pending = 0

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        message = ssdp.parse(data)
        if message is None or not message.is_search:
            return
        # Not a reflector: only searchers on our own networks, once a second each, and a
        # bounded number of answers owed at once.
        if not self.announcer.local(addr[0]) or self.pending >= MAX_PENDING_ANSWERS:
            return
        now = self.announcer.reactor.seconds()
        if now - self.last.get(addr[0], -ANSWER_INTERVAL) < ANSWER_INTERVAL:
            return
        if len(self.last) > 1024:
            self.last.clear()
        self.last[addr[0]] = now
        try:
            mx = max(0, min(int(message.headers.get("MX", "1")), 5))
        except ValueError:
            mx = 1
        answers = ssdp.matches(message.headers.get("ST", ""), self.announcer.guid)
        if answers:
            self.pending += 1
            self.announcer.reactor.callLater(random.uniform(0, min(mx, 1)), self._answer, answers, addr)

    def _answer(self, answers: list[tuple[str, str]], addr: tuple[str, int]) -> None:
        self.pending -= 1
        self.announcer.answer(answers, addr)


class SSDPAnnouncer(service.Service):
    """Announces one camera over SSDP while the service runs."""

    def __init__(self, guid: bytes, *, name: str, manufacturer: str, model: str, serial: str, port: int,
                 http_port: int = 0, max_age: int = 1800, reactor: Any = None,
                 addresses: list[str] | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.reactor = reactor
        self.guid = guid
        self.camera_name = name
        self.document = ssdp.description(guid, name=name, manufacturer=manufacturer, model=model,
                                         serial=serial, port=port)
        self.http_port = http_port
        self.max_age = max_age
        self.addresses = addresses
        self._udp: Any = None
        self._http: Any = None
        self._senders: list[Any] = []
        self._repeat: task.LoopingCall | None = None
        self._networks: list[Any] = []
        self._ready: Any = None

    def local(self, address: str) -> bool:
        """Whether *address* is on one of the networks we announce on (or loopback)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return ip.is_loopback or any(ip in n for n in self._networks)

    def location(self, address: str) -> str:
        return f"http://{address}:{self._http.getHost().port}{ssdp.DESCRIPTION_PATH}"

    def startService(self) -> None:
        super().startService()
        site = server.Site(_Description(self.document))
        self._http = self.reactor.listenTCP(self.http_port, site)
        self._udp = self.reactor.listenMulticast(ssdp.SSDP_PORT, _SSDP(self), listenMultiple=True)
        addresses = self.addresses if self.addresses is not None else local_addresses()
        self._networks = _networks(addresses)
        joins = [defer.maybeDeferred(self._udp.joinGroup, ssdp.MULTICAST_GROUP, a).addCallbacks(
            self._joined, self._notJoined, callbackArgs=(a,), errbackArgs=(a,)) for a in addresses]
        self._ready = defer.DeferredList(joins).addCallback(lambda _: self._startAnnouncing())

    def _joined(self, _: Any, address: str) -> None:
        if self._udp is None:
            return
        sender = self.reactor.listenMulticast(0, protocol.DatagramProtocol(), interface=address)
        sender.setOutgoingInterface(address)
        sender.setTTL(2)
        self._senders.append((address, sender))

    def _notJoined(self, failure: Any, address: str) -> None:
        log.warn("SSDP: cannot join {group} on {address}: {error}", group=ssdp.MULTICAST_GROUP,
                 address=address, error=failure.getErrorMessage())

    def _startAnnouncing(self) -> None:
        if self._udp is None:
            return
        self._repeat = task.LoopingCall(self.announce)
        self._repeat.clock = self.reactor
        self._repeat.start(max(1, self.max_age // 2))
        log.info("announced {name!r} over SSDP, description on port {port}", name=self.camera_name,
                 port=self._http.getHost().port)

    def announce(self, alive: bool = True) -> None:
        for address, sender in self._senders:
            for nt, usn in ssdp.notification_types(self.guid):
                packet = ssdp.notify(nt, usn, self.location(address), alive=alive, max_age=self.max_age)
                try:
                    sender.write(packet, (ssdp.MULTICAST_GROUP, ssdp.SSDP_PORT))
                except OSError as e:
                    log.warn("SSDP NOTIFY on {address} failed: {e}", address=address, e=e)

    def answer(self, answers: list[tuple[str, str]], addr: tuple[str, int]) -> None:
        if self._udp is None:
            return
        location = self.location(address_towards(addr[0]))
        for st, usn in answers:
            try:
                self._udp.write(ssdp.search_response(st, usn, location, max_age=self.max_age), addr)
            except OSError:
                return

    def stopService(self) -> Any:
        super().stopService()
        if self._repeat is not None and self._repeat.running:
            self._repeat.stop()
        self.announce(alive=False)
        for _, sender in self._senders:
            sender.stopListening()
        self._senders = []
        if self._udp is not None:
            self._udp.stopListening()
            self._udp = None
        return self._http.stopListening() if self._http is not None else None


def _networks(addresses: list[str]) -> list[Any]:
    """The IPv4 networks of *addresses*, from the interfaces that carry them."""
    nets = []
    try:
        import ifaddr
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                if isinstance(ip.ip, str) and ip.ip in addresses:
                    nets.append(ipaddress.ip_network(f"{ip.ip}/{ip.network_prefix}", strict=False))
    except Exception as e:               # no interface list: each address alone
        log.warn("SSDP: no interface list ({e}); answering each address alone", e=e)
    return nets or [ipaddress.ip_network(f"{a}/32") for a in addresses]


#: Cameras' descriptions fetched at most per search.
MAX_LOCATIONS = 32


def _fetch(location: str, deadline: float) -> bytes | None:
    """GET a description: http only, no redirect, 64 KiB at most, by the deadline."""
    url = urlparse(location)
    if url.scheme != "http" or not url.hostname:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=min(3.0, left))
    try:
        conn.request("GET", url.path or "/")
        response = conn.getresponse()
        return response.read(1 << 16) if response.status == 200 else None
    finally:
        conn.close()


def browse_ssdp(timeout: float = 3.0, st: str = ssdp.SERVICE_TYPE) -> list[Found]:
    """PTP-IP cameras answering an M-SEARCH within *timeout* seconds (blocking). Only a
    LOCATION on the address that answered is fetched, at most 32 of them, by one deadline."""
    locations: dict[str, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        s.settimeout(0.2)
        request = ssdp.search_request(st, mx=1)
        deadline = time.monotonic() + timeout
        sent = 0
        while time.monotonic() < deadline:
            if sent < 3 and time.monotonic() > deadline - timeout + sent * 0.5:
                try:
                    s.sendto(request, (ssdp.MULTICAST_GROUP, ssdp.SSDP_PORT))
                except OSError as e:             # no multicast route: nothing to hear
                    log.warn("SSDP search not sent: {e}", e=e)
                    return []
                sent += 1
            try:
                data, source = s.recvfrom(ssdp.MAX_MESSAGE + 1)
            except TimeoutError:
                continue
            message = ssdp.parse(data)
            if message is None or not message.start.startswith("HTTP/1.1 200"):
                continue
            usn, location = message.headers.get("USN", ""), message.headers.get("LOCATION", "")
            if urlparse(location).hostname == source[0] and len(locations) < MAX_LOCATIONS:
                locations.setdefault(usn.split("::")[0], location)
    found = []
    fetch_deadline = time.monotonic() + max(3.0, timeout)
    for location in locations.values():
        try:
            document = _fetch(location, fetch_deadline)
        except Exception:                # whatever a stranger's web server does
            continue
        described = ssdp.parse_description(document) if document else None
        if described is not None:
            found.append(Found(described.name, urlparse(location).hostname or "", described.port,
                               described.guid, described.model))
    return found
