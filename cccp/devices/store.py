"""A folder of media behind :class:`~cccp.interfaces.IMediaStore`: listing, stored
files as media sources, and recordings that land atomically or not at all."""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat
from dataclasses import dataclass
from typing import IO, Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import IMediaSource, IMediaStore, IRecording
from ..wire.errors import FileUnavailable, ParameterNotImplemented, RemoteProtocolError
from ..wire.media import RTP_MP2T

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
    """A stored file sent as fast as the connection takes it (a pull producer).

    It writes into whatever consumer it is given; a sender that can copy the file
    itself (``os.sendfile``) asks :meth:`sendfile_ok` and takes it with :meth:`take_file`.
    """

    live = False
    rtp_input = False

    def __init__(self, path: str, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.length = max(0, os.path.getsize(path) - offset)
        self._file: IO[bytes] | None = None
        self._sender: FileSender | None = None

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self._file = open(self.path, "rb")
        return self._file

    def sendfile_ok(self) -> bool:
        """Whether the file is a regular file the kernel can send."""
        try:
            return stat.S_ISREG(os.stat(self.path).st_mode)
        except OSError:
            return False

    def take_file(self) -> tuple[int, int, int]:
        """(file descriptor, offset, length) for a sender that reads the file itself;
        :meth:`close` it when done."""
        return self._open().fileno(), self.offset, self.length

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        f = self._open()
        f.seek(self.offset)
        self._sender = _BigFileSender()
        d = self._sender.beginFileTransfer(f, consumer)

        def closed(result: Any) -> Any:
            self.close()
            return result if isinstance(result, Failure) else None
        return d.addBoth(closed)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        if self._sender is not None:
            self._sender.resumeProducing()

    def stopProducing(self) -> None:
        if self._sender is not None and self._sender.deferred is not None:
            self._sender.stopProducing()
        self.close()


def _disk_error(e: OSError, what: str) -> RemoteProtocolError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return RemoteProtocolError(f"{what}: insufficient storage space", 452)
    return RemoteProtocolError(f"{what}: {e.strerror or e}", 451)


def stale_recording(name: str) -> bool:
    """Whether *name* is a temporary recording of a process that is no longer running
    (``.cccp-recording-PID-...``)."""
    pid = name[len(RECORDING_PREFIX):].partition("-")[0]
    if not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@implementer(IRecording)
class FileRecording:
    """Writes into a hidden temporary file beside the target; renames on commit."""

    def __init__(self, target: str) -> None:
        self.target = target
        directory, name = os.path.split(target)
        self.tmp = os.path.join(directory, f"{RECORDING_PREFIX}{os.getpid()}-{secrets.token_hex(6)}-{name}")
        try:
            self._file: IO[bytes] | None = open(self.tmp, "xb")
        except OSError as e:
            raise _disk_error(e, "cannot start the recording") from None
        self.written = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise RemoteProtocolError("the recording was aborted", 451)
        try:
            self._file.write(data)
        except OSError as e:
            self.abort()
            raise _disk_error(e, "writing the recording") from None
        self.written += len(data)

    def commit(self) -> None:
        if self._file is None:
            raise RemoteProtocolError("the recording was aborted", 451)
        f, self._file = self._file, None
        try:
            with f:                               # closed also when the disk is full
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            self.abort()
            raise _disk_error(e, "finishing the recording") from None
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
        """Throw it away, whatever the disk says (a full disk can fail the close)."""
        if self._file is not None:
            f, self._file = self._file, None
            try:
                f.close()
            except OSError:
                pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


@implementer(IMediaStore)
class FileMediaStore:
    """Media files under *root*. Paths are jailed: no ``..`` or symlink escapes.

    Temporary recordings left by a process that died (``kill -9`` during a STOR) are
    removed when the store is made; :attr:`swept` counts them.
    """

    log = Logger()

    def __init__(self, root: str, writable: bool = True) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"not a folder: {root}")
        self.writable = writable
        self.swept = 0
        if writable:
            self._sweep()

    def _sweep(self) -> None:
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(RECORDING_PREFIX) and stale_recording(name):
                    path = os.path.join(folder, name)
                    try:
                        os.unlink(path)
                    except OSError as e:
                        self.log.warn("could not remove the stale recording {path}: {e}", path=path, e=e)
                        continue
                    self.swept += 1
                    self.log.info("removed {path}, a recording left by a process that died", path=path)

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

    def open(self, path: str, offset: int = 0, payload_type: int = RTP_MP2T) -> IMediaSource:
        if payload_type != RTP_MP2T:
            raise ParameterNotImplemented(
                f"{path} is stored MPEG2-TS: it can be sent as RTP payload type 33 only")
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
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
            raise RemoteProtocolError("file name not allowed: it holds control characters", 553)
        parent = self._real(posixpath.dirname(virtual))
        if not os.path.isdir(parent):
            raise RemoteProtocolError(f"{path}: no such folder", 553)
        target = os.path.join(parent, name)
        if os.path.isdir(target):
            raise RemoteProtocolError(f"{path}: is a folder", 553)
        return FileRecording(target)
