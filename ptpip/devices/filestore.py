"""A PTP object store backed by a folder: files are objects, folders are Associations.

Handles are stable while the store runs and never reused. Uploads land
atomically (a hidden temporary file, fsync, then a link that never replaces a
file) or not at all; their names are chosen against the other uploads in flight
as well as the disk, no upload takes more than its ObjectInfo announced, and the
temporary files of a process that died are swept at start. Files that appear in
or vanish from the folder are noticed by :meth:`scan` (run periodically by
:class:`~ptpip.devices.camera.Camera`) and announced.

ObjectInfo is read from the file's header only; a thumbnail is the one embedded
in the file (EXIF) or is made with Pillow in a thread, within a pixel limit, when
GetThumb asks for it. An image that cannot be decoded gets a placeholder.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import IObjectStore, IUpload
from ..wire.constants import (
    AccessCapability,
    AssociationType,
    EventCode,
    FilesystemType,
    ObjectFormat,
    ProtectionStatus,
    ResponseCode,
    StorageType,
)
from ..wire.datasets import ObjectInfo, StorageInfo
from ..wire.errors import OperationError
from .images import (
    IMAGE_FORMATS,
    MAX_THUMB_PIXELS,
    exif_thumbnail,
    header_size,
    image_size,
    make_thumbnail,
    placeholder_thumbnail,
    sniff_format,
    thumbnail_size,
)

ALL = 0xFFFFFFFF
ROOT = 0xFFFFFFFF
UPLOAD_PREFIX = ".ptpip-upload-"
#: Characters never accepted in an uploaded file name: C0 and C1 controls and DEL (they
#: would be written to disk as they are, and break line protocols listing the folder).
_CONTROL = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))


def unusable_name(name: str) -> str | None:
    """Why *name* cannot be a file name in the store, or None."""
    if not name:
        return "an empty name"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "a path, not a name"
    bad = sorted({c for c in name if c in _CONTROL})
    if bad:
        return "control characters " + " ".join(f"0x{ord(c):02X}" for c in bad)
    if name.startswith(UPLOAD_PREFIX):
        return "the name of our temporary files"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_upload(name: str) -> bool:
    """Whether *name* is a temporary upload of a process that is no longer running
    (``.ptpip-upload-PID-TOKEN-...``; the old form without a pid is always stale)."""
    rest = name[len(UPLOAD_PREFIX):]
    pid, _, _ = rest.partition("-")
    if not pid.isdigit():
        return True
    return int(pid) != os.getpid() and not _pid_alive(int(pid))


def ptp_date(t: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.localtime(t))


@dataclass
class _Entry:
    handle: int
    relpath: str              # POSIX-style, relative to the root
    parent: int               # 0 at the root
    is_dir: bool
    size: int = 0
    mtime: float = 0.0
    info: ObjectInfo | None = None
    thumb: tuple[bytes, int, int] | None = None
    thumb_key: tuple[float, int] | None = None
    making: defer.Deferred[Any] | None = None


def _store_error(e: OSError, what: str) -> OperationError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OperationError(ResponseCode.StoreFull, f"{what}: the store is full")
    return OperationError(ResponseCode.GeneralError, f"{what}: {e.strerror or e}")


@implementer(IUpload)
class _Upload:
    """Writes into a hidden temporary file beside the target; lands it on commit.

    :param size: the ObjectCompressedSize announced (None: unknown), which the upload
        may not pass; :param free: what the store had free when it was reserved.
    """

    def __init__(self, store: FilesystemStore, handle: int, rel: str, size: int | None, free: int) -> None:
        self.store = store
        self.handle = handle
        self.rel = rel
        directory, name = os.path.split(store._abs(rel))
        self.directory = directory
        self.tmp = os.path.join(directory, f"{UPLOAD_PREFIX}{store._tmp_token}-{handle}-{name}")
        self._file: IO[bytes] | None = open(self.tmp, "xb")
        self.written = 0
        self.size = size
        self.free = free
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        if self._file is None:
            return
        total = self.written + len(data)
        if self.size is not None and total > self.size:
            self.abort()
            raise OperationError(ResponseCode.IncompleteTransfer,
                                 f"the upload passed the {self.size} bytes its ObjectInfo announced")
        if total > self.free:
            self.abort()
            raise OperationError(ResponseCode.StoreFull, "the upload does not fit the store")
        try:
            self._file.write(data)
        except OSError as e:
            self.abort()
            raise _store_error(e, "writing the upload") from None
        self.written = total

    def commit(self) -> int:
        if self._file is None:
            raise OperationError(ResponseCode.IncompleteTransfer, "the upload was aborted")
        f, self._file = self._file, None
        try:
            with f:
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            self._unlink()
            self.store._release(self.handle)
            raise _store_error(e, "finishing the upload") from None
        try:
            rel = self.store._land(self.tmp, self.rel)
        except BaseException:
            self._unlink()
            self.store._release(self.handle)
            raise
        return self.store._landed(self.handle, rel)

    def abort(self) -> None:
        """Throw the partial object away, whatever the disk says (a full disk can fail the close)."""
        if self._file is not None:
            f, self._file = self._file, None
            try:
                f.close()
            except OSError:
                pass
        self._unlink()
        self.store._release(self.handle)

    def _unlink(self) -> None:
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


@implementer(IObjectStore)
class FilesystemStore:
    """Serves the folder *root* as one PTP storage.

    :param read_only: refuse uploads, deletions and protection changes.
    :param allow_format: let FormatStore erase the folder (off by default).
    """

    log = Logger()

    def __init__(self, root: str, storage_id: int = 0x00010001, description: str = "Folder",
                 volume_label: str | None = None, read_only: bool = False,
                 allow_format: bool = False, reactor: Any = None, thumbnail_workers: int = 2) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"not a folder: {root}")
        self.storage_id = storage_id
        self.description = description
        self.volume_label = volume_label if volume_label is not None else os.path.basename(self.root)
        self.read_only = read_only
        self.allow_format = allow_format
        self._entries: dict[int, _Entry] = {}
        self._by_path: dict[str, int] = {}
        self._next_handle = 1
        self._listeners: list[Callable[[int, int], Any]] = []
        #: Uploads announced by SendObjectInfo: handle -> (relative path, ObjectInfo, free bytes).
        self._reservations: dict[int, tuple[str, ObjectInfo, int]] = {}
        self._reserved_paths: set[str] = set()
        #: Temporary upload names carry the pid and a token of this process start.
        self._tmp_token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._reactor = reactor
        self._thumbnailing = defer.DeferredSemaphore(thumbnail_workers)
        self.swept = 0
        self.scan(announce=False, sweep=True)

    # -- the tree ---------------------------------------------------------------
    def _abs(self, relpath: str) -> str:
        return os.path.join(self.root, *relpath.split("/")) if relpath else self.root

    def _walk(self) -> Iterator[tuple[str, bool, os.stat_result]]:
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                with os.scandir(self._abs(rel)) as it:
                    items = sorted(it, key=lambda e: e.name)
            except OSError:
                continue
            for e in items:
                if e.name.startswith(UPLOAD_PREFIX):
                    if self._sweeping and stale_upload(e.name):
                        self._sweep(os.path.join(self._abs(rel), e.name))
                    continue
                if e.name in (".", ".."):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    continue         # never follow a link out of the root
                child = f"{rel}/{e.name}" if rel else e.name
                if stat.S_ISDIR(st.st_mode):
                    yield child, True, st
                    stack.append(child)
                elif stat.S_ISREG(st.st_mode):
                    yield child, False, st

    _sweeping = False

    def _sweep(self, path: str) -> None:
        try:
            os.unlink(path)
        except OSError as e:
            self.log.warn("could not remove the stale upload {path}: {e}", path=path, e=e)
            return
        self.swept += 1
        self.log.info("removed {path}, an upload left by a process that died", path=path)

    def scan(self, announce: bool = True, sweep: bool = False) -> None:
        """Bring the handle table in line with the folder; announce what changed. With
        *sweep*, temporary uploads left by a process that died are removed."""
        self._sweeping = sweep
        seen: set[str] = set()
        added: list[int] = []
        for rel, is_dir, st in self._walk():
            seen.add(rel)
            h = self._by_path.get(rel)
            if h is None:
                h = self._add(rel, is_dir, st)
                added.append(h)
            else:
                e = self._entries[h]
                if (e.size, e.mtime) != (st.st_size, st.st_mtime):
                    e.size, e.mtime, e.info = st.st_size, st.st_mtime, None
        gone = [h for rel, h in self._by_path.items() if rel not in seen]
        for h in sorted(gone, reverse=True):
            self._forget(h)
        if announce:
            for h in added:
                self._notify(EventCode.ObjectAdded, h)
            for h in gone:
                self._notify(EventCode.ObjectRemoved, h)

    def _add(self, rel: str, is_dir: bool, st: os.stat_result | None = None) -> int:
        parent_rel = rel.rpartition("/")[0]
        parent = self._by_path.get(parent_rel, 0) if parent_rel else 0
        if st is None:
            st = os.stat(self._abs(rel))
        h = self._next_handle
        self._next_handle += 1
        self._entries[h] = _Entry(h, rel, parent, is_dir, 0 if is_dir else st.st_size, st.st_mtime)
        self._by_path[rel] = h
        return h

    def _forget(self, h: int) -> None:
        e = self._entries.pop(h, None)
        if e is not None:
            self._by_path.pop(e.relpath, None)

    def _entry(self, handle: int) -> _Entry:
        e = self._entries.get(handle)
        if e is None:
            raise OperationError(ResponseCode.InvalidObjectHandle, f"no object 0x{handle:08X}")
        return e

    def _notify(self, code: int, handle: int) -> None:
        for listener in list(self._listeners):
            try:
                listener(code, handle)
            except Exception:
                self.log.failure("store listener failed")

    def _landed(self, handle: int, rel: str) -> int:
        self._release(handle)
        st = os.stat(self._abs(rel))
        parent_rel = rel.rpartition("/")[0]
        self._entries[handle] = _Entry(handle, rel, self._by_path.get(parent_rel, 0) if parent_rel else 0,
                                       False, st.st_size, st.st_mtime)
        self._by_path[rel] = handle
        self._notify(EventCode.ObjectAdded, handle)
        return handle

    # -- IObjectStore ---------------------------------------------------------
    def subscribe(self, listener: Callable[[int, int], Any]) -> None:
        self._listeners.append(listener)

    def storageInfo(self) -> StorageInfo:
        du = shutil.disk_usage(self.root)
        access = (AccessCapability.ReadOnlyWithoutDeletion if self.read_only
                  else AccessCapability.ReadWrite)
        return StorageInfo(StorageType.FixedRAM, FilesystemType.GenericHierarchical, access,
                           du.total, du.free, 0xFFFFFFFF, self.description, self.volume_label)

    def handles(self, object_format: int = 0, parent: int = 0) -> list[int]:
        if parent not in (0, ROOT):
            p = self._entries.get(parent)
            if p is None or not p.is_dir:
                raise OperationError(ResponseCode.InvalidParentObject, f"0x{parent:08X} is no folder")
        want_parent = 0 if parent == ROOT else parent
        out = []
        for h, e in self._entries.items():
            if parent != 0 and e.parent != want_parent:
                continue
            if object_format and self.objectInfo(h).object_format != object_format:
                continue
            out.append(h)
        return out

    def objectInfo(self, handle: int) -> ObjectInfo:
        e = self._entry(handle)
        if e.info is not None:
            return e.info
        path = self._abs(e.relpath)
        name = e.relpath.rpartition("/")[2]
        if e.is_dir:
            info = ObjectInfo(
                storage_id=self.storage_id, object_format=ObjectFormat.Association,
                protection_status=self._protection(path), parent_object=e.parent,
                association_type=AssociationType.GenericFolder, filename=name,
                capture_date=ptp_date(e.mtime), modification_date=ptp_date(e.mtime))
        else:
            try:
                with open(path, "rb") as f:
                    head = f.read(1 << 16)     # the EXIF thumbnail lives in the first segments
            except OSError:
                raise OperationError(ResponseCode.InvalidObjectHandle, f"{name} is gone") from None
            fmt = sniff_format(head, name)
            width = height = depth = 0
            thumb_format = thumb_size = thumb_w = thumb_h = 0
            if fmt in IMAGE_FORMATS:
                # from the header read already (Pillow only for the formats it does not cover)
                width, height, depth = header_size(head) or image_size(path)
                thumb_format = ObjectFormat.JFIF
                thumb = self._known_thumb(e, head)
                if thumb is not None:
                    thumb_size, thumb_w, thumb_h = len(thumb[0]), thumb[1], thumb[2]
                else:                          # made on GetThumb; its size is not known yet
                    thumb_w, thumb_h = thumbnail_size(width, height)
            info = ObjectInfo(
                storage_id=self.storage_id, object_format=fmt,
                protection_status=self._protection(path),
                object_compressed_size=e.size, thumb_format=thumb_format,
                thumb_compressed_size=thumb_size, thumb_pix_width=thumb_w, thumb_pix_height=thumb_h,
                image_pix_width=width, image_pix_height=height, image_bit_depth=depth,
                parent_object=e.parent, filename=name,
                capture_date=ptp_date(e.mtime), modification_date=ptp_date(e.mtime))
        e.info = info
        return info

    def _protection(self, path: str) -> int:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return ProtectionStatus.NoProtection
        return ProtectionStatus.NoProtection if mode & stat.S_IWUSR else ProtectionStatus.ReadOnly

    def _known_thumb(self, e: _Entry, head: bytes | None = None) -> tuple[bytes, int, int] | None:
        """The thumbnail without decoding the image: the one made already, or the one
        embedded in the file's EXIF (as cameras write them)."""
        key = (e.mtime, e.size)
        if e.thumb_key == key:
            return e.thumb
        if head is None:
            try:
                with open(self._abs(e.relpath), "rb") as f:
                    head = f.read(1 << 16)
            except OSError:
                return None
        exif = exif_thumbnail(head) if len(head) >= 4 else None
        if exif is None:
            return None
        size = header_size(exif)
        if size is None:
            return None                          # not a JPEG a viewer could show either
        e.thumb, e.thumb_key = (exif, size[0], size[1]), key
        return e.thumb

    def _made(self, thumb: tuple[bytes, int, int] | None, e: _Entry, key: tuple[float, int]) -> bytes:
        e.making = None
        if thumb is None:
            self.log.info("{path}: no thumbnail can be made (not decodable, or over {n} pixels); "
                          "sending a placeholder", path=e.relpath, n=MAX_THUMB_PIXELS)
            thumb = placeholder_thumbnail()
        if (e.mtime, e.size) == key:
            e.thumb, e.thumb_key = thumb, key
            e.info = None                     # ObjectInfo now knows the thumbnail's size
        return thumb[0]

    def open(self, handle: int) -> IO[bytes]:
        e = self._entry(handle)
        if e.is_dir:
            raise OperationError(ResponseCode.InvalidObjectHandle, "a folder has no data")
        try:
            return open(self._abs(e.relpath), "rb")
        except OSError:
            raise OperationError(ResponseCode.InvalidObjectHandle, f"{e.relpath} is gone") from None

    def size(self, handle: int) -> int:
        return self._entry(handle).size

    def thumbnail(self, handle: int) -> bytes | defer.Deferred[bytes]:
        """The thumbnail: at once when it is embedded in the file or made already, else a
        Deferred while Pillow makes it in a thread (a few at a time; the reactor keeps
        serving everyone else)."""
        e = self._entry(handle)
        if e.is_dir or self.objectInfo(handle).object_format not in IMAGE_FORMATS:
            raise OperationError(ResponseCode.NoThumbnailPresent)
        known = self._known_thumb(e)
        if known is not None:
            return known[0]
        key = (e.mtime, e.size)
        if e.making is None:
            reactor = self._reactor
            if reactor is None:
                from twisted.internet import reactor
            path = self._abs(e.relpath)
            made: defer.Deferred[Any] = self._thumbnailing.run(
                threads.deferToThreadPool, reactor, reactor.getThreadPool(), make_thumbnail, path)
            e.making = made
            made.addCallback(self._made, e, key)
        d: defer.Deferred[bytes] = defer.Deferred()

        def ready(data: bytes) -> bytes:
            d.callback(data)
            return data
        assert e.making is not None
        e.making.addCallback(ready)
        return d

    def _writable(self) -> None:
        if self.read_only:
            raise OperationError(ResponseCode.StoreReadOnly)

    def delete(self, handle: int, object_format: int = 0) -> list[int]:
        """Delete and return the handles removed (children first)."""
        self._writable()
        if handle == ALL:
            targets = [h for h, e in self._entries.items() if e.parent == 0
                       and (not object_format or self.objectInfo(h).object_format == object_format)]
            removed: list[int] = []
            failed = False
            for h in targets:
                try:
                    removed += self.delete(h)
                except OperationError:
                    failed = True
            if failed:
                raise OperationError(ResponseCode.PartialDeletion)
            return removed
        e = self._entry(handle)
        path = self._abs(e.relpath)
        if self._protection(path) == ProtectionStatus.ReadOnly:
            raise OperationError(ResponseCode.ObjectWriteProtected, f"{e.relpath} is protected")
        removed = []
        if e.is_dir:
            for child in [h for h, c in self._entries.items() if c.parent == handle]:
                removed += self.delete(child)
            os.rmdir(path)
        else:
            os.unlink(path)
        self._forget(handle)
        removed.append(handle)
        self._notify(EventCode.ObjectRemoved, handle)
        return removed

    def reserve(self, info: ObjectInfo, parent: int) -> int:
        self._writable()
        if parent in (0, ROOT):
            parent_rel = ""
        else:
            p = self._entries.get(parent)
            if p is None or not p.is_dir:
                raise OperationError(ResponseCode.InvalidParentObject, f"0x{parent:08X} is no folder")
            parent_rel = p.relpath
        name = info.filename
        why = unusable_name(name)
        if why is not None:
            raise OperationError(ResponseCode.InvalidParameter, f"unusable filename {name!r}: {why}")
        if info.object_format == ObjectFormat.Association:
            rel = self._unique(parent_rel, name)
            os.mkdir(self._abs(rel))
            h = self._add(rel, True)
            self._notify(EventCode.ObjectAdded, h)
            return h
        free = shutil.disk_usage(self.root).free
        if info.object_compressed_size > free:
            raise OperationError(ResponseCode.StoreFull,
                                 f"{info.object_compressed_size} bytes do not fit in {free}")
        h = self._next_handle
        self._next_handle += 1
        rel = self._unique(parent_rel, name)
        self._reservations[h] = (rel, info, free)
        self._reserved_paths.add(rel)
        return h

    def release(self, handle: int) -> None:
        if handle in self._reservations:
            self._release(handle)

    def _release(self, handle: int) -> None:
        reservation = self._reservations.pop(handle, None)
        if reservation is not None:
            self._reserved_paths.discard(reservation[0])

    def _land(self, tmp: str, rel: str) -> str:
        """Link *tmp* into place at *rel* (or, if a file landed there meanwhile, at a
        free name beside it) without ever replacing a file; the relative path used."""
        parent_rel, _, name = rel.rpartition("/")
        for _attempt in range(100):
            target = self._abs(rel)
            try:
                os.link(tmp, target)
            except FileExistsError:
                self._reserved_paths.discard(rel)
                rel = self._unique(parent_rel, name)
                self._reserved_paths.add(rel)
                continue
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise _store_error(e, "landing the upload") from None
                # A file system without hard links: rename, after making sure (as far
                # as a rename allows) that nothing is there.
                if os.path.lexists(target):
                    self._reserved_paths.discard(rel)
                    rel = self._unique(parent_rel, name)
                    self._reserved_paths.add(rel)
                    continue
                os.replace(tmp, target)
            else:
                os.unlink(tmp)
            self._fsync_dir(os.path.dirname(target))
            return rel
        raise OperationError(ResponseCode.GeneralError, f"no free name for {name!r}")

    @staticmethod
    def _fsync_dir(path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _unique(self, parent_rel: str, name: str) -> str:
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        candidate, n = name, 1
        while True:
            rel = f"{parent_rel}/{candidate}" if parent_rel else candidate
            if rel not in self._reserved_paths and not os.path.lexists(self._abs(rel)):
                return rel
            candidate = f"{stem}_{n}{dot}{ext}"
            n += 1

    def receive(self, handle: int) -> IUpload:
        self._writable()
        reservation = self._reservations.get(handle)
        if reservation is None:
            raise OperationError(ResponseCode.NoValidObjectInfo, "SendObject without SendObjectInfo")
        rel, info, free = reservation
        size = None if info.object_compressed_size == 0xFFFFFFFF else info.object_compressed_size
        try:
            return _Upload(self, handle, rel, size, free)
        except OSError as e:
            self._release(handle)
            raise _store_error(e, "starting the upload") from None

    def setProtection(self, handle: int, status: int) -> None:
        self._writable()
        e = self._entry(handle)
        path = self._abs(e.relpath)
        mode = os.stat(path).st_mode
        if status == ProtectionStatus.ReadOnly:
            os.chmod(path, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        elif status == ProtectionStatus.NoProtection:
            os.chmod(path, mode | stat.S_IWUSR)
        else:
            raise OperationError(ResponseCode.InvalidParameter, f"protection status {status}")
        e.info = None

    def format(self) -> None:
        if not self.allow_format:
            raise OperationError(ResponseCode.AccessDenied, "formatting is disabled")
        self._writable()
        for h in [h for h, e in self._entries.items() if e.parent == 0]:
            e = self._entries[h]
            path = self._abs(e.relpath)
            if e.is_dir:
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        self.scan()
