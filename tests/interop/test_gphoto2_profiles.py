"""Stock gphoto2 drives each camera personality down its vendor path, end to end.

Two independent peers: Debian's gphoto2 command (libgphoto2 2.5.30) and the ``gphoto2``
wheel from PyPI (python-gphoto2 with the libgphoto2 2.5.34 it bundles), driven by
``gphoto2_wheel.py`` in a process of its own. Each run has a throwaway HOME (libgphoto2
keeps the initiator GUID and the capture target in ``~/.gphoto/settings``). Neither peer
may be missing: that fails, it never skips.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from typing import Any

import pytest_twisted
from twisted.internet import task, utils

from ptpip.devices import fuji as fuji_device
from ptpip.devices.capture import TestCardCapture
from ptpip.devices.liveview import parse_comment
from ptpip.devices.profiles import get_profile
from ptpip.wire.constants import DevicePropCode
from ptpip.wire.constants import OperationCode as Op
from ptpip.wire.vendor import CanonEOSProp, CanonOp, NikonOp

from ..conftest import make_tree, start_fuji, start_responder, stop_fuji, stop_responder

GPHOTO2 = shutil.which("gphoto2")
TIMEOUT = shutil.which("timeout") or "timeout"
WHEEL_DRIVER = os.path.join(os.path.dirname(__file__), "gphoto2_wheel.py")
PROFILES = ["canon-eos", "canon-eos-classic", "nikon", "fuji"]
PEERS = ["debian", "wheel"]


def test_both_peers_are_installed():
    assert GPHOTO2, "gphoto2 is not installed: .ci/run installs it with apt-get"
    import gphoto2  # noqa: F401 - the wheel, from the test extra


class RecordingCapture(TestCardCapture):
    """Draws test cards and remembers every picture it made; each is over 2 MiB (a JPEG
    with a trailer after its end marker), so downloads go in GetPartialObject pieces."""

    def __init__(self) -> None:
        super().__init__(640, 480)
        self.made: list[bytes] = []

    def capture(self, object_format: int = 0) -> Any:
        def keep(result: tuple[str, bytes]) -> tuple[str, bytes]:
            name, data = result
            data += os.urandom(2 * 1024 * 1024 + 4321)
            self.made.append(data)
            return name, data
        return super().capture(object_format).addCallback(keep)


class Peer:
    """One gphoto2 peer against one camera: the same actions, as each peer spells them."""

    def __init__(self, kind: str, reactor: Any, model: str, port: int, home: str,
                 event_port: int | None = None) -> None:
        self.kind = kind
        self.reactor = reactor
        self.model = model
        self.port = f"ptpip:127.0.0.1:{port}:{event_port or port}"
        self.home = home
        self.debug_log = os.path.join(home, "debug.txt")

    async def run(self, *action: str, cwd: str | None = None, debug: bool = False) -> str:
        env = {"HOME": self.home, "LANG": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if self.kind == "debian":
            assert GPHOTO2, "gphoto2 is not installed"
            exe, argv = GPHOTO2, ["--camera", self.model, "--port", self.port, *_cli(action)]
            if debug:
                argv[:0] = ["--debug", "--debug-logfile", self.debug_log]
        else:
            exe, argv = sys.executable, [WHEEL_DRIVER, self.model, self.port, *action]
        # gphoto2 shrugs off SIGTERM while it waits for events: timeout(1) kills it 5 s later.
        out, err, code = await utils.getProcessOutputAndValue(
            TIMEOUT, ["-k", "5", "90", exe, *argv], env=env, path=cwd or self.home, reactor=self.reactor)
        text = (out + err).decode("utf-8", "replace")
        assert code not in (124, 137), f"{self.kind} gphoto2 {' '.join(action)} hung:\n{text}"
        assert code == 0, f"{self.kind} gphoto2 {' '.join(action)} failed ({code}):\n{text}"
        return text

    async def movie_frames(self, seconds: int) -> int:
        """Frames ffprobe counts in ``gphoto2 --capture-movie=Ns --stdout`` (or the wheel's
        preview loop) piped to it."""
        assert GPHOTO2 and shutil.which("ffprobe"), "gphoto2 and ffprobe are needed"
        env = {"HOME": self.home, "LANG": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        model = shlex.quote(self.model)
        movie = (f"{GPHOTO2} --camera {model} --port {self.port} --capture-movie={seconds}s --stdout"
                 if self.kind == "debian" else f"{sys.executable} {WHEEL_DRIVER} {model} {self.port} movie {seconds}")
        pipe = (f"{TIMEOUT} -k 5 60 {movie} 2>/dev/null | ffprobe -v error -f mjpeg -count_frames "
                "-show_entries stream=nb_read_frames -of csv=p=0 -")
        out, err, code = await utils.getProcessOutputAndValue("/bin/sh", ["-c", pipe], env=env,
                                                              path=self.home, reactor=self.reactor)
        assert code == 0, (out + err).decode("utf-8", "replace")
        return int(out.strip() or 0)

    async def files(self) -> list[str]:
        text = await self.run("list")
        if self.kind == "wheel":
            return sorted(line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("FILE "))
        paths, folder = [], None
        for line in text.splitlines():
            m = re.match(r"There (?:is|are) \S+ files? in folder '(.*)'", line)
            if m:
                folder = m.group(1).rstrip("/")
            m = re.match(r"#\d+\s+(\S+)", line)
            if m and folder is not None:
                paths.append(f"{folder}/{m.group(1)}")
        return sorted(paths)

    async def current(self, name: str) -> str:
        text = await self.run("get", name)
        return re.search(r"^Current: (.*)$", text, re.M).group(1)  # type: ignore[union-attr]


def _cli(action: tuple[str, ...]) -> list[str]:
    """An action of gphoto2_wheel.py as gphoto2's options."""
    verb, *args = action
    return {
        "summary": lambda: ["--summary"],
        "list": lambda: ["-R", "--list-files"],
        "get-all": lambda: ["--get-all-files"],
        "capture": lambda: (["--set-config", "capturetarget=Memory card"] if "--card" in args else [])
        + ["--capture-image-and-download", "--force-overwrite"] + (["--keep"] if "--keep" in args else []),
        "preview": lambda: ["--capture-preview", "--force-overwrite"],
        "movie": lambda: [f"--capture-movie={args[0]}", "--force-overwrite"],
        "preview-set": lambda: ["--filename", "p%n.jpg", "--force-overwrite", "--capture-preview",
                                "--set-config", f"{args[1]}={args[2]}", *["--capture-preview"] * int(args[3])],
        "list-config": lambda: ["--list-config"],
        "get": lambda: ["--get-config", args[0]],
        "set": lambda: ["--set-config", f"{args[0]}={args[1]}"],
        "wait": lambda: [f"--wait-event={args[0]}s"],
    }[verb]()


