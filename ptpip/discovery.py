"""Device discovery (spec 5.2) over DNS-SD/mDNS with python-zeroconf.

The responder announces ``_ptp._tcp`` with its GUID in the TXT record, as the
spec recommends, so initiators can filter cameras; :func:`browse` lists them.
python-zeroconf runs its own thread; the Twisted side calls it through threads.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from twisted.application import service
from twisted.internet import threads
from twisted.logger import Logger

SERVICE_TYPE = "_ptp._tcp.local."
log = Logger()


@dataclass(frozen=True)
class Found:
    name: str
    address: str
    port: int
    guid: str
    model: str = ""
    #: How it was found: "dns-sd" or "ssdp".
    via: str = "dns-sd"


def local_addresses() -> list[str]:
    """IPv4 addresses of this host's interfaces, loopback excluded."""
    import ifaddr
    out = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                out.append(ip.ip)
    return out


def _instance(name: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in " -_" else "-" for ch in name)[:60] or "camera"
    return f"{safe}.{SERVICE_TYPE}"


class Announcer(service.Service):
    """Announces a responder while the service runs."""

    def __init__(self, name: str, port: int, guid: bytes, model: str = "",
                 addresses: list[str] | None = None) -> None:
        self.camera_name = name   # not Service.name, which names the service in its parent
        self.port = port
        self.guid = guid
        self.model = model
        self.addresses = addresses
        self._zc: Any = None
        self._info: Any = None

    def _register(self) -> None:
        from zeroconf import ServiceInfo, Zeroconf
        addresses = self.addresses if self.addresses is not None else local_addresses()
        self._info = ServiceInfo(
            SERVICE_TYPE, _instance(self.camera_name), port=self.port,
            addresses=[socket.inet_aton(a) for a in addresses],
            properties={"guid": self.guid.hex(), "name": self.camera_name, "model": self.model},
            server=f"{socket.gethostname()}.local.")
        self._zc = Zeroconf()
        self._zc.register_service(self._info, allow_name_change=True)

    def _unregister(self) -> None:
        if self._zc is not None:
            try:
                self._zc.unregister_service(self._info)
            finally:
                self._zc.close()
                self._zc = None

    def startService(self) -> Any:
        super().startService()
        d = threads.deferToThread(self._register)
        d.addCallbacks(lambda _: log.info("announced {name!r} as {type} on port {port}", name=self.camera_name,
                                          type=SERVICE_TYPE, port=self.port),
                       lambda f: log.failure("DNS-SD announcement failed", f))
        return d

    def stopService(self) -> Any:
        super().stopService()
        return threads.deferToThread(self._unregister)


def browse(timeout: float = 3.0) -> list[Found]:
    """Cameras announcing ``_ptp._tcp`` within *timeout* seconds (blocking; use a thread)."""
    from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

    names: set[str] = set()

    class Listener(ServiceListener):
        def add_service(self, zc: Any, type_: str, name: str) -> None:
            names.add(name)

        def update_service(self, zc: Any, type_: str, name: str) -> None:
            names.add(name)

        def remove_service(self, zc: Any, type_: str, name: str) -> None:
            names.discard(name)

    zc = Zeroconf()
    try:
        ServiceBrowser(zc, SERVICE_TYPE, Listener())
        time.sleep(timeout)
        found = []
        for name in sorted(names):
            info = zc.get_service_info(SERVICE_TYPE, name, timeout=2000)
            if info is None:
                continue
            props = {k.decode(): (v.decode() if v else "") for k, v in info.properties.items()}
            for addr in info.parsed_addresses():
                found.append(Found(props.get("name") or name.split(".")[0], addr, info.port or 0,
                                   props.get("guid", ""), props.get("model", "")))
        return found
    finally:
        zc.close()
