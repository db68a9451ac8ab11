"""Virtual devices behind the CCCP interfaces: a file store rooted at a folder,
a pan/tilt/zoom camera, and a tape deck whose position moves in real time."""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from twisted.internet import defer
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from zope.interface import implementer

from .commands import CAMERA_CONTROLS, Number
from .errors import FileUnavailable, NotImplementedHere, RemoteProtocolError, SyntaxErrorInArguments
from .interfaces import ICamera, IMediaSource, IMediaStore, IRecording, ITapeDeck

RECORDING_PREFIX = ".cccp-recording-"


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: float
    mode: int = 0o644


class _BigFileSender(FileSender):
    CHUNK_SIZE = 1 << 18


@implementer(IMediaSource)
class FileMediaSource:
    """A stored file sent as fast as the connection takes it (a pull producer)."""

    def __init__(self, path: str, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.length = max(0, os.path.getsize(path) - offset)
        self._sender: FileSender | None = None
        self._file: IO[bytes] | None = None
        self._pump: Any = None

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        f = self._file = open(self.path, "rb")
        transport = getattr(consumer, "transport", None)
        if transport is not None:
            # The consumer stands for a TCP transport: let the kernel send the file.
            from .data import SendfileSender
            pump = SendfileSender.attempt(transport, f.fileno(), self.offset, self.length)
            if pump is not None:
                self._pump = pump
                consumer.count_from(pump)

                def close_file(result: Any) -> Any:
                    f.close()
                    return result if isinstance(result, Failure) else None
                return pump.start().addBoth(close_file)
        f.seek(self.offset)
        self._sender = _BigFileSender()
        d = self._sender.beginFileTransfer(f, consumer)

        def closed(result: Any) -> Any:
            f.close()
            return result if isinstance(result, Failure) else None
        return d.addBoth(closed)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        if self._sender is not None:
            self._sender.resumeProducing()

    def stopProducing(self) -> None:
        if self._pump is not None:
            self._pump.stopProducing()
        if self._sender is not None and self._sender.deferred is not None:
            self._sender.stopProducing()


@implementer(IRecording)
class FileRecording:
    """Writes into a hidden temporary file beside the target; renames on commit."""

    def __init__(self, target: str) -> None:
        self.target = target
        directory, name = os.path.split(target)
        self.tmp = os.path.join(directory, f"{RECORDING_PREFIX}{os.getpid()}-{id(self):x}-{name}")
        self._file: IO[bytes] | None = open(self.tmp, "xb")
        self.written = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise RemoteProtocolError("the recording was aborted", 451)
        self._file.write(data)
        self.written += len(data)

    def commit(self) -> None:
        if self._file is None:
            raise RemoteProtocolError("the recording was aborted", 451)
        f, self._file = self._file, None
        with f:                               # closed also when the disk is full
            f.flush()
            os.fsync(f.fileno())
        os.replace(self.tmp, self.target)
        # The rename itself must reach the disk too, or a crash could bring back the old file.
        try:
            fd = os.open(os.path.dirname(self.target) or ".", os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


@implementer(IMediaStore)
class FileMediaStore:
    """Media files under *root*. Paths are jailed: no ``..`` or symlink escapes."""

    def __init__(self, root: str, writable: bool = True) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"not a folder: {root}")
        self.writable = writable

    def _real(self, path: str) -> str:
        virtual = posixpath.normpath("/" + path.replace("\\", "/"))
        real = os.path.realpath(os.path.join(self.root, virtual.lstrip("/")))
        if real != self.root and not real.startswith(self.root + os.sep):
            raise FileUnavailable(f"{path}: outside the served folder")
        if os.path.basename(real).startswith(RECORDING_PREFIX):
            raise FileUnavailable(f"{path}: no such file")
        return real

    def _entry(self, real: str, name: str) -> Entry:
        st = os.stat(real)
        return Entry(name, stat.S_ISDIR(st.st_mode), st.st_size, st.st_mtime, stat.S_IMODE(st.st_mode))

    def isdir(self, path: str) -> bool:
        try:
            return os.path.isdir(self._real(path))
        except FileUnavailable:
            return False

    def stat(self, path: str) -> Entry:
        real = self._real(path)
        try:
            return self._entry(real, posixpath.basename(posixpath.normpath("/" + path)) or "/")
        except OSError:
            raise FileUnavailable(f"{path}: no such file or folder") from None

    def listdir(self, path: str) -> list[Entry]:
        real = self._real(path)
        if os.path.isfile(real):
            return [self._entry(real, os.path.basename(real))]
        try:
            names = sorted(os.listdir(real))
        except OSError:
            raise FileUnavailable(f"{path}: no such folder") from None
        out = []
        for name in names:
            if name.startswith(RECORDING_PREFIX):
                continue
            full = os.path.join(real, name)
            if os.path.islink(full) and not os.path.realpath(full).startswith(self.root + os.sep):
                continue
            try:
                out.append(self._entry(full, name))
            except OSError:
                continue
        return out

    def open(self, path: str, offset: int = 0) -> IMediaSource:
        real = self._real(path)
        if not os.path.isfile(real):
            raise FileUnavailable(f"{path}: no such file")
        return FileMediaSource(real, offset)

    def receive(self, path: str) -> IRecording:
        if not self.writable:
            raise RemoteProtocolError(f"{path}: this store is read-only", 553)
        virtual = posixpath.normpath("/" + path)
        name = posixpath.basename(virtual)
        if not name or name in (".", "..") or name.startswith(RECORDING_PREFIX):
            raise RemoteProtocolError(f"{path}: file name not allowed", 553)
        parent = self._real(posixpath.dirname(virtual))
        if not os.path.isdir(parent):
            raise RemoteProtocolError(f"{path}: no such folder", 553)
        target = os.path.join(parent, name)
        if os.path.isdir(target):
            raise RemoteProtocolError(f"{path}: is a folder", 553)
        return FileRecording(target)


# -- camera ---------------------------------------------------------------------

@dataclass
class Axis:
    minimum: Decimal
    maximum: Decimal
    step: Decimal
    value: Decimal


#: Defaults of the virtual PTZ camera: (min, max, small step, initial).
DEFAULT_AXES: dict[str, tuple[float, float, float, float]] = {
    "IRIS": (0, 100, 5, 50),         # percent open
    "SENS": (0, 100, 5, 50),         # percent gain
    "ZOOM": (1, 20, 0.5, 1),         # optical magnification
    "FOCU": (0.1, 100, 0.5, 10),     # metres
    "PAN": (-170, 170, 1, 0),        # degrees, positive: view moves right
    "TILT": (-30, 90, 1, 0),         # degrees, positive: view moves up
    "ROLL": (-180, 180, 1, 0),       # degrees, clockwise seen from behind
    "HORI": (-1000, 1000, 10, 0),    # millimetres on the rail
    "VERT": (-500, 500, 10, 0),
    "DEPT": (-1000, 1000, 10, 0),
}


@implementer(ICamera)
class VirtualCamera:
    """A pan/tilt/zoom camera with configurable ranges and steps; values clamp to the range.

    :param axes: ``{name: (min, max, step, initial)}`` for the controls it has.
    """

    def __init__(self, axes: dict[str, tuple[float, float, float, float]] | None = None) -> None:
        spec = DEFAULT_AXES if axes is None else axes
        self._axes: dict[str, Axis] = {}
        for name in CAMERA_CONTROLS:          # keep the CSTA order whatever the mapping's order
            if name in spec:
                lo, hi, step, init = (Decimal(str(v)) for v in spec[name])
                if not lo <= init <= hi or step <= 0:
                    raise ValueError(f"bad range for {name}: {spec[name]}")
                self._axes[name] = Axis(lo, hi, step, init)
        unknown = set(spec) - set(CAMERA_CONTROLS)
        if unknown:
            raise ValueError(f"unknown camera controls: {sorted(unknown)}")
        self.listeners: list[Callable[[str, Decimal], Any]] = []

    def controls(self) -> list[str]:
        return list(self._axes)

    def _axis(self, name: str) -> Axis:
        axis = self._axes.get(name)
        if axis is None:
            raise NotImplementedHere(f"{name} is not supported by this camera")
        return axis

    def status(self, name: str) -> tuple[Decimal, Decimal, Decimal]:
        a = self._axis(name)
        return a.minimum, a.value, a.maximum

    def control(self, name: str, number: Number) -> Decimal:
        a = self._axis(name)
        target = number.apply(a.value, a.step)
        a.value = min(max(target, a.minimum), a.maximum)
        for listener in list(self.listeners):
            listener(name, a.value)
        return a.value


# -- tape deck ------------------------------------------------------------------

@implementer(ITapeDeck)
class VirtualTapeDeck:
    """A tape of *length* seconds whose position moves in real time.

    While playing, recording or fast-forwarding, the position advances at the
    requested speed and stops at the requested stop position or at either end.

    :param clock: an ``IReactorTime`` (``task.Clock`` in tests).
    """

    def __init__(self, length: float = 3600.0, clock: Any = None, max_play_speed: float = 8,
                 max_ff_speed: float = 64) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.length = Decimal(str(length))
        self.max_play_speed = Decimal(str(max_play_speed))
        self.max_ff_speed = Decimal(str(max_ff_speed))
        self._op = "PAUS"
        self._pos = Decimal(0)
        self._t0 = self._now()
        self._speed = Decimal(0)
        self._stop: Decimal | None = None
        self.listeners: list[Callable[[str, Decimal], Any]] = []

    def _now(self) -> Decimal:
        return Decimal(str(self.clock.seconds()))

    def _limit(self) -> Decimal:
        if self._speed > 0:
            return min(self._stop, self.length) if self._stop is not None else self.length
        return max(self._stop, Decimal(0)) if self._stop is not None else Decimal(0)

    def _settle(self) -> None:
        if self._op == "PAUS":
            return
        now = self._now()
        pos = self._pos + self._speed * (now - self._t0)
        limit = self._limit()
        if (self._speed > 0 and pos >= limit) or (self._speed < 0 and pos <= limit):
            self._pos, self._op, self._speed, self._stop = limit, "PAUS", Decimal(0), None
            self._notify()
        else:
            self._pos = pos
        self._t0 = now

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener(self._op, self._pos)

    def commands(self) -> dict[str, tuple[Decimal, Decimal] | None]:
        return {"PLAY": (Decimal(0), self.length), "PAUS": None, "RECO": (Decimal(0), self.length),
                "FF": (Decimal(0), self.length)}

    def state(self) -> tuple[str, Decimal]:
        self._settle()
        return self._op, self._pos.quantize(Decimal("0.001"))

    def position(self) -> Decimal:
        return self.state()[1]

    def _move(self, op: str, stop: Decimal | None, speed: Decimal | None, default: Decimal,
              limit: Decimal) -> Decimal | None:
        """Start *op*; the speed used (clamped to ±*limit*), or None if it ended at once."""
        self._settle()
        speed = default if speed is None else speed
        if speed == 0:
            raise SyntaxErrorInArguments(f"{op} speed 0 does not move: use PAUS")
        speed = max(-limit, min(limit, speed))
        if stop is not None:
            stop = max(Decimal(0), min(self.length, stop))
            # A stop position already behind us (in the direction of travel): the command ends at once.
            if (speed > 0 and stop <= self._pos) or (speed < 0 and stop >= self._pos):
                self._op, self._speed, self._stop = "PAUS", Decimal(0), None
                self._notify()
                return None
        self._op, self._speed, self._stop, self._t0 = op, speed, stop, self._now()
        self._notify()
        self._settle()
        return speed

    def play(self, stop: Decimal | None = None, speed: Decimal | None = None) -> Decimal | None:
        return self._move("PLAY", stop, speed, Decimal(1), self.max_play_speed)

    def record(self, stop: Decimal | None = None, speed: Decimal | None = None) -> Decimal | None:
        return self._move("RECO", stop, speed, Decimal(1), self.max_play_speed)

    def fastForward(self, stop: Decimal | None = None, speed: Decimal | None = None) -> Decimal | None:
        return self._move("FF", stop, speed, Decimal(5), self.max_ff_speed)

    def pause(self) -> None:
        self._settle()
        if self._op != "PAUS":
            self._op, self._speed, self._stop = "PAUS", Decimal(0), None
            self._notify()