@pytest_twisted.async_yield_fixture(params=[(p, k) for p in PROFILES for k in PEERS],
                                    ids=lambda pk: f"{pk[0]}-{pk[1]}")
async def vendor(request: Any, reactor: Any, tmp_path: Any) -> Any:
    name, kind = request.param
    root = str(tmp_path / "card")
    os.makedirs(root)
    files = make_tree(root)
    # A picture over 1 MiB: both peers fetch it in GetPartialObject pieces.
    data = open(os.path.join(root, "DCIM", "100TEST", "IMG_0001.JPG"), "rb").read() + os.urandom(1536 * 1024)
    with open(os.path.join(root, "DCIM", "100TEST", "BIG_0001.JPG"), "wb") as f:
        f.write(data)
    files["DCIM/100TEST/BIG_0001.JPG"] = data
    capture = RecordingCapture()
    if name == "fuji":
        r: Any = await start_fuji(reactor, root, capture)
        # Fuji's own PTP/IP: the event channel is the next port; the card is shown flat.
        r.files = {os.path.basename(n): d for n, d in files.items()}
        event_port = r.event_port
    else:
        r = await start_responder(reactor, root, profile=get_profile(name), capture=capture, scan_interval=None)
        r.files = files
        event_port = None
    home = str(tmp_path / "home")
    os.makedirs(home)
    r.profile = r.camera.profile
    r.capture = capture
    r.peer = Peer(kind, reactor, r.profile.gphoto2_model, r.port, home, event_port)
    yield r
    if name == "fuji":
        await stop_fuji(r)
    else:
        await stop_responder(r)


