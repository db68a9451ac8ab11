"""SSDP (UPnP Device Architecture 1.1, section 1) messages and the device description,
for cameras that announce themselves as Canon and Sony cameras do. Pure.

A camera multicasts ``NOTIFY * HTTP/1.1`` (``ssdp:alive``, and ``ssdp:byebye`` when it
goes) to 239.255.255.250:1900, answers ``M-SEARCH`` requests with a unicast
``HTTP/1.1 200 OK``, and serves a device description (XML) at the LOCATION those name:
friendly name, manufacturer, model, serial number, ``uuid:`` from the PTP-IP GUID, and
the PTP-IP port (element ``ptpip:port``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from xml.etree import ElementTree

MULTICAST_GROUP = "239.255.255.250"
SSDP_PORT = 1900
DEVICE_TYPE = "urn:schemas-upnp-org:device:Basic:1"
#: The service a PTP-IP camera offers, as its own search target.
SERVICE_TYPE = "urn:schemas-twisted-ptpip:service:PTPIP:1"
PTPIP_NS = "urn:schemas-twisted-ptpip:device-1-0"
UPNP_NS = "urn:schemas-upnp-org:device-1-0"
DESCRIPTION_PATH = "/ptpip/description.xml"
#: The longest SSDP message read (a datagram).
MAX_MESSAGE = 8192


def udn(guid: bytes) -> str:
    return f"uuid:{uuid.UUID(bytes=guid)}"


def notification_types(guid: bytes) -> list[tuple[str, str]]:
    """(NT, USN) of each announcement: the root device, the device, its type, its service."""
    u = udn(guid)
    return [("upnp:rootdevice", f"{u}::upnp:rootdevice"), (u, u), (DEVICE_TYPE, f"{u}::{DEVICE_TYPE}"),
            (SERVICE_TYPE, f"{u}::{SERVICE_TYPE}")]


def _message(start: str, headers: list[tuple[str, str]]) -> bytes:
    return (start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode()


def notify(nt: str, usn: str, location: str, *, alive: bool = True, max_age: int = 1800,
           server: str = "Linux/1 UPnP/1.1 twisted-ptpip/1") -> bytes:
    headers = [("HOST", f"{MULTICAST_GROUP}:{SSDP_PORT}"), ("NT", nt), ("NTS", "ssdp:alive" if alive else "ssdp:byebye"),
               ("USN", usn)]
    if alive:
        headers[1:1] = [("CACHE-CONTROL", f"max-age={max_age}"), ("LOCATION", location), ("SERVER", server)]
    return _message("NOTIFY * HTTP/1.1", headers)


def search_request(st: str = "ssdp:all", mx: int = 1) -> bytes:
    return _message("M-SEARCH * HTTP/1.1", [("HOST", f"{MULTICAST_GROUP}:{SSDP_PORT}"),
                                            ("MAN", '"ssdp:discover"'), ("MX", str(mx)), ("ST", st)])


def search_response(st: str, usn: str, location: str, *, max_age: int = 1800,
                    server: str = "Linux/1 UPnP/1.1 twisted-ptpip/1") -> bytes:
    return _message("HTTP/1.1 200 OK", [("CACHE-CONTROL", f"max-age={max_age}"), ("EXT", ""),
                                        ("LOCATION", location), ("SERVER", server), ("ST", st), ("USN", usn)])


@dataclass(frozen=True)
class Message:
    start: str
    headers: dict[str, str]

    @property
    def is_search(self) -> bool:
        return self.start.upper().startswith("M-SEARCH ") and self.headers.get("MAN", "").strip('"') == "ssdp:discover"


def parse(data: bytes) -> Message | None:
    """An SSDP message, or None for anything that is not one (it is ignored, not answered)."""
    if len(data) > MAX_MESSAGE:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    if not lines or not lines[0]:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().upper()] = value.strip()
    return Message(lines[0].strip(), headers)


def matches(st: str, guid: bytes) -> list[tuple[str, str]]:
    """The (ST, USN) answers a search target asks of this camera (none for other targets)."""
    types = notification_types(guid)
    if st == "ssdp:all":
        return types
    return [(nt, usn) for nt, usn in types if nt == st]


def description(guid: bytes, *, name: str, manufacturer: str, model: str, serial: str, port: int) -> bytes:
    """The device description document."""
    ElementTree.register_namespace("", UPNP_NS)
    ElementTree.register_namespace("ptpip", PTPIP_NS)
    root = ElementTree.Element(f"{{{UPNP_NS}}}root")
    spec = ElementTree.SubElement(root, f"{{{UPNP_NS}}}specVersion")
    ElementTree.SubElement(spec, f"{{{UPNP_NS}}}major").text = "1"
    ElementTree.SubElement(spec, f"{{{UPNP_NS}}}minor").text = "1"
    device = ElementTree.SubElement(root, f"{{{UPNP_NS}}}device")
    for tag, text in (("deviceType", DEVICE_TYPE), ("friendlyName", name), ("manufacturer", manufacturer),
                      ("modelName", model), ("serialNumber", serial), ("UDN", udn(guid))):
        ElementTree.SubElement(device, f"{{{UPNP_NS}}}{tag}").text = text
    ElementTree.SubElement(device, f"{{{PTPIP_NS}}}port").text = str(port)
    ElementTree.SubElement(device, f"{{{PTPIP_NS}}}guid").text = guid.hex()
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root)


@dataclass(frozen=True)
class Described:
    name: str
    manufacturer: str
    model: str
    guid: str
    port: int


def parse_description(data: bytes) -> Described | None:
    """What a device description says of a PTP-IP camera (None for another device)."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return None
    device = root.find(f"{{{UPNP_NS}}}device")
    if device is None:
        return None

    def text(tag: str, ns: str = UPNP_NS) -> str:
        el = device.find(f"{{{ns}}}{tag}")
        return (el.text or "").strip() if el is not None else ""
    port = text("port", PTPIP_NS)
    if not port.isdigit():
        return None
    return Described(text("friendlyName"), text("manufacturer"), text("modelName"), text("guid", PTPIP_NS), int(port))
