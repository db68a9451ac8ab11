"""Live view frames: what a camera's viewfinder shows, as JPEGs for the live view paths.

Three sources, all :class:`~ptpip.interfaces.ILiveViewSource`:

- :class:`TestCardLiveView` (the default) draws a moving test card in a thread: a clock,
  a frame counter, a sweeping bar and the camera's current settings, so a frame shows it
  is live and that a setting took effect. Exposure compensation brightens or darkens the
  picture (a stop doubles it) and digital zoom enlarges its centre. The same facts are in
  a JPEG comment (``COM``) for programs: ``ptpip-live n=12 ev=+1.0 zoom=1.0 FNumber=5.6 ...``.
- :class:`FolderLiveView` shows the pictures of a folder in turn, at a rate.
- :class:`FfmpegLiveView` decodes a video file (looped) or a V4L2 device with ffmpeg
  in a subprocess, which runs only while somebody watches.

A frame is a plain baseline JFIF with no EXIF thumbnail: libgphoto2 finds a Nikon or Fuji
frame by its first ``FF D8`` and the first ``FF D9`` after it. The newest frame wins:
nothing queues up behind a slow viewer.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, error, protocol, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import ILiveViewSource
from ..wire.constants import DevicePropCode
from ..wire.vendor import CanonEOSProp, NikonProp
from .capture import card_image

#: The largest frame a source keeps (bytes); a bigger one is dropped.
MAX_FRAME = 4 << 20
#: Seconds a failed ffmpeg is not started again (its error is the answer meanwhile).
RESTART_AFTER = 1.0
#: Seconds ffmpeg has to end after SIGTERM before SIGKILL.
KILL_AFTER = 3.0
#: Image files a folder source shows.
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ViewSettings:
    """What the test card shows of the camera's settings."""

    lines: tuple[tuple[str, str], ...] = ()
    #: Exposure compensation in stops: the card is 2**ev times as bright.
    ev: float = 0.0
    #: Digital zoom: the centre 1/zoom of the card fills the frame.
    zoom: float = 1.0

    def comment(self, n: int) -> str:
        words = [f"n={n}", f"ev={self.ev:+.1f}", f"zoom={self.zoom:.1f}"]
        words += [f"{name}={value.replace(' ', '_')}" for name, value in self.lines]
        return "ptpip-live " + " ".join(words)


def parse_comment(jpeg: bytes) -> dict[str, str]:
    """The ``key=value`` words of a test card frame's ``ptpip-live`` comment ({} if none)."""
    at = jpeg.find(b"ptpip-live ", 0, 1 << 16) - 4
    if at < 0 or jpeg[at:at + 2] != b"\xff\xfe":
        return {}
    (length,) = struct.unpack_from(">H", jpeg, at + 2)
    text = jpeg[at + 4:at + 2 + length].decode("ascii", "replace")
    return dict(w.split("=", 1) for w in text.split()[1:] if "=" in w)