def _seen(vendor: Any, *codes: int) -> None:
    seen = vendor.camera.operations_seen
    missing = [f"0x{c:04X}" for c in codes if not seen[c]]
    assert not missing, f"the {vendor.profile.name} path was not taken: {missing} never asked for"


def _debug_shows(vendor: Any, *codes: int) -> None:
    """Debian's gphoto2 --debug log names the vendor operations it sent."""
    if vendor.peer.kind != "debian":
        return
    log = open(vendor.peer.debug_log, encoding="utf-8", errors="replace").read()
    for code in codes:
        assert f"Sending PTP_OC 0x{code:04x}" in log, f"0x{code:04x} not in gphoto2's debug log"


@pytest_twisted.ensureDeferred
async def test_summary_names_the_vendor_and_model(vendor):
    out = await vendor.peer.run("summary", debug=True)
    assert f"Manufacturer: {vendor.profile.manufacturer}" in out
    assert f"Model: {vendor.profile.model}" in out
    assert f"Vendor Extension ID: 0x{vendor.profile.vendor_extension_id:x}" in out
    if vendor.profile.name == "nikon":
        assert "Nikon Exposure Time(0xd100)" in out or "d100" in out     # from GetVendorPropCodes
        _seen(vendor, NikonOp.GetVendorPropCodes)
        _debug_shows(vendor, NikonOp.GetVendorPropCodes)
    elif vendor.profile.name == "fuji":
        # Fuji's init: InitSequence 0xDF01 = 5, AppVersion 0xDF24 read and written back,
        # InitiateOpenCapture; then PriorityMode 0xD207 = 2 (the PC).
        props = vendor.camera.properties
        assert props.get(fuji_device.INIT_SEQUENCE) == 5
        _seen(vendor, 0x101C, 0x1015, 0x1016)
        _debug_shows(vendor, 0x101C)
    else:
        assert "Canon EOS Capture" in out
        _seen(vendor, CanonOp.SetRemoteMode, CanonOp.GetObjectInfoEx)
        _debug_shows(vendor, CanonOp.SetRemoteMode, CanonOp.GetObjectInfoEx)


@pytest_twisted.ensureDeferred
async def test_list_and_download_every_file_byte_identical(vendor, tmp_path):
    listed = await vendor.peer.files()
    assert listed == sorted(f"/store_00010001/{name}" for name in vendor.files)
    dest = tmp_path / "download"
    dest.mkdir()
    await vendor.peer.run("get-all", str(dest), cwd=str(dest))
    for name, data in vendor.files.items():
        got = (dest / os.path.basename(name)).read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), name
    if vendor.profile.name.startswith("canon"):
        _seen(vendor, CanonOp.GetObjectInfoEx)     # the EOS listing, not GetObjectHandles
        assert vendor.camera.operations_seen[0x1007] == 0


def _card(root: str) -> dict[str, bytes]:
    out = {}
    for folder, _, names in os.walk(root):
        for n in names:
            path = os.path.join(folder, n)
            out[os.path.relpath(path, root)] = open(path, "rb").read()
    return out


