"""``twistd cccp-server``: a CCCP camera/recorder control server."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.application import service, strports
from twisted.cred import credentials, strcred
from twisted.python import usage

from .wire.commands import DEFAULT_PORT


def _range(value: str) -> tuple[int, int]:
    try:
        lo, _, hi = value.partition("-")
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise usage.UsageError(f"--passive-ports takes LOW-HIGH, not {value!r}") from None
    if not 1024 <= low <= high <= 65535:
        raise usage.UsageError(f"--passive-ports must lie within 1024-65535, not {value!r}")
    return low, high


def _bitrate(text: str) -> int:
    from .devices.live import parse_bitrate
    try:
        return parse_bitrate(text)
    except ValueError as e:
        raise usage.UsageError(f"--live-bitrate: {e}") from None


class Options(usage.Options, strcred.AuthOptionMixin):
    synopsis = "[options]"
    longdesc = ("Serve a folder of media, a virtual pan/tilt/zoom camera and a virtual tape deck over "
                "CCCP (draft-ohta-ccc-video-00), the FTP-derived CamCoder Control Protocol. "
                "Without --auth, anyone may log in anonymously; with --auth, only with --anonymous.")
    supportedInterfaces = [credentials.IUsernamePassword]
    optParameters = [
        ["root", "r", None, "Folder of media to serve (default: a temporary folder with a sample clip); "
                            "not with --camera ptpip:..., whose pictures are the media."],
        ["passive-ports", None, None, "Port range for PASV, as LOW-HIGH (default: any free port).", _range],
        ["masquerade", None, None, "Address announced in PASV replies (when behind NAT)."],
        ["max-connections", None, 64, "Control connections served at once.", int],
        ["max-per-address", None, 8, "Control connections from one address at once.", int],
        ["idle-timeout", None, 300.0, "Seconds without a command before the server hangs up (0: never).", float],
        ["camera", None, "virtual",
         "Camera: 'virtual', 'none', or 'ptpip:HOST[:PORT]' to bridge a PTP-IP camera (its pictures "
         "become the media store)."],
        ["tape", None, "virtual", "Tape deck: 'virtual' or 'none'."],
        ["tape-length", None, 3600.0, "Length of the virtual tape in seconds.", float],
        ["tape-clip", None, None, "MPEG2-TS clip repeated along the virtual tape (default: the sample clip)."],
        ["live-close-after", None, 10.0, "Seconds a live source (its encoder, a camera's live view) runs on "
                                         "after its last viewer left (0: stop at once).", float],
        ["live-bitrate", None, "2M", "Video bit rate of the live encoder (constant), e.g. 5M or 800k.",
         lambda v: _bitrate(v)],
        ["multicast-ttl", None, 1, "TTL of multicast datagrams (1: this link only).", int],
        ["multicast-interface", None, None, "Address of the interface for multicast."],
        ["login-timeout", None, 30.0, "Seconds a connection has to log in (NOOP does not extend it; 0: no limit).",
         float],
        ["max-unauthenticated", None, None, "Connections not yet logged in, at once (default: three "
                                            "quarters of --max-connections, so logged-in users keep room).", int],
        ["max-unauthenticated-per-address", None, None, "Connections not yet logged in from one address "
                                                        "(default: half of --max-per-address, at least 2).", int],
        ["login-delay", None, 1.0, "Seconds before a first failed login is answered; doubles with each "
                                   "failure of the account or address in the window.", float],
        ["lockout-failures", None, 5, "Failed logins of one account within the window (five times as many "
                                      "from one address) that lock it out.", int],
        ["lockout", None, 300.0, "Seconds a lock-out lasts; even the right password is refused meanwhile.",
         float],
        ["login-window", None, 600.0, "Seconds failed logins are remembered, across connections.", float],
        ["stall-timeout", None, 60.0, "Seconds a client may leave replies unread before it is closed.", float],
        ["metrics", None, None, "Serve Prometheus metrics at /metrics on this endpoint, e.g. "
                                "tcp:9108:interface=127.0.0.1 (default: not served)."],
    ]
    optFlags = [
        ["anonymous", None, "Allow anonymous login (the default when no --auth is given)."],
        ["anonymous-write", None, "Let anonymous users STOR too."],
        ["read-only", None, "Refuse every STOR (into the folder, or to a bridged camera)."],
        ["multicast-ok", None, "Allow PORT to a multicast group in MODE P."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Endpoint string to listen on (repeatable; default tcp:5021)."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [f"tcp:{DEFAULT_PORT}"]
        if self["tape"] not in ("virtual", "none"):
            raise usage.UsageError(f"--tape must be 'virtual' or 'none', not {self['tape']!r}")
        camera = self["camera"]
        if camera.startswith("ptpip:"):
            from .adapters import parse_camera_spec
            try:
                parse_camera_spec(camera)
            except ValueError as e:
                raise usage.UsageError(f"--camera {camera!r}: {e}") from None
            if self["root"] is not None:
                raise usage.UsageError("--root cannot be combined with --camera ptpip:...: the bridged "
                                       "camera's pictures are the media store")
        elif camera not in ("virtual", "none"):
            raise usage.UsageError(f"--camera must be 'virtual', 'none' or 'ptpip:HOST[:PORT]', not {camera!r}")
        if self["root"] is not None and not os.path.isdir(self["root"]):
            raise usage.UsageError(f"--root {self['root']!r} is not a folder")
        self["tape-index"] = None
        if self["tape-clip"] is not None:
            from .devices.tape import index_file
            from .wire.ts import TSError
            try:
                self["tape-index"] = index_file(self["tape-clip"])
            except OSError as e:
                raise usage.UsageError(f"--tape-clip {self['tape-clip']!r}: {e.strerror}") from None
            except TSError as e:
                raise usage.UsageError(f"--tape-clip {self['tape-clip']!r} cannot be played as a tape: {e}") from None


class _Cleanup(service.Service):
    def __init__(self, path: str | None, store: Any = None) -> None:
        self.path = path
        self.store = store

    def stopService(self) -> None:
        super().stopService()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()                           # the live sources' encoders end with the server
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)


def makeService(options: Options) -> service.MultiService:
    from twisted.internet import reactor

    from .devices import FileMediaStore, VirtualCamera, VirtualTapeDeck
    from .devices.live import MediaLibrary
    from .realm import CCCPRealm, make_portal
    from .server import CCCPFactory

    top = service.MultiService()
    deck = VirtualTapeDeck(options["tape-length"]) if options["tape"] == "virtual" else None
    read_only = bool(options["read-only"])
    cleanup = None
    if options["camera"].startswith("ptpip:"):
        # The camera is the media store (postOptions refuses --root with it).
        from .adapters import PTPBridge, parse_camera_spec
        host, port = parse_camera_spec(options["camera"])
        bridge = PTPBridge(reactor, host, port, writable=not read_only, close_after=options["live-close-after"])
        bridge.setServiceParent(top)
        camera: Any = bridge.cccp_camera
        store: Any = bridge.cccp_store
    else:
        root = options["root"]
        if root is None:
            root = cleanup = tempfile.mkdtemp(prefix="cccp-")
            from .wire.media import sample_clip_path
            sample = sample_clip_path()
            if sample:
                shutil.copy(sample, root)
        camera = VirtualCamera() if options["camera"] == "virtual" else None
        store = MediaLibrary(FileMediaStore(root, writable=not read_only), reactor, deck,
                             tape_clip=options["tape-clip"], close_after=options["live-close-after"],
                             bitrate=options["live-bitrate"] if isinstance(options["live-bitrate"], int)
                             else _bitrate(options["live-bitrate"]))
        if options["tape-index"] is not None:
            store.indexes.put(options["tape-clip"], options["tape-index"])
    realm = CCCPRealm(store, camera, deck, anonymous_may_store=options["anonymous-write"], read_only=read_only)
    checkers = options.get("credCheckers", [])
    anonymous = options["anonymous"] or not checkers
    factory = CCCPFactory(make_portal(realm, checkers, anonymous), allow_anonymous=anonymous,
                          passive_ports=options["passive-ports"], masquerade=options["masquerade"],
                          max_connections=options["max-connections"],
                          max_per_address=options["max-per-address"], idle_timeout=options["idle-timeout"],
                          multicast_ok=options["multicast-ok"], multicast_ttl=options["multicast-ttl"],
                          multicast_interface=options["multicast-interface"],
                          login_timeout=options["login-timeout"],
                          max_unauthenticated=options["max-unauthenticated"],
                          max_unauthenticated_per_address=options["max-unauthenticated-per-address"],
                          login_delay=options["login-delay"], lockout_failures=options["lockout-failures"],
                          lockout=options["lockout"], login_window=options["login-window"],
                          stall_timeout=options["stall-timeout"])
    _Cleanup(cleanup, store).setServiceParent(top)
    for endpoint in options["listen"]:
        strports.service(endpoint, factory).setServiceParent(top)
    if options["metrics"]:
        from .metrics import metrics_service
        metrics_service(options["metrics"], factory.metrics).setServiceParent(top)
    return top
