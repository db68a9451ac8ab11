"""``twistd ptpip-responder``: a PTP-IP camera on the network."""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Any

from twisted.application import service, strports
from twisted.python import usage

from .wire.constants import DEFAULT_PORT


def _guid(value: str) -> bytes:
    text = value.replace("-", "").replace(":", "").strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise usage.UsageError(f"--guid must be 32 hex digits, not {value!r}") from None
    if len(raw) != 16:
        raise usage.UsageError(f"--guid must be 16 bytes (32 hex digits), not {len(raw)}")
    return raw


def _check_folder(option: str, path: str) -> None:
    """A folder option must name a readable folder: a usage error says which and why."""
    if not os.path.exists(path):
        raise usage.UsageError(f"--{option} {path!r}: no such folder")
    if not os.path.isdir(path):
        raise usage.UsageError(f"--{option} {path!r}: not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise usage.UsageError(f"--{option} {path!r}: cannot read the folder (permission denied)")


def _check_guid_file(option: str, path: str, *, may_be_missing: bool) -> None:
    """A GUID file option must name a file (--allow-list: an existing one; --pair: one that
    may be created, so its folder must exist and be writable)."""
    if os.path.isdir(path):
        raise usage.UsageError(f"--{option} {path!r}: a folder, not a GUID file")
    if not os.path.exists(path):
        if not may_be_missing:
            raise usage.UsageError(f"--{option} {path!r}: no such file "
                                   "(create it, even empty, to allow no initiator yet)")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise usage.UsageError(f"--{option} {path!r}: no such folder {folder!r}")
    elif not os.access(path, os.R_OK):
        raise usage.UsageError(f"--{option} {path!r}: cannot read the file (permission denied)")
    if may_be_missing:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.access(folder, os.W_OK | os.X_OK):
            raise usage.UsageError(f"--{option} {path!r}: cannot write in its folder {folder!r} "
                                   "(permission denied)")


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Serve a folder (or, with no --root, built-in sample pictures) as a PTP-IP camera "
                "that gphoto2 and other PTP/IP initiators can list, download, upload, delete, "
                "capture with and configure.")
    optParameters = [
        ["root", "r", None, "Folder to serve as the camera's storage (default: built-in samples)."],
        ["cameras", None, None, "Serve several cameras, as a TOML file describes them (one [[camera]] "
                                "table each: name, profile, listen, root, guid, model, presets...)."],
        ["name", "n", "ptpip camera", "Friendly name sent to initiators (at most 39 characters)."],
        ["guid", "g", None, "The responder's GUID as 32 hex digits (default: random per start)."],
        ["max-sessions", None, 16, "Sessions served at once; more are answered Init Fail BUSY.", int],
        ["capture-folder", None, None, "Take captured pictures from this folder instead of drawing a test card."],
        ["live-view", None, "testcard", "What the viewfinder shows (live view): 'testcard' (a moving card with "
                                       "the settings), a folder of pictures, a video file (looped), "
                                       "'v4l2:/dev/videoN', or 'none'."],
        ["profile", "p", "generic", "Camera personality: generic, canon-eos, canon-eos-classic, nikon or fuji "
                                    "(--profile help lists them with the gphoto2 model to use)."],
        ["model", None, None, "Model string of DeviceInfo (default: the profile's)."],
        ["manufacturer", None, None, "Manufacturer string of DeviceInfo (default: the profile's)."],
        ["scan-interval", None, 2.0, "Seconds between scans of the folder for added/removed files (0: off).", float],
        ["allow-list", None, None, "Accept only the initiator GUIDs listed in this file (one per line)."],
        ["pair", None, None, "Pairing mode: accept and remember the next new initiator in this GUID file."],
        ["max-per-address", None, 8, "Sessions (and handshakes) from one address at once.", int],
        ["max-pending", None, 64, "Handshakes in flight at once (Init Command Request answered, event "
                                  "channel not yet there); more are answered Init Fail BUSY.", int],
        ["max-pending-per-address", None, None, "Handshakes in flight from one address (default: what "
                                                "--max-pending and --max-per-address allow).", int],
        ["reclaim-idle", None, 300.0, "At --max-sessions, a session that does not answer a probe is "
                                      "closed for a newcomer only if idle this many seconds (or its TCP "
                                      "connection is dead): gphoto2 never answers probes.", float],
        ["stall-timeout", None, 60.0, "Seconds a peer may stall mid-packet or stop reading (0: never).", float],
        ["idle-timeout", None, 0.0, "Seconds before an idle session is closed (0: never).", float],
        ["metrics", None, None, "Serve Prometheus metrics at /metrics on this endpoint, e.g. "
                                "tcp:9108:interface=127.0.0.1 (default: not served)."],
    ]
    optFlags = [
        ["announce", None, "Announce the camera over DNS-SD/mDNS as _ptp._tcp and over SSDP/UPnP (the default)."],
        ["no-announce", None, "Do not announce the camera (neither DNS-SD nor SSDP)."],
        ["anonymous", None, "Accept the anonymous (all-0xFF GUID) initiator; the default unless "
                            "--allow-list or --pair is given."],
        ["no-anonymous", None, "Refuse the anonymous (all-0xFF GUID) initiator; the default with "
                               "--allow-list or --pair."],
        ["allow-format", None, "Let FormatStore erase the folder."],
        ["read-only", None, "Refuse uploads, deletions and protection changes."],
        ["strict-version", None, "Refuse initiators whose protocol version has another major number "
                                 "(by default they are answered with ours and a warning is logged)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["presets"] = {}

    def opt_preset(self, spec: str) -> None:
        """Start with a property value, as NAME=VALUE (repeatable), e.g. FNumber=800 or
        ImageSize=640x480; names as in ptpip.constants.DevicePropCode or codes like 0x5007."""
        from .wire.constants import DevicePropCode
        name, sep, value = spec.partition("=")
        if not sep:
            raise usage.UsageError(f"--preset takes NAME=VALUE, not {spec!r}")
        code = None
        for member in DevicePropCode:
            if member.name.lower() == name.strip().lower():
                code = member.value
        if code is None:
            try:
                code = int(name, 0)
            except ValueError:
                raise usage.UsageError(f"--preset: unknown property {name!r}") from None
        self["presets"][code] = value

    def opt_listen(self, endpoint: str) -> None:
        """Endpoint string to listen on (repeatable; default tcp:15740)."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self) -> None:
        from .devices.profiles import PROFILES, describe_profiles
        if self["profile"] == "help":
            print(describe_profiles())
            raise SystemExit(0)
        if self["profile"] not in PROFILES:
            raise usage.UsageError(f"--profile {self['profile']!r}: unknown (one of {', '.join(PROFILES)}; "
                                   "--profile help describes them)")
        if self["cameras"]:
            self._readCameras()
        if not self["listen"]:
            self["listen"] = ["tcp:55740" if self["profile"] == "fuji" else f"tcp:{DEFAULT_PORT}"]
        self["guid"] = _guid(self["guid"]) if self["guid"] else uuid.uuid4().bytes
        from .wire.errors import LocalProtocolError
        from .wire.packets import encode_friendly_name
        try:
            encode_friendly_name(self["name"])
        except LocalProtocolError as e:
            raise usage.UsageError(str(e)) from None
        if self["presets"]:
            # Check the values now, against the camera's properties, so a bad one is a
            # usage error and not a traceback at start-up.
            _check_presets(self["profile"], self["presets"])
        # Paths are checked now, so that a typo is a usage error naming the path and not a
        # traceback at start-up (--root) or a failure at every capture (--capture-folder).
        for opt in ("root", "capture-folder"):
            if self[opt] is not None:
                _check_folder(opt, self[opt])
        _check_live_view(self["live-view"])
        for opt in ("max-sessions", "max-per-address", "max-pending", "max-pending-per-address"):
            if self[opt] is not None and self[opt] < 1:
                raise usage.UsageError(f"--{opt} must be at least 1, not {self[opt]}")
        if self["anonymous"] and self["no-anonymous"]:
            raise usage.UsageError("use --anonymous or --no-anonymous, not both")
        if self["allow-list"] and self["pair"]:
            raise usage.UsageError("use --allow-list or --pair, not both (--pair keeps its own list)")
        from .devices.policy import read_guids
        for opt in ("allow-list", "pair"):
            if self[opt] is not None:
                _check_guid_file(opt, self[opt], may_be_missing=opt == "pair")
                try:
                    read_guids(self[opt])
                except (ValueError, OSError) as e:
                    raise usage.UsageError(f"--{opt}: {e}") from None


    def _readCameras(self) -> None:
        """Check the --cameras file now: each camera's profile, GUID, folders and presets."""
        from .devices.profiles import PROFILES
        from .studio import CamerasFileError, read_cameras
        from .wire.errors import LocalProtocolError
        from .wire.packets import encode_friendly_name
        for opt in ("root", "guid"):
            if self[opt]:
                raise usage.UsageError(f"--{opt} and --cameras: give each camera its {opt} in the file")
        if self["listen"]:
            raise usage.UsageError("--listen and --cameras: give each camera its listen endpoints in the file")
        for opt, default in (("model", None), ("manufacturer", None), ("name", "ptpip camera")):
            if self[opt] != default:
                raise usage.UsageError(f"--{opt} and --cameras: give each camera its {opt} in the file")
        if self["presets"]:
            raise usage.UsageError("--preset and --cameras: give each camera its presets in the file")
        try:
            specs = read_cameras(self["cameras"])
        except CamerasFileError as e:
            raise usage.UsageError(f"--cameras {e}") from None
        for spec in specs:
            where = f"--cameras {self['cameras']}: camera {spec['name']!r}"
            spec.setdefault("profile", self["profile"])
            if spec["profile"] not in PROFILES:
                raise usage.UsageError(f"{where}: unknown profile {spec['profile']!r} (one of {', '.join(PROFILES)})")
            try:
                encode_friendly_name(spec["name"])
            except LocalProtocolError as e:
                raise usage.UsageError(f"{where}: {e}") from None
            try:
                spec["guid"] = _guid(spec["guid"]) if "guid" in spec else uuid.uuid4().bytes
                for opt in ("root", "capture-folder"):
                    if spec.get(opt) is not None:
                        _check_folder(opt, spec[opt])
                _check_presets(spec["profile"], spec["presets"])
                if "live-view" in spec:
                    _check_live_view(spec["live-view"])
            except usage.UsageError as e:
                raise usage.UsageError(f"{where}: {e}") from None
        self["camera-specs"] = specs


def _check_live_view(spec: str) -> None:
    from .devices.liveview import check_live_view_spec
    problem = check_live_view_spec(spec)
    if problem:
        raise usage.UsageError(f"--live-view {spec}: {problem}")


def _check_presets(profile: str, presets: dict[int, str]) -> None:
    """Presets are checked against the profile's properties, so a bad one is a usage error."""
    from .devices.profiles import get_profile
    from .devices.properties import DeviceProperties

    class _Probe:
        properties = DeviceProperties(get_profile(profile).make_properties())
    _apply_presets(_Probe(), presets)


class _CameraService(service.Service):
    """Stops the camera's folder scanner and removes the demo folder on shutdown."""

    def __init__(self, camera: Any, cleanup: str | None) -> None:
        self.camera = camera
        self.cleanup = cleanup

    def stopService(self) -> None:
        super().stopService()
        self.camera.stop()
        if self.cleanup:
            shutil.rmtree(self.cleanup, ignore_errors=True)


def makeService(options: Options) -> service.MultiService:
    top = service.MultiService()
    specs = options.get("camera-specs") or [{
        "name": options["name"], "guid": options["guid"], "listen": options["listen"],
        "root": options["root"], "profile": options["profile"], "model": options["model"],
        "manufacturer": options["manufacturer"], "presets": options["presets"]}]
    from .metrics import PTPIPMetrics, metrics_service
    metrics = options["metrics-registry"] = PTPIPMetrics()
    for spec in specs:
        _serve(spec, options, top)
    if options["metrics"]:
        metrics_service(options["metrics"], metrics).setServiceParent(top)
    return top


def _serve(spec: dict[str, Any], options: Options, top: service.MultiService) -> None:
    """One camera of the process: its card, device, factory, endpoints and announcement;
    *spec* holds what is its own (a [[camera]] of --cameras), *options* the rest."""
    from .devices.camera import demo_root, filesystem_camera
    from .devices.profiles import get_profile
    from .responder import ResponderFactory

    root = spec.get("root")
    cleanup = None
    if root is None:
        root = cleanup = demo_root()
    camera = filesystem_camera(
        root, capture_folder=spec.get("capture-folder", options["capture-folder"]),
        allow_format=spec.get("allow-format", bool(options["allow-format"])),
        read_only=spec.get("read-only", bool(options["read-only"])),
        live_view=spec.get("live-view", options["live-view"]),
        model=spec.get("model"), manufacturer=spec.get("manufacturer"),
        scan_interval=options["scan-interval"] or None, profile=get_profile(spec["profile"]))
    from .devices.policy import AcceptAllPolicy, AllowListPolicy, PairingPolicy
    anonymous = _accepts_anonymous(options)
    allow_list, pair = spec.get("allow-list", options["allow-list"]), spec.get("pair", options["pair"])
    if allow_list:
        policy: Any = AllowListPolicy(allow_list, anonymous=anonymous)
    elif pair:
        policy = PairingPolicy(pair, anonymous=anonymous)
    else:
        policy = AcceptAllPolicy(anonymous=anonymous)
    _apply_presets(camera, spec.get("presets", {}))
    factory = ResponderFactory(camera, guid=spec["guid"], friendly_name=spec["name"],
                               max_sessions=options["max-sessions"], policy=policy,
                               max_per_address=options["max-per-address"],
                               stall_timeout=options["stall-timeout"],
                               idle_timeout=options["idle-timeout"] or None,
                               max_pending=options["max-pending"],
                               max_pending_per_address=options["max-pending-per-address"],
                               reclaim_idle=options["reclaim-idle"],
                               strict_version=bool(options["strict-version"]),
                               metrics=options.get("metrics-registry"))
    _CameraService(camera, cleanup).setServiceParent(top)
    if spec["profile"] == "fuji":
        # Fuji's own PTP/IP: commands on P, events on P+1, live view on P+2.
        from .fuji import FujiResponderFactory
        fuji = FujiResponderFactory(camera, guid=spec["guid"], friendly_name=spec["name"],
                                    max_sessions=options["max-sessions"], max_pending=options["max-pending"],
                                    max_per_address=options["max-per-address"],
                                    stall_timeout=options["stall-timeout"], policy=policy,
                                    metrics=options.get("metrics-registry"))
        for endpoint in spec["listen"]:
            for offset, sub in ((0, fuji.command), (1, fuji.event), (2, fuji.liveview)):
                strports.service(_shift_port(endpoint, offset), sub).setServiceParent(top)
        return
    for endpoint in spec["listen"]:
        strports.service(endpoint, factory).setServiceParent(top)
    if not options["no-announce"]:
        port = _tcp_port(spec["listen"][0])
        if port:
            try:
                from .discovery import Announcer
            except ImportError:
                pass
            else:
                Announcer(spec["name"], port, spec["guid"], camera.model).setServiceParent(top)
            from .ssdp import SSDPAnnouncer
            SSDPAnnouncer(spec["guid"], name=spec["name"], manufacturer=camera.manufacturer, model=camera.model,
                          serial=camera.serial_number, port=port).setServiceParent(top)


def _accepts_anonymous(options: Options) -> bool:
    """Whether the anonymous initiator (all-0xFF GUID, spec 2.3.1) is let in: when access is
    restricted (--allow-list, --pair) only with --anonymous, as the library's policies do;
    otherwise unless --no-anonymous."""
    if options["anonymous"] or options["no-anonymous"]:
        return bool(options["anonymous"])
    return not (options["allow-list"] or options["pair"])


def _apply_presets(camera: Any, presets: dict[int, str]) -> None:
    """Set start-up property values, validated like SetDevicePropValue."""
    from .wire.constants import DataType
    from .wire.errors import PTPIPError
    for code, text in presets.items():
        try:
            desc = camera.properties.describe(code)
            value: Any = text if desc.datatype == DataType.STR else int(text, 0)
            camera.properties.set(code, value)
        except (PTPIPError, ValueError) as e:
            raise usage.UsageError(f"--preset 0x{code:04X}={text}: {e}") from None


def _shift_port(endpoint: str, offset: int) -> str:
    """The endpoint string *offset* ports up (``tcp:55740:interface=x`` -> ``tcp:55741:...``)."""
    parts = endpoint.split(":")
    if offset == 0:
        return endpoint
    for i, part in enumerate(parts[1:], 1):
        if part.startswith("port="):
            parts[i] = f"port={int(part[5:]) + offset}"
            return ":".join(parts)
        if i == 1 and part.isdigit():
            if int(part) == 0:
                raise usage.UsageError("--profile fuji needs a fixed port: its event and live view "
                                       "channels are the next two ports")
            parts[i] = str(int(part) + offset)
            return ":".join(parts)
    raise usage.UsageError(f"--profile fuji: no port in {endpoint!r}")


def _tcp_port(endpoint: str) -> int | None:
    """The port of a tcp: endpoint string (0 or another kind: None, nothing to announce)."""
    parts = endpoint.split(":")
    if parts[0] in ("tcp", "tcp6") and len(parts) > 1 and parts[1].isdigit() and int(parts[1]):
        return int(parts[1])
    return None