@pytest_twisted.ensureDeferred
async def test_capture_downloads_the_picture_the_camera_made(vendor, tmp_path):
    """The default target ("Internal RAM"): the picture is held in the camera, fetched and
    freed; the card is untouched."""
    dest = tmp_path / "shot"
    dest.mkdir()
    before = _card(vendor.root)
    out = await vendor.peer.run("capture", str(dest), cwd=str(dest), debug=True)
    name = vendor.profile.name
    # A Fuji writes to its card (gphoto2 downloads and deletes the picture); the others
    # hold it for the host.
    saved = "CAP_0001.JPG" if name == "fuji" else "capt0000.jpg"
    where = "/store_00010001/CAP_0001.JPG" if name == "fuji" else "/capt0000.jpg"
    assert f"New file is in location {where}" in out, out
    assert len(vendor.capture.made) == 1
    assert (dest / saved).read_bytes() == vendor.capture.made[0]
    assert _card(vendor.root) == before
    if name == "fuji":
        # focus (CameraAction 0x0200 + InitiateCapture), then the shot (0x0304 + InitiateCapture)
        codes = [0x100E, 0x1015, 0x100B]
        assert vendor.camera.operations_seen[0x100E] == 2
        assert vendor.camera.properties.get(fuji_device.CAMERA_ACTION) == fuji_device.ACTION_SHOOT
    elif name == "nikon":
        codes = [NikonOp.InitiateCaptureRecInSdram, NikonOp.DeviceReady, NikonOp.GetEvent]
        assert vendor.camera.operations_seen[NikonOp.DeviceReady] >= 2       # busy, then ready
    elif name == "canon-eos":
        codes = [CanonOp.RemoteReleaseOn, CanonOp.RemoteReleaseOff, CanonOp.GetEvent,
                 CanonOp.TransferComplete]
    else:
        codes = [CanonOp.RemoteRelease, CanonOp.GetEvent, CanonOp.TransferComplete]
    _seen(vendor, *codes)
    _debug_shows(vendor, *codes)
    # The picture held in the camera was freed by the peer itself, not by the session ending.
    if name in ("nikon", "fuji"):
        assert vendor.camera.operations_seen[0x100B] == 1            # DeleteObject(0xFFFF0001)
    else:
        assert vendor.camera.operations_seen[CanonOp.TransferComplete] == 1


@pytest_twisted.ensureDeferred
async def test_capture_to_the_card_lands_there_and_is_kept(vendor, tmp_path):
    dest = tmp_path / "shot"
    dest.mkdir()
    name = vendor.profile.name
    if name.startswith("canon"):
        # The EOS starts out capturing for the host: gphoto2 must switch it to the card.
        vendor.camera.properties.set(CanonEOSProp.CaptureDestination, 4)
    # A Fuji always captures to its card (and shows it flat).
    out = await vendor.peer.run("capture", str(dest), *([] if name == "fuji" else ["--card"]), "--keep",
                                cwd=str(dest))
    folder = {"nikon": "100NIKON", "fuji": "100_FUJI"}.get(name, "100CANON")
    shown = "" if name == "fuji" else f"/DCIM/{folder}"
    m = re.search(rf"New file is in location /store_00010001{shown}/(\S+) on the camera", out)
    assert m, out
    picture = vendor.capture.made[0]
    assert (dest / m.group(1)).read_bytes() == picture
    assert open(os.path.join(vendor.root, "DCIM", folder, m.group(1)), "rb").read() == picture
    if name.startswith("canon"):
        assert vendor.camera.properties.get(CanonEOSProp.CaptureDestination) == 1


CONFIG = {
    # name: (value set, value read back, property code, value on the camera)
    "canon-eos": [("aperture", "8", "8", CanonEOSProp.Aperture, 0x38),
                  ("shutterspeed", "1/125", "1/125", CanonEOSProp.ShutterSpeed, 0x70),
                  ("iso", "400", "400", CanonEOSProp.ISOSpeed, 0x58)],
    "nikon": [("f-number", "f/8", "f/8", 0x5007, 800),
              ("shutterspeed", "1/250", "0.0040s", 0x500D, 40),
              ("iso", "400", "400", 0x500F, 400),
              ("shutterspeed2", "1/125", "1/125", 0xD100, (1 << 16) | 125)],
}
CONFIG["canon-eos-classic"] = CONFIG["canon-eos"]
CONFIG["fuji"] = [("aperture", "8", "8", fuji_device.APERTURE, 36),
                  ("shutterspeed", "1/125", "1/125", 0x500D, 7812),
                  ("iso", "400", "400", 0x500F, 400),
                  ("f-number", "f/8", "f/8", 0x5007, 800)]


@pytest_twisted.ensureDeferred
async def test_config_lists_sets_and_reads_back_the_vendor_settings(vendor):
    listed = await vendor.peer.run("list-config")
    for name, value, shown, code, raw in CONFIG[vendor.profile.name]:
        assert re.search(rf"^/main/\w+/{re.escape(name)}$", listed, re.M), f"{name} not in the config"
        await vendor.peer.run("set", name, value)
        assert vendor.camera.properties.get(code) == raw, name
        assert await vendor.peer.current(name) == shown
    if vendor.profile.name in ("nikon", "fuji"):
        _seen(vendor, 0x1014, 0x1016)
    else:
        _seen(vendor, CanonOp.SetDevicePropValueEx, CanonOp.GetEvent)