def _with_comment(jpeg: bytes, text: str) -> bytes:
    body = text.encode("ascii", "replace")[:60000]
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def draw_live_frame(width: int, height: int, n: int, settings: ViewSettings | None = None) -> bytes:
    """One test card frame (Pillow; called in a thread)."""
    from PIL import ImageDraw, ImageEnhance, ImageFont
    s = settings or ViewSettings()
    im = card_image(width, height, stamp=f"LIVE {n:05d}  {time.strftime('%H:%M:%S')}", counter=n)
    if s.zoom > 1.0:
        w, h = int(width / s.zoom), int(height / s.zoom)
        left, top = (width - w) // 2, (height - h) // 2
        im = im.crop((left, top, left + w, top + h)).resize((width, height))
    if s.ev:
        im = ImageEnhance.Brightness(im).enhance(2.0 ** max(-4.0, min(4.0, s.ev)))
    d = ImageDraw.Draw(im)
    x = (n * max(4, width // 40)) % width
    d.rectangle([x, 0, x + max(4, width // 64), height // 12], fill=(255, 64, 0))
    size = max(10, height // 28)
    try:
        font: Any = ImageFont.load_default(size=size)
    except TypeError:                           # Pillow < 10.1
        font = ImageFont.load_default()
    y = height // 12 + 4
    shown = [*s.lines, ("EV", f"{s.ev:+.1f}"), ("Zoom", f"{s.zoom:.1f}x")]
    for name, value in shown:
        d.text((width // 40 + 1, y + 1), f"{name} {value}", fill=(0, 0, 0), font=font)
        d.text((width // 40, y), f"{name} {value}", fill=(255, 255, 255), font=font)
        y += size + 3
    out = io.BytesIO()
    im.save(out, "JPEG", quality=70)
    return _with_comment(out.getvalue(), s.comment(n))


# -- what the card shows of a camera ------------------------------------------------------

#: Settings drawn on the card, in order: (vendor or None, code, label, how to show the value).
_SHOWN: tuple[tuple[str | None, int, str, Callable[[Any], str]], ...] = (
    (None, DevicePropCode.FNumber, "FNumber", lambda v: f"{v / 100:.1f}"),
    ("canon", CanonEOSProp.Aperture, "Aperture", lambda v: f"0x{v:02X}"),
    (None, DevicePropCode.ExposureTime, "ExposureTime", lambda v: f"{v / 10000:g}s"),
    ("canon", CanonEOSProp.ShutterSpeed, "ShutterSpeed", lambda v: f"0x{v:02X}"),
    ("nikon", NikonProp.ExposureTime, "NikonExposureTime", lambda v: f"{v >> 16}/{v & 0xFFFF}"),
    (None, DevicePropCode.ExposureIndex, "ISO", str),
    ("canon", CanonEOSProp.ISOSpeed, "ISOSpeed", lambda v: f"0x{v:02X}"),
    (None, DevicePropCode.ExposureBiasCompensation, "ExposureBias", lambda v: f"{v / 1000:+.1f}"),
    ("canon", CanonEOSProp.ExpCompensation, "ExpCompensation", lambda v: f"{_eos_ev(v):+.1f}"),
    (None, DevicePropCode.WhiteBalance, "WhiteBalance", str),
    (None, DevicePropCode.DigitalZoom, "DigitalZoom", lambda v: f"{v / 10:.1f}"),
)


def _eos_ev(raw: int) -> float:
    """A Canon EOS ExpCompensation byte (signed eighths of a stop, thirds rounded) in stops."""
    signed = raw - 256 if raw & 0x80 else raw
    whole, rest = divmod(abs(signed), 8)
    third = {0: 0.0, 3: 1 / 3, 4: 0.5, 5: 2 / 3}.get(rest, rest / 8)
    return (whole + third) * (1 if signed >= 0 else -1)


def camera_settings(camera: Any) -> ViewSettings:
    """What the test card of *camera* shows now (read on the reactor thread)."""
    props = camera.properties
    have = set(props.supported())
    profile = getattr(getattr(camera, "profile", None), "name", "") or ""
    lines, ev, zoom = [], 0.0, 1.0
    for vendor, code, label, show in _SHOWN:
        if code not in have or (vendor is not None and not profile.startswith(vendor)):
            continue
        try:
            value = props.get(code)
            lines.append((label, show(value)))
        except Exception:                       # a property that cannot be read is left out
            continue
        if code == DevicePropCode.ExposureBiasCompensation:
            ev = value / 1000
        elif code == CanonEOSProp.ExpCompensation and vendor:
            ev = _eos_ev(value)
        elif code == DevicePropCode.DigitalZoom:
            zoom = max(1.0, value / 10)
    return ViewSettings(tuple(lines), ev, zoom)


class _Shared:
    """One job per key at a time: callers asking for a key meanwhile get that job's result."""

    def __init__(self) -> None:
        self._jobs: dict[Any, list[defer.Deferred[bytes]]] = {}

    def join(self, key: Any, start: Callable[[], defer.Deferred[bytes]]) -> defer.Deferred[bytes]:
        d: defer.Deferred[bytes] = defer.Deferred()
        waiting = self._jobs.get(key)
        if waiting is not None:
            waiting.append(d)
            return d
        self._jobs[key] = [d]
        start().addBoth(self._done, key)
        return d

    def _done(self, result: Any, key: Any) -> None:
        for d in self._jobs.pop(key, []):
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


@implementer(ILiveViewSource)
class TestCardLiveView:
    """A moving test card drawn in a thread; *settings* (called on the reactor thread for
    each frame) says what the camera's settings are now, so the frame shows them."""

    __test__ = False      # not a pytest test class

    def __init__(self, width: int = 640, height: int = 480,
                 settings: Callable[[], ViewSettings] | None = None) -> None:
        self._drawing = _Shared()
        self.width = width
        self.height = height
        self.settings = settings
        self.count = 0

    def frame(self) -> defer.Deferred[bytes]:
        def start() -> defer.Deferred[bytes]:
            self.count += 1
            now = self.settings() if self.settings is not None else ViewSettings()
            return threads.deferToThread(draw_live_frame, self.width, self.height, self.count, now)
        return self._drawing.join(None, start)


def _as_jpeg(path: str, width: int, height: int) -> bytes:
    """A picture file as a baseline JFIF of at most *width* × *height* (in a thread)."""
    from PIL import Image
    with Image.open(path) as f:
        im = f.convert("RGB")
    im.thumbnail((width, height))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=80)
    return out.getvalue()


@implementer(ILiveViewSource)
class FolderLiveView:
    """The pictures of *folder* (any format Pillow reads), in name order, each shown for
    1/*rate* seconds, cycling; re-encoded in a thread as plain JPEGs of at most
    *width* × *height*, one conversion per picture at a time (callers asking meanwhile
    wait for that picture's). A folder that is empty or gone fails the frame."""

    def __init__(self, reactor: Any, folder: str, rate: float = 2.0, width: int = 640,
                 height: int = 480) -> None:
        self.reactor = reactor
        self.folder = folder
        self.rate = rate
        self.width, self.height = width, height
        self.count = 0
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._converting = _Shared()
        self._started: float | None = None

    def _names(self) -> list[str]:
        try:
            names = os.listdir(self.folder)
        except OSError as e:
            raise OSError(f"live view folder {self.folder}: {e.strerror}") from None
        return sorted(n for n in names if n.lower().endswith(PICTURE_SUFFIXES) and not n.startswith("."))

    def frame(self) -> defer.Deferred[bytes]:
        try:
            names = self._names()
        except OSError as e:
            return defer.fail(e)
        if not names:
            return defer.fail(OSError(f"no pictures in the live view folder {self.folder}"))
        now = self.reactor.seconds()
        if self._started is None:
            self._started = now
        path = os.path.join(self.folder, names[int((now - self._started) * self.rate) % len(names)])
        try:
            mtime = os.stat(path).st_mtime
        except OSError as e:
            return defer.fail(e)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == mtime:
            return defer.succeed(self._delivered(cached[1]))

        def start() -> defer.Deferred[bytes]:
            def keep(jpeg: bytes) -> bytes:
                if len(self._cache) > 64:
                    self._cache.clear()
                self._cache[path] = (mtime, jpeg)
                return jpeg
            return threads.deferToThread(_as_jpeg, path, self.width, self.height).addCallback(keep)
        return self._converting.join(path, start).addCallback(self._delivered)

    def _delivered(self, jpeg: bytes) -> bytes:
        self.count += 1
        return jpeg


class JPEGSplitter:
    """Cuts a stream of concatenated JPEGs (ffmpeg's ``-f mjpeg``) into frames; keeps at
    most :data:`MAX_FRAME` bytes of an unfinished one."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        frames: list[bytes] = []
        while True:
            start = self.buffer.find(b"\xff\xd8")
            if start < 0:
                self.buffer = self.buffer[-1:]
                return frames
            end = self.buffer.find(b"\xff\xd9", start + 2)
            if end < 0:
                self.buffer = self.buffer[start:]
                if len(self.buffer) > MAX_FRAME:
                    self.buffer = b""
                return frames
            frames.append(self.buffer[start:end + 2])
            self.buffer = self.buffer[end + 2:]


class _FfmpegFrames(protocol.ProcessProtocol):
    def __init__(self, source: FfmpegLiveView) -> None:
        self.source = source
        self.splitter = JPEGSplitter()
        self.stderr = b""

    def outReceived(self, data: bytes) -> None:
        for jpeg in self.splitter.feed(data):
            self.source._got(jpeg)

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-2000:]

    def processEnded(self, reason: Failure) -> None:
        self.source._ended(self, self.stderr.decode("utf-8", "replace").strip())


@implementer(ILiveViewSource)
class FfmpegLiveView:
    """Frames decoded by ffmpeg from *input_args* (a looped video file, a V4L2 device), at
    *rate* frames a second, scaled to *width* pixels wide. ffmpeg starts at the first
    frame asked for and stops after *idle* seconds without one; the newest frame wins."""

    log = Logger()

    def __init__(self, reactor: Any, input_args: list[str], *, rate: float = 15.0, width: int = 640,
                 idle: float = 5.0, executable: str | None = None, description: str = "ffmpeg") -> None:
        self.reactor = reactor
        self.input_args = input_args
        self.rate = rate
        self.width = width
        self.idle = idle
        self.executable = executable or shutil.which("ffmpeg")
        self.description = description
        self.count = 0
        self.latest: bytes | None = None
        self.process: Any = None
        self._proto: _FfmpegFrames | None = None
        self._waiting: list[defer.Deferred[bytes]] = []
        self._idle_call: Any = None
        self.failure: str | None = None
        self._failed_at = 0.0

    @classmethod
    def from_file(cls, reactor: Any, path: str, **kwargs: Any) -> FfmpegLiveView:
        return cls(reactor, ["-re", "-stream_loop", "-1", "-i", path], description=path, **kwargs)

    @classmethod
    def from_v4l2(cls, reactor: Any, device: str, **kwargs: Any) -> FfmpegLiveView:
        return cls(reactor, ["-f", "v4l2", "-i", device], description=device, **kwargs)

    def argv(self) -> list[str]:
        return [self.executable or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
                *self.input_args, "-an", "-vf", f"fps={self.rate:g},scale={self.width}:-2",
                "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-huffman", "default", "-q:v", "5", "-f", "mjpeg", "pipe:1"]

    def frame(self) -> defer.Deferred[bytes]:
        self._touch()
        if self.process is None:
            if not self.executable:
                return defer.fail(OSError("live view needs ffmpeg, which is not installed"))
            if self.failure and self.reactor.seconds() - self._failed_at < RESTART_AFTER:
                # ffmpeg just failed: say why again rather than start it again at once.
                return defer.fail(OSError(f"live view from {self.description}: {self.failure[-300:]}"))
            self.latest, self.failure = None, None
            self._proto = _FfmpegFrames(self)
            argv = self.argv()
            self.process = self.reactor.spawnProcess(self._proto, argv[0], argv, env=os.environ.copy())
        if self.latest is not None:
            self.count += 1
            return defer.succeed(self.latest)
        d: defer.Deferred[bytes] = defer.Deferred()
        self._waiting.append(d)
        return d

    def _touch(self) -> None:
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self.idle)
        else:
            self._idle_call = self.reactor.callLater(self.idle, self.stop)

    def _got(self, jpeg: bytes) -> None:
        if len(jpeg) > MAX_FRAME:
            return
        self.latest = jpeg
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            self.count += 1
            d.callback(jpeg)

    def _ended(self, proto: _FfmpegFrames, stderr: str) -> None:
        if proto is not self._proto:
            return
        self.process = self._proto = None
        self.latest = None
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self.failure = stderr or "ffmpeg ended"
        self._failed_at = self.reactor.seconds()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(OSError(f"live view from {self.description}: {self.failure[-300:]}"))

    def stop(self) -> None:
        """Stop ffmpeg (a fresh one starts at the next frame asked for); SIGKILL follows
        SIGTERM after a few seconds for one that hangs."""
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        process, self.process, self._proto, self.latest = self.process, None, None, None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(OSError(f"live view from {self.description} was stopped"))
        if process is not None:
            try:
                process.signalProcess(signal.SIGTERM)
            except error.ProcessExitedAlready:
                return
            self.reactor.callLater(KILL_AFTER, _kill, process)


def _kill(process: Any) -> None:
    try:
        process.signalProcess(signal.SIGKILL)
    except error.ProcessExitedAlready:
        pass


def live_view_source(reactor: Any, spec: str, camera: Any = None) -> ILiveViewSource | None:
    """The source named by ``--live-view``: ``testcard`` (the default), ``none``, a folder of
    pictures, a video file (``file:PATH`` or just its path) or ``v4l2:/dev/videoN``."""
    if spec in ("", "testcard"):
        settings = (lambda: camera_settings(camera)) if camera is not None else None
        return TestCardLiveView(settings=settings)
    if spec == "none":
        return None
    if spec.startswith("v4l2:"):
        return FfmpegLiveView.from_v4l2(reactor, spec[5:])
    path = spec[5:] if spec.startswith("file:") else spec
    if os.path.isdir(path):
        return FolderLiveView(reactor, path)
    return FfmpegLiveView.from_file(reactor, path)


def check_live_view_spec(spec: str) -> str | None:
    """Why *spec* cannot be a live view source (for a usage error), or None."""
    if spec in ("", "testcard", "none"):
        return None
    if spec.startswith("v4l2:"):
        device = spec[5:]
        if not device.startswith("/dev/") or not os.path.exists(device):
            return f"no V4L2 device {device!r}"
    else:
        path = spec[5:] if spec.startswith("file:") else spec
        if not os.path.exists(path):
            return f"{path}: no such folder or video file"
        if os.path.isdir(path):
            return None
    if not shutil.which("ffmpeg"):
        return "a video file or V4L2 device needs ffmpeg, which is not installed"
    return None
