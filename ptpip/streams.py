"""Data sources and sinks that stream with backpressure and constant memory."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import IO, Any, cast

from twisted.internet import defer, task
from twisted.internet.interfaces import IConsumer, IProducer, IPushProducer
from zope.interface import implementer

from .interfaces import IDataSource

#: Bytes read from a file per step. 256 KiB keeps per-step overhead low at GB/s.
CHUNK_SIZE = 1 << 20


@implementer(IDataSource)
class BytesSource:
    """A small payload already in memory (datasets, property values)."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.length = len(self.data)

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IDataSource)
class FileSource:
    """Streams (part of) a file, one chunk per cooperative step, pausable.

    :param f: a binary file opened for reading; closed when done or stopped.
    :param offset: where to start; :param length: how many bytes (default: to the end).
    :param cooperator: a :class:`twisted.internet.task.Cooperator` (for tests).
    """

    def __init__(self, f: IO[bytes], length: int | None = None, offset: int = 0,
                 chunk_size: int = CHUNK_SIZE, cooperator: Any = task) -> None:
        self._file = f
        self._offset = offset
        size = os.fstat(f.fileno()).st_size if hasattr(f, "fileno") else None
        if length is None:
            if size is None:
                f.seek(0, os.SEEK_END)
                size = f.tell()
            length = max(0, size - offset)
        self.length = length
        self._chunk_size = chunk_size
        self._cooperator = cooperator
        self._task: task.CooperativeTask | None = None

    def sendfile_ok(self) -> bool:
        """Whether the file is a real file the kernel can send (``os.sendfile``)."""
        try:
            return stat.S_ISREG(os.fstat(self._file.fileno()).st_mode)
        except (AttributeError, OSError, ValueError):
            return False

    def take_file(self) -> tuple[int, int, int]:
        """(file descriptor, offset, length) for a sender that reads the file itself."""
        return self._file.fileno(), self._offset, self.length

    def close(self) -> None:
        self._file.close()

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        self._file.seek(self._offset)
        self._task = self._cooperator.cooperate(self._write(consumer))
        d = self._task.whenDone()
        d.addCallback(lambda _: None)
        d.addBoth(self._closed)
        return d

    def _write(self, consumer: IConsumer) -> Iterator[None]:
        left = self.length
        while left > 0:
            chunk = self._file.read(min(self._chunk_size, left))
            if not chunk:
                raise OSError(f"file ended with {left} bytes still to send")
            left -= len(chunk)
            consumer.write(chunk)
            yield None

    def _closed(self, result: Any) -> Any:
        self._file.close()
        return result

    def pauseProducing(self) -> None:
        if self._task is not None:
            try:
                self._task.pause()
            except task.TaskDone:
                pass

    def resumeProducing(self) -> None:
        if self._task is not None:
            try:
                self._task.resume()
            except task.TaskDone:
                pass

    def stopProducing(self) -> None:
        if self._task is not None:
            try:
                self._task.stop()
            except task.TaskDone:
                pass
        self._file.close()


@implementer(IConsumer)
class _Consumer:
    """Remembers the producer it is given; counts what is written."""

    def __init__(self) -> None:
        self.written = 0
        self.producer: IPushProducer | None = None

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.producer = cast(IPushProducer, producer)   # sources here are push producers

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written += len(data)


class FileConsumer(_Consumer):
    """Writes what it is given into a binary file object; counts the bytes."""

    def __init__(self, f: IO[bytes]) -> None:
        super().__init__()
        self.file = f

    def write(self, data: bytes) -> None:
        self.file.write(data)
        super().write(data)


class BytesConsumer(_Consumer):
    """Collects what it is given (for small payloads)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._parts.append(bytes(data))
        super().write(data)

    def value(self) -> bytes:
        return b"".join(self._parts)