@pytest_twisted.ensureDeferred
async def test_wait_event_sees_a_property_change_and_a_new_file(vendor, reactor):
    cam = vendor.camera
    nikon = vendor.profile.name in ("nikon", "fuji")       # both use f-number 0x5007
    src = os.path.join(vendor.root, "DCIM", "100TEST", "IMG_0002.JPG")

    def turn_the_dial() -> None:
        cam.properties.setInternal(0x5007 if nikon else CanonEOSProp.Aperture, 1100 if nikon else 0x40)
        shutil.copy(src, os.path.join(vendor.root, "DCIM", "100TEST", "NEW_0001.JPG"))
        cam.store.scan()
    call = reactor.callLater(2.0, turn_the_dial)
    try:
        out = await vendor.peer.run("wait", "6", debug=True)
    finally:
        if call.active():
            call.cancel()
    prop = r"(0000)?5007 changed, \"f-number\" to \"f/11\"" if nikon else r"(0000)?d101 changed, \"aperture\" to \"11\""
    assert re.search(rf"PTP Property {prop}", out), out
    folder = "" if vendor.profile.name == "fuji" else "/DCIM/100TEST"
    assert f"FILEADDED NEW_0001.JPG /store_00010001{folder}\n" in out + "\n", out
    assert out.count("FILEADDED NEW_0001.JPG") == 1, out                # once, not twice
    code = {"nikon": NikonOp.GetEvent, "fuji": 0x1007}.get(vendor.profile.name, CanonOp.GetEvent)
    _seen(vendor, code)
    _debug_shows(vendor, code)


@pytest_twisted.ensureDeferred
async def test_generic_profile_is_the_default(reactor, tmp_path):
    root = str(tmp_path / "card")
    os.makedirs(root)
    r = await start_responder(reactor, root)
    try:
        info = r.camera.deviceInfo()
        assert (info.manufacturer, info.model, info.vendor_extension_id) == ("Twisted PTP-IP", "Virtual Camera", 0)
    finally:
        await stop_responder(r)


@pytest_twisted.ensureDeferred
async def test_capture_preview_shows_the_viewfinder(vendor, tmp_path):
    """``--capture-preview`` takes the vendor's live view path and saves a frame of the
    camera's viewfinder; a second one a second later is another picture."""
    dest = tmp_path / "preview"
    dest.mkdir()
    drawn = vendor.camera.live_view.count
    await vendor.peer.run("preview", str(dest), cwd=str(dest), debug=True)
    first = _frame(dest / "capture_preview.jpg")
    assert vendor.camera.live_view.count > drawn
    name = vendor.profile.name
    if name.startswith("canon"):
        # A frame comes only with the viewfinder sent to the PC (0xD1B0 = 2, set by gphoto2
        # with 0x9110); TerminateViewfinder at exit gives it back.
        codes = [CanonOp.SetDevicePropValueEx, CanonOp.GetViewFinderData, CanonOp.TerminateViewfinder]
        assert vendor.camera.properties.get(CanonEOSProp.EVFOutputDevice) == 0
    elif name == "nikon":
        codes = [NikonOp.StartLiveView, NikonOp.GetLiveViewImg]
    else:
        codes = []                                   # Fuji: frames on its live view port
    _seen(vendor, *codes)
    _debug_shows(vendor, *codes)
    await task.deferLater(vendor.peer.reactor, 1.0, lambda: None)
    await vendor.peer.run("preview", str(dest), cwd=str(dest))
    second = _frame(dest / "capture_preview.jpg")
    assert second.data != first.data and int(second.facts["n"]) > int(first.facts["n"])


@pytest_twisted.ensureDeferred
async def test_capture_movie_streams_live_view_at_ten_frames_a_second(vendor, tmp_path):
    """``gphoto2 --capture-movie=3s --stdout | ffprobe -f mjpeg -`` counts at least 30
    frames (the wheel: its previews back to back for 3 s, as capture-movie does)."""
    drawn = vendor.camera.live_view.count
    frames = await vendor.peer.movie_frames(3)
    assert frames >= 30, f"{frames} frames in 3 s"
    assert vendor.camera.live_view.count - drawn >= 30          # each one drawn afresh


