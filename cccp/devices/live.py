"""Live media sources: an encoder subprocess (ffmpeg via spawnProcess) and a looped
sample clip for machines without an encoder; the tape deck's output is in
:mod:`cccp.devices.tape`.

:class:`MediaLibrary` presents them beside a folder of files as "dummy
filenames" (draft section 1): ``/live/testpattern``, ``/live/v4l2`` (when a
V4L2 device exists) and ``/tape`` (when a tape deck exists).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Any

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import IMediaSource, IMediaStore, IRecording, ITapeDeck
from ..wire.errors import FileUnavailable, ParameterNotImplemented, RemoteProtocolError
from ..wire.media import PCR_HZ, RTP_MP2T, sample_clip_path
from ..wire.tape import Tape
from ..wire.ts import Splicer
from .fanout import CLOSE_AFTER, LiveSources
from .store import Entry, FileMediaStore
from .tape import IndexCache, TapeRecording, TapeSource, tape_of

LIVE_DIR = "/live"
#: Seconds an encoder has to end after SIGTERM before SIGKILL.
KILL_AFTER = 3.0
TAPE_PATH = "/tape"

#: What ffmpeg can packetise itself, by RTP payload type.
RTP_ENCODINGS: dict[int, list[str]] = {
    32: ["-an", "-c:v", "mpeg2video", "-b:v", "2M"],                         # MPV
    14: ["-vn", "-c:a", "mp2", "-b:a", "128k"],                              # MPA
    26: ["-an", "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", "5"],       # JPEG
}


def parse_bitrate(text: str | int) -> int:
    """Bits per second from ``5M``, ``800k`` or ``2500000``."""
    s = str(text).strip()
    scale = {"k": 1_000, "m": 1_000_000}.get(s[-1:].lower(), 1)
    try:
        value = float(s[:-1] if scale > 1 else s) * scale
    except ValueError:
        raise ValueError(f"{text!r} is not a bit rate (e.g. 2M, 800k)") from None
    if not 100_000 <= value <= 100_000_000:
        raise ValueError(f"{text!r}: a live bit rate is between 100k and 100M")
    return int(value)


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def test_pattern_input(size: str = "640x480", rate: int = 25) -> list[str]:
    """ffmpeg input options for a moving test pattern with a clock and a tone."""
    return ["-re", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}",
            "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"]


def v4l2_input(device: str = "/dev/video0") -> list[str]:
    return ["-f", "v4l2", "-i", device]


class _EncoderProtocol(protocol.ProcessProtocol):
    log = Logger()

    def __init__(self, source: EncoderSource) -> None:
        self.source = source
        self.stderr = b""

    def outReceived(self, data: bytes) -> None:
        if self.source.consumer is not None and not self.source.rtp_port:
            self.source._ts(data)

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-4000:]

    def processEnded(self, reason: Failure) -> None:
        self.source._ended(reason, self.stderr)


@implementer(IMediaSource)
class EncoderSource:
    """A live stream from an encoder subprocess: MPEG2-TS on its stdout, or RTP
    packets it sends to a UDP port of ours (for payload types it packetises)."""

    live = True
    length = None
    log = Logger()
    #: Seconds before an encoder that failed is started again, doubled each time.
    RESTART_AFTER = 0.5

    def __init__(self, reactor: Any, input_args: list[str], *, payload_type: int = RTP_MP2T,
                 executable: str | None = None, restarts: int = 3, bitrate: int = 2_000_000) -> None:
        self.reactor = reactor
        #: The video's bit rate (constant: a live stream's rate is what its viewers plan for).
        self.bitrate = bitrate
        self.input_args = input_args
        self.payload_type = payload_type
        self.executable = executable or ffmpeg_path()
        self.consumer: IConsumer | None = None
        self.process: Any = None
        self.rtp_port: Any = None
        self._done: defer.Deferred[None] = defer.Deferred()
        self.rtp_input = payload_type != RTP_MP2T
        #: While the consumer is paused an RTP encoder's datagrams are dropped (live: the
        #: newest wins), so a TCP peer that does not read costs no memory.
        self._paused = False
        #: A TS encoder that fails is started again (*restarts* times in a row at most), and
        #: what it sends then is spliced onto what went before: one stream to the viewer.
        self.restarts = restarts
        self.restarted = 0
        self._failures = 0
        self.splicer = Splicer()
        self._last_out: float | None = None
        self._spawned_at = 0.0

    def _argv(self, rtp_target: str | None) -> list[str]:
        base = [self.executable or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *self.input_args]
        rate = str(self.bitrate)
        cbr = ["-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", "1835k"]
        if rtp_target is None:
            return base + ["-c:v", "mpeg2video", *cbr, "-g", "12", "-c:a", "mp2", "-b:a", "128k",
                           "-f", "mpegts", "-muxrate", str(self.bitrate + 500_000), "pipe:1"]
        enc = RTP_ENCODINGS.get(self.payload_type)
        if enc is None:
            raise ParameterNotImplemented(f"RTP payload type {self.payload_type} is not available from the encoder")
        if self.payload_type == 32:
            enc = ["-an", "-c:v", "mpeg2video", *cbr, "-g", "12"]
        return base + enc + ["-f", "rtp", "-payload_type", str(self.payload_type), rtp_target]

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        if not self.executable:
            return defer.fail(FileUnavailable("no encoder (ffmpeg) is installed"))
        self.consumer = consumer
        consumer.registerProducer(self, True)
        target = None
        if self.rtp_input:
            from ..stream import UDPEndpoint
            ep = UDPEndpoint("127.0.0.1")
            ep.on_datagram = lambda data, addr: None if self._paused else consumer.write(data)
            self.rtp_port = self.reactor.listenUDP(0, ep, interface="127.0.0.1", maxPacketSize=65535)
            target = f"rtp://127.0.0.1:{self.rtp_port.getHost().port}?pkt_size=1400"
        self._spawn(target)
        return self._done

    def _spawn(self, target: str | None = None) -> None:
        argv = self._argv(target)
        self._spawned_at = self.reactor.seconds()
        self.process = self.reactor.spawnProcess(_EncoderProtocol(self), argv[0], argv, env=os.environ.copy())
        if self._paused and not self.rtp_input:
            self.process.pauseProducing()

    def _ts(self, data: bytes) -> None:
        out = self.splicer.feed(data)
        if out and self.consumer is not None:
            self._last_out = self.reactor.seconds()
            self.consumer.write(out)

    def _ended(self, reason: Failure, stderr: bytes) -> None:
        code = getattr(reason.value, "exitCode", 0)
        stopping = getattr(self, "_stopping", False)
        if self.reactor.seconds() - self._spawned_at > 10:
            self._failures = 0                        # it ran a while: not a crash loop
        if (code not in (0, None) and not stopping and not self.rtp_input and self.consumer is not None
                and self._failures < self.restarts and not self._done.called):
            # A live source that restarts: spliced on, the viewer keeps one stream.
            self._failures += 1
            self.restarted += 1
            delay = self.RESTART_AFTER * 2 ** (self._failures - 1)
            self.log.warn("the encoder failed ({code}); starting it again in {delay} s: {err}", code=code,
                          delay=delay, err=stderr.decode("utf-8", "replace").strip()[-200:])
            self.splicer.splice()
            gone = self.reactor.seconds() - (self._last_out or self.reactor.seconds())
            self.splicer.gap = int((gone + delay) * PCR_HZ)      # the picture resumes when it does
            self.process = None
            self._restart = self.reactor.callLater(delay, self._spawn)
            return
        if self.rtp_port is not None:
            self.rtp_port.stopListening()
            self.rtp_port = None
        if self.consumer is not None:
            if not self.rtp_input and code in (0, None) and not stopping:
                tail = self.splicer.flush()           # the stream ended: its last PESes are whole
                if tail:
                    self.consumer.write(tail)
            self.consumer.unregisterProducer()
        if not self._done.called:
            code = getattr(reason.value, "exitCode", 0)
            if code not in (0, None) and not getattr(self, "_stopping", False):
                self._done.errback(FileUnavailable(
                    f"the encoder failed ({code}): {stderr.decode('utf-8', 'replace').strip()[-300:]}"))
            else:
                self._done.callback(None)

    def pauseProducing(self) -> None:
        self._paused = True
        if self.process is not None and not self.rtp_input:
            self.process.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        if self.process is not None and not self.rtp_input:
            self.process.resumeProducing()

    def stopProducing(self) -> None:
        self._stopping = True
        restart = getattr(self, "_restart", None)
        if restart is not None and restart.active():
            restart.cancel()                          # between two runs: nothing to stop but that
            self._ended(Failure(error.ProcessDone(0)), b"")
            return
        if self.process is not None:
            try:
                self.process.signalProcess(signal.SIGTERM)
            except error.ProcessExitedAlready:
                return
            self.reactor.callLater(KILL_AFTER, self._kill, self.process)

    @staticmethod
    def _kill(process: Any) -> None:
        """SIGKILL for an encoder that did not end on SIGTERM."""
        try:
            process.signalProcess(signal.SIGKILL)
        except error.ProcessExitedAlready:
            pass


@implementer(IMediaSource)
class LoopingFileSource:
    """A stored TS clip repeated without end: the built-in live source when no
    encoder is installed. Paced by the sender like any stored stream. Each loop is
    spliced onto the last (:class:`~cccp.wire.ts.Splicer`): the counters run on and the
    PCR and timestamps keep going forward, so a player sees one stream, not a jump back
    to the start at every loop."""

    live = False
    rtp_input = False
    length = None

    def __init__(self, path: str, chunk: int = 188 * 348) -> None:
        self.path = path
        self.chunk = chunk
        self._file = open(path, "rb")
        self.consumer: IConsumer | None = None
        self._done: defer.Deferred[None] = defer.Deferred()
        self.splicer = Splicer()
        self.loops = 0

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        self.consumer = consumer
        consumer.registerProducer(self, False)
        return self._done

    def resumeProducing(self) -> None:
        if self.consumer is None:
            return
        for _ in range(256):                         # until something goes out (a pull writes)
            data = self._file.read(self.chunk)
            out = self.splicer.feed(data) if data else b""
            if len(data) < self.chunk:
                self.splicer.splice(complete=True)   # the clip's end: its last PESes are whole
                self._file.seek(0)
                self.loops += 1
            if out:
                self.consumer.write(out)
                return

    def pauseProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.consumer = None
        self._file.close()
        if not self._done.called:
            self._done.callback(None)


@implementer(IMediaStore)
class MediaLibrary:
    """A folder of media plus live "dummy filenames": ``/live/testpattern``,
    ``/live/v4l2`` (if ``/dev/video0`` exists) and ``/tape`` (with a tape deck)."""

    def __init__(self, files: FileMediaStore, reactor: Any, deck: ITapeDeck | None = None,
                 encoder: str | None = "auto", v4l2_device: str = "/dev/video0",
                 tape_clip: str | None = None, close_after: float = CLOSE_AFTER,
                 bitrate: int = 2_000_000) -> None:
        self.files = files
        #: The live encoder's video bit rate.
        self.bitrate = bitrate
        self.reactor = reactor
        self.deck = deck
        self.encoder = ffmpeg_path() if encoder == "auto" else encoder
        self.v4l2_device = v4l2_device
        self.sample = sample_clip_path()
        #: The clip repeated along the deck's tape (the sample clip unless told).
        self.tape_clip = tape_clip or self.sample
        self.indexes = IndexCache(reactor)
        self._tape: Tape | None = None
        #: The live sources running: one encoder per source and payload type, whatever
        #: the number of viewers.
        self.live = LiveSources(reactor, close_after)

    def close(self) -> None:
        """Stop the live sources (the server stops)."""
        self.live.close()

    @property
    def tape(self) -> Tape:
        """What is on the deck's tape: the sample clip repeated along it, and what was
        recorded onto it."""
        if self._tape is None:
            if self.deck is None or self.tape_clip is None:
                raise FileUnavailable("no tape: no deck, or no clip to put on it")
            self._tape = tape_of(self.tape_clip, self.indexes, float(self.deck.commands()["PLAY"][1]))
        return self._tape

    @property
    def writable(self) -> bool:
        return self.files.writable

    def _live_names(self) -> list[str]:
        names = ["testpattern"]
        if self.encoder and os.path.exists(self.v4l2_device):
            names.append("v4l2")
        return names

    def _virtual(self, path: str) -> str:
        import posixpath
        return posixpath.normpath("/" + path.lstrip("/"))

    def isdir(self, path: str) -> bool:
        if self._virtual(path) == LIVE_DIR:
            return True
        return self.files.isdir(path)

    def stat(self, path: str) -> Entry:
        v = self._virtual(path)
        now = time.time()
        if v == LIVE_DIR:
            return Entry("live", True, 0, now, 0o555)
        if v.startswith(LIVE_DIR + "/") and v[len(LIVE_DIR) + 1:] in self._live_names():
            return Entry(v.rsplit("/", 1)[1], False, 0, now, 0o444)
        if v == TAPE_PATH and self.deck is not None:
            return Entry("tape", False, 0, now, 0o444)
        return self.files.stat(path)

    def listdir(self, path: str) -> list[Entry]:
        v = self._virtual(path)
        now = time.time()
        if v == LIVE_DIR:
            return [Entry(n, False, 0, now, 0o444) for n in self._live_names()]
        if v.startswith(LIVE_DIR + "/") or (v == TAPE_PATH and self.deck is not None):
            return [self.stat(path)]
        entries = self.files.listdir(path)
        if v == "/":
            extra = [Entry("live", True, 0, now, 0o555)]
            if self.deck is not None:
                extra.append(Entry("tape", False, 0, now, 0o444))
            entries = sorted(entries + [e for e in extra if e.name not in {x.name for x in entries}],
                             key=lambda e: e.name)
        return entries

    def open(self, path: str, offset: int = 0, payload_type: int = RTP_MP2T) -> IMediaSource:
        v = self._virtual(path)
        if v == TAPE_PATH and self.deck is not None:
            if payload_type != RTP_MP2T:
                raise ParameterNotImplemented("the tape is sent as MPEG2-TS (RTP payload type 33) only")
            if not hasattr(self.deck, "motion_at"):
                raise FileUnavailable("this tape deck's output cannot be sent (it has no media)")
            return TapeSource(self.reactor, self.deck, self.tape)
        if v.startswith(LIVE_DIR + "/"):
            name = v[len(LIVE_DIR) + 1:]
            if name not in self._live_names():
                raise FileUnavailable(f"{path}: no such live source")
            if not self.encoder:
                if payload_type != RTP_MP2T:
                    raise ParameterNotImplemented(
                        f"RTP payload type {payload_type} needs an encoder (ffmpeg), which is not installed")
                if self.sample is None:
                    raise FileUnavailable("no encoder and no sample clip")
                return LoopingFileSource(self.sample)
            args = v4l2_input(self.v4l2_device) if name == "v4l2" else test_pattern_input()
            if payload_type != RTP_MP2T and payload_type not in RTP_ENCODINGS:
                raise ParameterNotImplemented(f"RTP payload type {payload_type} is not available from the encoder")
            encoder, bitrate = self.encoder, self.bitrate
            return self.live.open(name, payload_type, lambda: EncoderSource(
                self.reactor, args, payload_type=payload_type, executable=encoder, bitrate=bitrate),
                rtp_input=payload_type != RTP_MP2T)
        return self.files.open(path, offset, payload_type)

    def receive(self, path: str) -> IRecording:
        v = self._virtual(path)
        if v == TAPE_PATH and self.deck is not None:
            op, pos = self.deck.state()
            if op != "RECO":
                raise RemoteProtocolError("the tape deck is not recording: send RECO first", 550)
            if not self.writable:
                raise RemoteProtocolError(f"{path}: this store is read-only", 553)
            folder = getattr(self.files, "root", None)
            return TapeRecording(self.reactor, self.tape, float(pos), folder=folder)
        if v == TAPE_PATH or v == LIVE_DIR or v.startswith(LIVE_DIR + "/"):
            raise RemoteProtocolError(f"{path} is a live source: it cannot be stored to", 553)
        return self.files.receive(path)
