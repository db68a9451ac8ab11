"""A bridged PTP-IP camera's live view as the CCCP live source ``/live/camera``.

One :class:`CameraViewfinder` per bridge runs the camera's live view
(:meth:`ptpip.client.PTPClient.liveview`, whichever path the camera takes) while at least
one viewer watches, and hands every frame to each of them; when the last viewer leaves
(ABOR, a data connection that closes) it switches the camera's live view off. A viewer
that cannot keep up misses frames: the newest frame wins, nothing queues.

Two kinds of viewer, by the TYPE asked for:

- :class:`RTPJPEGSource` (``TYPE I R 26``): the camera's JPEGs sent as they are in
  RTP/JPEG packets (RFC 2435, :mod:`cccp.wire.rtpjpeg`), without an encoder; a frame that
  RFC 2435 cannot carry as it is (other Huffman tables, 4:4:4, over 2040 pixels) is
  re-encoded by Pillow in a thread.
- :class:`CameraEncoderSource` (``TYPE I M``, ``R 33`` and ``R 32``): ffmpeg makes MPEG-2
  video from the frames written to its stdin.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, threads
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .devices.live import EncoderSource
from .interfaces import IMediaSource
from .wire.errors import FileUnavailable
from .wire.rtpjpeg import MAX_SIDE, JPEGPacketizer, UnsupportedJPEG, parse_jpeg

LIVE_CAMERA = "/live/camera"
#: ffmpeg input options for JPEG frames written to its stdin at whatever rate they come.
MJPEG_STDIN = ["-f", "mjpeg", "-use_wallclock_as_timestamps", "1", "-i", "pipe:0",
               "-vf", "fps=25,scale=trunc(iw/2)*2:trunc(ih/2)*2", "-pix_fmt", "yuv420p"]

log = Logger()


class Viewer:
    """What a :class:`CameraViewfinder` calls: :meth:`frame` for each frame and
    :meth:`ended` once when live view stops (None) or fails."""

    def frame(self, jpeg: bytes) -> None:
        raise NotImplementedError

    def ended(self, failure: Failure | None) -> None:
        raise NotImplementedError


class CameraViewfinder:
    """The camera's live view shared by every viewer of ``/live/camera``.

    :param client: returns the current :class:`~ptpip.client.PTPClient` (None while the
        camera is away).
    """

    def __init__(self, reactor: Any, client: Callable[[], Any]) -> None:
        self.reactor = reactor
        self.client = client
        self.viewers: list[Viewer] = []
        #: Frames fetched from the camera since the bridge started.
        self.frames = 0
        #: Times the camera's live view was switched on.
        self.sessions = 0
        self._running: defer.Deferred[None] | None = None

    def available(self) -> bool:
        """Whether the connected camera has a live view path the initiator knows."""
        from ptpip.liveview import live_view_path
        c = self.client()
        return c is not None and c.device_info is not None and live_view_path(c) is not None

    def subscribe(self, viewer: Viewer) -> Callable[[], None]:
        """Start watching; returns the function that stops."""
        self.viewers.append(viewer)
        self._start()
        return lambda: self._leave(viewer)

    def _start(self) -> None:
        if self._running is not None:
            return
        d = defer.Deferred.fromCoroutine(self._run())
        d.addErrback(lambda f: log.failure("camera live view", f))
        if not d.called:                 # (a start that failed at once is over already)
            self._running = d

    def _leave(self, viewer: Viewer) -> None:
        if viewer in self.viewers:
            self.viewers.remove(viewer)

    async def _run(self) -> None:
        failure: Failure | None = None
        try:
            client = self.client()
            if client is None:
                raise FileUnavailable("the camera is not connected")
            self.sessions += 1
            async with client.liveview(self.reactor) as view:
                async for jpeg in view:
                    self.frames += 1
                    for v in list(self.viewers):
                        try:
                            v.frame(jpeg)
                        except Exception:         # one viewer's trouble is not the others'
                            log.failure("a viewer of the camera's live view failed on a frame")
                            self._leave(v)
                            v.ended(Failure())
                    if not self.viewers:
                        break
        except Exception:
            failure = Failure()
        finally:
            self._running = None
            if failure is None and self.viewers:
                # Viewers came while live view was being switched off: switch it on again.
                self.reactor.callLater(0, self._start)
            else:
                viewers, self.viewers = self.viewers, []
                for v in viewers:
                    v.ended(failure)


def reencode(jpeg: bytes) -> bytes:
    """A JPEG RFC 2435 can carry: baseline 4:2:0, standard tables, at most 2040 a side."""
    from PIL import Image
    with Image.open(io.BytesIO(jpeg)) as f:
        im = f.convert("RGB")
    im.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=80, subsampling=2, optimize=False)
    return out.getvalue()


@implementer(IMediaSource)
class RTPJPEGSource(Viewer):
    """``/live/camera`` as RTP/JPEG (payload type 26): one RTP packet per write."""

    live = True
    rtp_input = True
    length = None

    def __init__(self, reactor: Any, viewfinder: CameraViewfinder) -> None:
        self.reactor = reactor
        self.viewfinder = viewfinder
        self.packetizer = JPEGPacketizer()
        self.consumer: IConsumer | None = None
        self.paused = False
        self.dropped = 0
        self._leave: Callable[[], None] | None = None
        self._converting = False
        self._done: defer.Deferred[None] = defer.Deferred()

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        self.consumer = consumer
        consumer.registerProducer(self, True)
        self._leave = self.viewfinder.subscribe(self)
        return self._done

    def frame(self, jpeg: bytes) -> None:
        if self.consumer is None or self.paused or self._converting:
            self.dropped += 1
            return
        try:
            self._send(parse_jpeg(jpeg))
        except UnsupportedJPEG:
            self._converting = True
            d = threads.deferToThread(reencode, jpeg)
            d.addCallback(lambda fixed: self._send(parse_jpeg(fixed)) if self.consumer is not None else None)
            d.addErrback(lambda f: log.failure("a live view frame RFC 2435 cannot carry", f))
            d.addBoth(lambda _: setattr(self, "_converting", False))

    def _send(self, frame: Any) -> None:
        if self.consumer is None:
            return
        for packet in self.packetizer.packetize(frame, self.reactor.seconds()):
            self.consumer.write(packet)

    def ended(self, failure: Failure | None) -> None:
        self._finish(failure)

    def _finish(self, failure: Failure | None) -> None:
        consumer, self.consumer = self.consumer, None
        if self._leave is not None:
            self._leave()
            self._leave = None
        if consumer is not None:
            consumer.unregisterProducer()
        if not self._done.called:
            if failure is not None:
                self._done.errback(FileUnavailable(f"the camera's live view stopped: {failure.getErrorMessage()}"))
            else:
                self._done.callback(None)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self._finish(None)


@implementer(IMediaSource)
class CameraEncoderSource(EncoderSource, Viewer):
    """``/live/camera`` as MPEG2-TS (or RTP MPV) made by ffmpeg from the frames; a frame
    that comes while ffmpeg has not taken the last one is dropped."""

    def __init__(self, reactor: Any, viewfinder: CameraViewfinder, payload_type: int,
                 executable: str | None = None) -> None:
        super().__init__(reactor, MJPEG_STDIN, payload_type=payload_type, executable=executable)
        self.viewfinder = viewfinder
        self.dropped = 0
        self._stdin_full = False
        self._leave: Callable[[], None] | None = None
        self._camera_failure: Failure | None = None

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        done = super().startProducing(consumer)
        if self.process is not None:
            self.process.registerProducer(_StdinPressure(self), True)
            self._leave = self.viewfinder.subscribe(self)
        return done

    def frame(self, jpeg: bytes) -> None:
        if self.process is None or self._stdin_full:
            self.dropped += 1
            return
        self.process.write(jpeg)

    def ended(self, failure: Failure | None) -> None:
        self._leave = None
        if failure is not None:
            self._camera_failure = failure
        self.stopProducing()

    def _ended(self, reason: Failure, stderr: bytes) -> None:
        if self._leave is not None:
            self._leave()
            self._leave = None
        failure = self._camera_failure
        if failure is not None and not self._done.called:
            if self.consumer is not None:
                self.consumer.unregisterProducer()
                self.consumer = None
            self._done.errback(FileUnavailable(f"the camera's live view stopped: {failure.getErrorMessage()}"))
        super()._ended(reason, stderr)

    def stopProducing(self) -> None:
        if self._leave is not None:
            self._leave()
            self._leave = None
        if self.process is not None:
            self.process.closeStdin()        # ffmpeg waiting on its input ignores SIGTERM
        super().stopProducing()


class _StdinPressure:
    """ffmpeg's stdin says when it is full: frames are dropped until it is not."""

    def __init__(self, source: CameraEncoderSource) -> None:
        self.source = source

    def pauseProducing(self) -> None:
        self.source._stdin_full = True

    def resumeProducing(self) -> None:
        self.source._stdin_full = False

    def stopProducing(self) -> None:
        self.source._stdin_full = True
