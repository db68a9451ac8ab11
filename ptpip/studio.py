"""A studio of cameras in one process: the ``--cameras FILE`` of ``twistd ptpip-responder``.

The file is TOML, one ``[[camera]]`` table per camera::

    [[camera]]
    name = "EOS left"                 # the friendly name (and the DNS-SD instance name)
    profile = "canon-eos"             # generic, canon-eos, canon-eos-classic, nikon
    listen = "tcp:15740:interface=127.0.0.1"   # an endpoint, or a list of them
    root = "/srv/cards/left"          # the card (default: the built-in samples)
    guid = "00112233445566778899aabbccddeeff"  # default: random per start
    model = "Canon EOS R5"            # DeviceInfo strings (default: the profile's)
    presets = { 0xD101 = "0x38" }     # start-up property values, as --preset takes them

    [[camera]]
    name = "D750 right"
    profile = "nikon"
    listen = "tcp:15750"

Other keys a camera may have: ``manufacturer``, ``capture-folder``, ``live-view``, ``read-only``,
``allow-format``, ``allow-list``, ``pair``. Everything else (session limits, timeouts,
``--no-announce``) comes from the command line and applies to every camera. Each camera
has its own endpoints, GUID, card and announcement. :func:`read_cameras` checks the whole
file at start-up and says what is wrong where.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any

#: Keys a [[camera]] table may have, and the types they take.
KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,), "profile": (str,), "listen": (str, list), "root": (str,), "guid": (str,),
    "model": (str,), "manufacturer": (str,), "presets": (dict,), "capture-folder": (str,),
    "live-view": (str,), "read-only": (bool,), "allow-format": (bool,), "allow-list": (str,), "pair": (str,),
}


class CamerasFileError(ValueError):
    """The cameras file cannot be used; the message says where and why."""


def read_cameras(path: str) -> list[dict[str, Any]]:
    """The camera tables of *path*, checked: each has a name and its own endpoints."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise CamerasFileError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise CamerasFileError(f"{path}: not TOML: {e}") from None
    extra = sorted(set(doc) - {"camera"})
    if extra:
        raise CamerasFileError(f"{path}: unknown table {extra[0]!r} (cameras are [[camera]] tables)")
    cameras = doc.get("camera")
    if not isinstance(cameras, list) or not cameras:
        raise CamerasFileError(f"{path}: no [[camera]] table")
    seen: dict[str, dict[Any, int]] = {"name": {}, "guid": {}, "listen": {}, "root": {}}
    out = []
    for i, table in enumerate(cameras, 1):
        where = f"{path}: camera {i}"
        for key, value in table.items():
            if key not in KEYS:
                raise CamerasFileError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(KEYS))})")
            if not isinstance(value, KEYS[key]):
                raise CamerasFileError(f"{where}: {key} must be {' or '.join(t.__name__ for t in KEYS[key])}")
        spec = dict(table)
        if "name" not in spec:
            raise CamerasFileError(f"{where}: no name")
        where = f"{path}: camera {spec['name']!r}"
        listen = spec.get("listen")
        if listen is None:
            raise CamerasFileError(f"{where}: no listen endpoint (each camera needs its own)")
        spec["listen"] = [listen] if isinstance(listen, str) else list(listen)
        if not spec["listen"] or not all(isinstance(e, str) for e in spec["listen"]):
            raise CamerasFileError(f"{where}: listen must be an endpoint string or a list of them")
        spec["presets"] = {_code(k, where): str(v) for k, v in spec.get("presets", {}).items()}
        if "root" in spec:
            root = os.path.realpath(spec["root"])
            if root in seen["root"]:
                raise CamerasFileError(f"{where}: the same root as camera {seen['root'][root]} "
                                       "(two cameras on one card would trip over each other)")
            seen["root"][root] = i
        for key in ("name", "guid"):
            if key in spec:
                if spec[key] in seen[key]:
                    raise CamerasFileError(f"{where}: the same {key} as camera {seen[key][spec[key]]}")
                seen[key][spec[key]] = i
        for endpoint in spec["listen"]:
            parts = endpoint.split(":")
            if len(parts) > 1 and parts[1] == "0":
                continue                  # any free port: never the same as another's
            # A Fuji takes the next two ports too (events, live view).
            ports = _ports(endpoint, 3 if spec.get("profile") == "fuji" else 1)
            for taken in ports:
                if taken in seen["listen"]:
                    shown = endpoint if taken == ports[0] else taken
                    raise CamerasFileError(f"{where}: listens on {shown!r} like camera {seen['listen'][taken]}")
            for taken in ports:
                seen["listen"][taken] = i
        out.append(spec)
    return out


def _code(name: Any, where: str) -> int:
    """A property named as --preset names it: a DevicePropCode name or a number."""
    from .wire.constants import DevicePropCode
    text = str(name)
    for member in DevicePropCode:
        if member.name.lower() == text.strip().lower():
            return int(member.value)
    try:
        return int(text, 0)
    except ValueError:
        raise CamerasFileError(f"{where}: unknown property {text!r} in presets") from None


def _ports(endpoint: str, count: int) -> list[str]:
    """*endpoint* and the next ``count - 1`` ports, as comparable ``kind:port:interface`` keys."""
    parts = endpoint.split(":")
    kind, port, iface = parts[0], None, ""
    for i, part in enumerate(parts[1:], 1):
        if part.startswith("port="):
            port = part[5:]
        elif part.startswith("interface="):
            iface = part[10:]
        elif i == 1 and part.isdigit():
            port = part
    if port is None or not port.isdigit():
        return [endpoint]
    return [f"{kind}:{int(port) + k}:{iface}" for k in range(count)]
