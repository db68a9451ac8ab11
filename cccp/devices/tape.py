"""Tape media: what ``RETR /tape`` sends while the deck moves, stored clips played as
tapes, and recordings made onto the tape (``STOR /tape`` during RECO).

The Twisted glue over :mod:`cccp.wire.tape`: a :class:`~cccp.wire.tape.TrickPlayer` per
transfer makes the stream, paced by its PCR like any stored clip (the sender reads a
fifth of a second ahead, so a command shows within about that); indexes are built in a
thread and kept (:class:`IndexCache`); the deck's motion is read ahead of time with
:meth:`~cccp.devices.deck.VirtualTapeDeck.motion_at`.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import IO, Any

from twisted.internet import defer, threads
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import IMediaSource, IRecording, ITapeMedia
from ..wire.errors import FileUnavailable, RemoteProtocolError
from ..wire.media import PCR_HZ, TS_PACKET, ts_pcr
from ..wire.tape import Motion, Tape, TapeClip, TrickPlayer
from ..wire.ts import TSError, TSIndex, TSIndexer
from .deck import VirtualTapeDeck

#: Seconds a tape source is read ahead of real time: how soon a command shows.
READ_AHEAD = 0.2


class IndexedFile:
    """A clip on disk read by offset (``os.pread``, no shared file position)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)

    def __call__(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


def index_file(path: str, chunk: int = 1 << 20) -> TSIndex:
    """The index of a TS file (blocking: run it in a thread for anything large)."""
    ix = TSIndexer()
    with open(path, "rb") as f:
        while data := f.read(chunk):
            ix.feed(data)
    return ix.finish()


class IndexCache:
    """Indexes of clips, built in a thread once per version of a file (its size and
    modification time), the last *size* kept."""

    def __init__(self, reactor: Any, size: int = 16) -> None:
        self.reactor = reactor
        self.size = size
        self._done: OrderedDict[tuple[int, int, int, int], TSIndex] = OrderedDict()
        self._building: dict[tuple[int, int, int, int], list[defer.Deferred[TSIndex]]] = {}
        #: One build at a time: a peer asking for many cannot take every thread.
        self._one = defer.DeferredSemaphore(1)

    @staticmethod
    def _key(path: str) -> tuple[int, int, int, int]:
        """The file's identity and version (a replaced file is another file)."""
        st = os.stat(path)
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns

    def get(self, path: str) -> defer.Deferred[TSIndex]:
        """The index of the file at *path* (``/proc/self/fd/N`` names an open file itself)."""
        key = self._key(path)
        if key in self._done:
            self._done.move_to_end(key)
            return defer.succeed(self._done[key])
        d: defer.Deferred[TSIndex] = defer.Deferred()
        waiting = self._building.get(key)
        if waiting is not None:
            waiting.append(d)
            return d
        self._building[key] = [d]

        def built(result: Any) -> None:
            for w in self._building.pop(key, []):
                w.callback(result) if isinstance(result, TSIndex) else w.errback(result)
            if isinstance(result, TSIndex):
                self._done[key] = result
                while len(self._done) > self.size:
                    self._done.popitem(last=False)
        self._one.run(threads.deferToThreadPool, self.reactor, self.reactor.getThreadPool(),
                      index_file, path).addBoth(built)
        return d

    def put(self, path: str, index: TSIndex) -> None:
        """Keep an index built elsewhere (at start-up, say)."""
        self._done[self._key(path)] = index

    def get_now(self, path: str) -> TSIndex:
        """The index, built here and now when it is not kept (the small sample clip; a
        ``--tape-clip`` is indexed at start-up)."""
        key = self._key(path)
        if key not in self._done:
            self._done[key] = index_file(path)
        return self._done[key]


class _PlayerSource:
    """What both tape sources share: a pull producer that writes one piece of a
    :class:`TrickPlayer` per pull, paced by the sender."""

    live = False
    rtp_input = False
    length = None
    read_ahead = READ_AHEAD
    log = Logger()

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.consumer: IConsumer | None = None
        self.player: TrickPlayer | None = None
        self.deck: Any = None
        self._t0 = 0.0
        self._done: defer.Deferred[None] = defer.Deferred()

    def _begin(self, consumer: IConsumer) -> defer.Deferred[None]:
        self.consumer = consumer
        self._t0 = self.reactor.seconds()
        consumer.registerProducer(self, False)  # type: ignore[arg-type]  # (each subclass is an IMediaSource)
        return self._done

    def _origin(self) -> float:
        """The output time (the player's PCR/PTS timeline) that went out when the stream began."""
        player = self.player
        assert player is not None
        return player.origin if player.origin is not None else player.time

    def _output_time(self, wall: float) -> float:
        """The output time that is due at *wall*."""
        return self._origin() + (wall - self._t0)

    def _motion(self, t: float) -> Motion:
        wall = max(self.reactor.seconds(), self._t0 + (t - self._origin()))
        op, pos, speed = self.deck.motion_at(wall)
        return Motion(op, pos, speed)

    def tapePosition(self) -> Decimal | None:
        if self.player is None or self.consumer is None:
            return None
        pos = self.player.position_at(self._output_time(self.reactor.seconds()))
        return Decimal(str(round(pos, 3)))

    def _finish(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            consumer.unregisterProducer()
        if not self._done.called:
            self._done.callback(None)

    def _produce(self) -> bytes | None:
        """The player's next piece; None when the medium failed (the transfer then ends with
        451, whatever the failure)."""
        assert self.player is not None
        try:
            return self.player.produce(self._motion)
        except Exception as e:
            self.log.failure("the tape cannot be played", Failure())
            self._fail(e)
            return None

    def _fail(self, e: BaseException) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            consumer.unregisterProducer()
        if not self._done.called:
            self._done.errback(FileUnavailable(f"the tape cannot be played: {e}"))

    def pauseProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.consumer = None
        if not self._done.called:
            self._done.callback(None)


@implementer(IMediaSource, ITapeMedia)
class TapeSource(_PlayerSource):
    """``RETR /tape``: the tape under the deck's head, at whatever the deck does: the
    programme at speed 1, I-frames only at any other speed and while shuttling, the
    picture at the position held while paused; one valid stream throughout."""

    def __init__(self, reactor: Any, deck: Any, tape: Tape) -> None:
        super().__init__(reactor)
        self.deck = deck
        self.tape = tape
        self.player = TrickPlayer(tape)

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        return self._begin(consumer)

    def resumeProducing(self) -> None:
        if self.consumer is None or self.player is None:
            return
        data = self._produce()
        if data is not None and self.consumer is not None:
            self.consumer.write(data)

    def tapeDeck(self) -> Any:
        return self.deck


@implementer(IMediaSource, ITapeMedia)
class ClipTapeSource(_PlayerSource):
    """A stored clip RETRieved in ``TYPE I M`` that tape commands can move.

    Until the first one it is the file itself, read in large chunks (nothing per packet).
    The first tape command builds (or takes) the clip's index, puts a deck of the clip's
    length at the picture being sent, playing, and from then the clip goes through a
    :class:`TrickPlayer` that carries on the file's own timeline and counters. The
    transfer ends when the clip has played to its end, or when the deck stops there.
    """

    def __init__(self, reactor: Any, path: str, indexes: IndexCache, chunk: int = TS_PACKET * 1394) -> None:
        super().__init__(reactor)
        self.path = path
        self.indexes = indexes
        self.chunk = chunk
        self.file: IndexedFile | None = IndexedFile(path)
        self._sent = 0
        self._deck_d: defer.Deferred[Any] | None = None

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        return self._begin(consumer)

    def resumeProducing(self) -> None:
        if self.consumer is None or self.file is None:
            return
        if self.player is None:
            try:
                data = self.file(self._sent, self.chunk)
            except OSError as e:
                self._fail(e)
                return
            if not data:
                self._finish()
                return
            if not self._sent:
                self._size_chunks(data)
            self._sent += len(data)
            self.consumer.write(data)
            return
        if self.player.at_end or (self.deck.state()[0] == "PAUS" and self.deck.position() >= self.deck.length):
            self._finish()
            return
        piece = self._produce()
        if piece is not None and self.consumer is not None:
            self.consumer.write(piece)

    def _size_chunks(self, first: bytes) -> None:
        """Read about a twentieth of a second at a time (by the first chunk's PCRs), so that
        a tape command is not queued behind seconds of the clip."""
        pcrs = [(i, pcr) for i in range(0, len(first) - TS_PACKET + 1, TS_PACKET)
                if (pcr := ts_pcr(first[i:i + TS_PACKET])) is not None]
        if len(pcrs) >= 2 and pcrs[-1][1] > pcrs[0][1]:
            rate = (pcrs[-1][0] - pcrs[0][0]) / ((pcrs[-1][1] - pcrs[0][1]) / PCR_HZ)
            self.chunk = max(TS_PACKET * 16, min(self.chunk, int(rate * 0.05) // TS_PACKET * TS_PACKET))

    def tapeDeck(self) -> defer.Deferred[Any]:
        if self._deck_d is None:
            if self.file is None:
                return defer.fail(RemoteProtocolError("the transfer has ended", 503))
            # the index of the file being sent (not of whatever now has its name)
            self._deck_d = self.indexes.get(f"/proc/self/fd/{self.file.fd}").addCallback(self._become_tape)
        d: defer.Deferred[Any] = defer.Deferred()

        def fire(result: Any) -> Any:
            if isinstance(result, Failure):
                self._deck_d = None                # not kept: the next command may try again
                if result.check(TSError):
                    d.errback(RemoteProtocolError(f"this clip cannot be played as a tape: "
                                                  f"{result.getErrorMessage()}", 550))
                else:
                    d.errback(result)
                return None
            d.callback(result)
            return result
        self._deck_d.addBoth(fire)
        return d

    def tapePosition(self) -> Decimal | None:
        if self.player is None:                    # sent as it is: as far as it has played
            return Decimal(str(round(max(0.0, self.reactor.seconds() - self._t0), 3)))
        return super().tapePosition()

    def _become_tape(self, index: TSIndex) -> Any:
        if self.file is None:
            raise RemoteProtocolError("the transfer has ended", 503)
        clip = TapeClip(index, self.file, os.path.basename(self.path))
        player = TrickPlayer(Tape(clip, loop=False))
        player.resume(self._sent)
        self.player = player
        at = player.position_at(self._output_time(self.reactor.seconds()))
        self.deck = VirtualTapeDeck(clip.length, clock=self.reactor, position=at)
        self.deck.play()
        return self.deck

    def _finish(self) -> None:
        super()._finish()
        self._close()

    def stopProducing(self) -> None:
        super().stopProducing()
        self._close()

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file = None


@implementer(IRecording)
class TapeRecording:
    """``STOR /tape`` while the deck records: what arrives, recorded onto the tape from
    the position where the recording began. Kept in an unnamed temporary file (the tape
    lives as long as the server; nothing is left behind); it reaches the tape only when
    the transfer ends cleanly and the stream holds a picture a decoder can start from."""

    def __init__(self, reactor: Any, tape: Tape, at: float, on_laid: Callable[[float, float], Any] | None = None,
                 folder: str | None = None, max_bytes: int = 4 << 30) -> None:
        self.reactor = reactor
        self.tape = tape
        self.at = at
        self.on_laid = on_laid
        self.max_bytes = max_bytes
        # in the store's file system when there is one (not a RAM-backed /tmp), never named
        self._file: IO[bytes] | None = tempfile.TemporaryFile(prefix="cccp-tape-", dir=folder)
        self.written = 0

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise RemoteProtocolError("the recording was aborted", 451)
        if self.written + len(data) > self.max_bytes:
            self.abort()
            raise RemoteProtocolError(f"a recording onto the tape is {self.max_bytes} bytes at most", 552)
        try:
            self._file.write(data)
        except OSError as e:
            self.abort()
            raise RemoteProtocolError(f"writing the recording: {e.strerror}", 452) from None
        self.written += len(data)

    def commit(self) -> defer.Deferred[None]:
        if self._file is None:
            return defer.fail(RemoteProtocolError("the recording was aborted", 451))
        f = self._file
        f.flush()
        path = f"/proc/self/fd/{f.fileno()}"

        def build() -> TSIndex:
            return index_file(path)

        def indexed(index: TSIndex) -> None:
            base = self.tape.base.index.programme
            prog = index.programme
            if (prog.pmt_pid, prog.video_pid, prog.pcr_pid) != (base.pmt_pid, base.video_pid, base.pcr_pid):
                f.close()
                raise RemoteProtocolError(
                    f"nothing was recorded: the stream's programme (PMT PID {prog.pmt_pid}, video PID "
                    f"{prog.video_pid}, PCR PID {prog.pcr_pid}) is not the tape's ({base.pmt_pid}, "
                    f"{base.video_pid}, {base.pcr_pid}); mux it with the tape's PIDs", 451)
            read = IndexedFile(path)
            f.close()                              # the reader holds the (unnamed) file now
            start, end = self.tape.lay(self.at, TapeClip(index, read, "recording"))
            if self.on_laid is not None:
                self.on_laid(start, end)

        def refused(failure: Any) -> Any:
            f.close()
            if failure.check(TSError):
                raise RemoteProtocolError(f"nothing was recorded: {failure.getErrorMessage()}", 451)
            return failure
        self._file = None
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), build)
        return d.addCallbacks(indexed, refused)

    def abort(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()


def tape_of(clip_path: str, indexes: IndexCache, length: float) -> Tape:
    """A tape of *length* seconds with the clip at *clip_path* repeated along it."""
    return Tape(TapeClip(indexes.get_now(clip_path), IndexedFile(clip_path), os.path.basename(clip_path)),
                length, loop=True)