#: A setting each profile has, as gphoto2 names it, and a value that is one stop brighter.
BRIGHTER = ("exposurecompensation", "1")
#: Previews taken after the change.
AFTER = 6


async def _preview_set(peer: Peer, dest: Any) -> list[Frame]:
    """Live view, ``--set-config exposurecompensation=1``, live view again, in one gphoto2
    session: the frames, first to last."""
    await peer.run("preview-set", str(dest), *BRIGHTER, str(AFTER), cwd=str(dest))
    prefix = "thumb_" if peer.kind == "debian" else ""
    return [_frame(dest / f"{prefix}p{n}.jpg") for n in range(1, 2 + AFTER)]


@pytest_twisted.ensureDeferred
async def test_set_config_during_live_view_shows_in_the_next_frame(vendor, tmp_path):
    """A setting changed during live view shows in the next frame: a stop brighter, and
    +1.0 drawn on it. A Fuji pushes its frames on a socket of their own, so the few
    already in the socket buffers come first; every frame after the change shows it."""
    frames = await _preview_set(vendor.peer, tmp_path)
    evs = [f.facts["ev"] for f in frames]
    assert evs[0] == "+0.0", evs
    shown = evs.index("+1.0") if "+1.0" in evs else len(evs)
    assert shown == 1 or (vendor.profile.name == "fuji" and shown <= AFTER), evs
    assert all(ev == "+1.0" for ev in evs[shown:]), evs
    assert frames[shown].brightness > frames[0].brightness * 1.2, (frames[0].brightness, frames[shown].brightness)


@dataclass
class Frame:
    data: bytes
    #: What the test card says it shows (its ``ptpip-live`` comment).
    facts: dict[str, str]
    brightness: float


def _frame(path: Any) -> Frame:
    """A saved live view frame, decoded by Pillow (640 x 480 JPEG)."""
    from PIL import Image, ImageStat
    data = open(path, "rb").read()
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.size) == ("JPEG", (640, 480))
        brightness = ImageStat.Stat(im.convert("L")).mean[0]
    return Frame(data, parse_comment(data), brightness)


@pytest_twisted.async_yield_fixture(params=PEERS)
async def generic(request: Any, reactor: Any, tmp_path: Any) -> Any:
    root = str(tmp_path / "card")
    os.makedirs(root)
    make_tree(root)
    r = await start_responder(reactor, root, scan_interval=None)
    home = str(tmp_path / "home")
    os.makedirs(home)
    r.peer = Peer(request.param, reactor, "PTP/IP Camera", r.port, home)
    yield r
    await stop_responder(r)


@pytest_twisted.ensureDeferred
async def test_generic_camera_preview_is_a_ptp11_stream(generic, tmp_path):
    """The standard camera's live view: libgphoto2 reads SupportedStreams 0x5020, enables
    video in EnabledStreams 0x5021, asks GetStreamInfo 0x1024 and GetStream 0x1025; the
    frame Pillow decodes, and a setting changed between frames shows in the next one.
    (libgphoto2 gives this path no MIME type: the file has no suffix, and
    ``--capture-movie`` stops after one frame, for any camera that takes it.)"""
    dest = tmp_path / "preview"
    dest.mkdir()
    await generic.peer.run("preview", str(dest), cwd=str(dest), debug=True)
    first = _frame(dest / ("capture_preview" if generic.peer.kind == "debian" else "capture_preview.jpg"))
    seen = generic.camera.operations_seen
    for code in (Op.GetStreamInfo, Op.GetStream, Op.GetDevicePropValue, Op.SetDevicePropValue):
        assert seen[code], f"0x{code:04X} never asked for"
    assert generic.camera.properties.get(DevicePropCode.EnabledStreams) == 1
    (tmp_path / "live").mkdir()
    before, after, *_ = await _preview_set(generic.peer, tmp_path / "live")
    assert int(before.facts["n"]) > int(first.facts["n"])
    assert (before.facts["ExposureBias"], after.facts["ExposureBias"]) == ("+0.0", "+1.0")
    assert after.brightness > before.brightness * 1.2
