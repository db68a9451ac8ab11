"""The initiator's live view: a camera's viewfinder as an async iterator of JPEG frames.

:meth:`PTPClient.liveview() <ptpip.client.PTPClient.liveview>` returns a :class:`LiveView`;
it takes the camera's own path, as libgphoto2 does:

- a Canon EOS: EVFOutputDevice to the PC, then GetViewFinderData 0x9153 (NotReady 0xA102
  until frames flow), the viewfinder given back at the end;
- a Nikon: StartLiveView 0x9201, DeviceReady, GetLiveViewImg 0x9203 (a header before the
  JPEG), EndLiveView 0x9202 at the end;
- any other camera with PTP 1.1 streams: EnabledStreams 0x5021 to video, GetStream 0x1025
  for each frame, the streams disabled at the end.

Frames are asked for one at a time on the command channel, so other operations (a
download, a property change) interleave with live view: the session runs one
transaction at a time and queues the rest. Use it as::

    async with client.liveview(frames=100) as view:
        async for jpeg in view:
            ...

Leaving the ``async with`` (or :meth:`LiveView.aclose`) switches the camera's live view
off; so does reaching *frames* or *duration*.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any

from twisted.internet import task

from .vendors import EOS, Nikon, vendor_of
from .wire import eos
from .wire.constants import STREAM_VIDEO, DataType, DevicePropCode, ResponseCode
from .wire.constants import OperationCode as Op
from .wire.datasets import StreamInfo, pack_value
from .wire.errors import PTPIPError
from .wire.vendor import CanonEOSProp, CanonOp, NikonOp

#: Answers that mean "no frame yet, ask again".
NOT_READY = frozenset({0xA102, ResponseCode.DeviceBusy})
#: Seconds between asks while the camera has no frame yet.
RETRY = 0.01
#: Seconds of "not ready" answers before giving up (a camera whose live view never starts,
#: or stops sending frames).
START_TIMEOUT = 5.0


class NoLiveView(PTPIPError):
    """The camera has no live view this initiator knows, or it never started."""


def jpeg_in(data: bytes) -> bytes | None:
    """The JPEG in a live view frame: from its first SOI to the first EOI after it. A
    frame that ends with its EOI and has none in its headers (a bare JPEG as GetStream
    answers, or one behind Nikon's header) is taken without a search to its end."""
    start = 0 if data[:2] == b"\xff\xd8" else data.find(b"\xff\xd8")
    if start < 0:
        return None
    if data[-2:] == b"\xff\xd9" and data.find(b"\xff\xd9", start + 2, start + 4096) < 0:
        return data if start == 0 else data[start:]
    end = data.find(b"\xff\xd9", start + 2)
    return data[start:end + 2] if end >= 0 else None


def live_view_path(client: Any) -> str | None:
    """``"canon-eos"``, ``"nikon"``, ``"stream"`` (PTP 1.1) or None: the path the camera takes."""
    info = client.device_info
    vendor = vendor_of(info)
    if vendor == "canon-eos" and CanonOp.GetViewFinderData in info.operations_supported:
        return vendor
    if vendor == "nikon" and NikonOp.GetLiveViewImg in info.operations_supported:
        return vendor
    if Op.GetStream in info.operations_supported and DevicePropCode.EnabledStreams in info.device_properties_supported:
        return "stream"
    return None


class LiveView:
    """Frames of a camera's live view; see the module. *frames* and *duration* (0: no
    limit) end the iteration, after which live view is off."""

    def __init__(self, client: Any, reactor: Any = None, *, frames: int = 0, duration: float = 0.0) -> None:
        self.client = client
        self.reactor = reactor if reactor is not None else client.session.reactor
        self.frames = frames
        self.duration = duration
        self.path = live_view_path(client)
        #: Frames delivered so far.
        self.count = 0
        self._started: float | None = None
        self._on = False
        self._closed = False
        self._eos: EOS | None = None
        #: The video stream's StreamInfo (PTP 1.1 path), once started.
        self.stream_info: StreamInfo | None = None

    # -- async iterator and context manager --------------------------------------------
    def __aiter__(self) -> LiveView:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        if not self._on:
            try:
                await self._start()
            except BaseException:
                with contextlib.suppress(Exception):      # the start's own error is the one to see
                    await self.aclose()
                raise
        assert self._started is not None
        if (self.frames and self.count >= self.frames) or (
                self.duration and self.reactor.seconds() - self._started >= self.duration):
            await self.aclose()
            raise StopAsyncIteration
        since = self.reactor.seconds()
        while True:
            jpeg = await self._one()
            if jpeg is not None:
                self.count += 1
                return jpeg
            if self.reactor.seconds() - since >= START_TIMEOUT:
                await self.aclose()
                if self.count == 0:
                    raise NoLiveView(f"the camera had no live view frame within {START_TIMEOUT:g} s")
                raise NoLiveView(f"the camera stopped sending live view frames ({START_TIMEOUT:g} s without one)")
            await task.deferLater(self.reactor, RETRY, lambda: None)

    async def __aenter__(self) -> LiveView:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Switch the camera's live view off (once); the iteration ends."""
        if self._closed:
            return
        self._closed = True
        if self._on and not self.client.session.closed:
            self._on = False
            await self._stop()

    # -- the paths ------------------------------------------------------------------------
    async def _start(self) -> None:
        if self.path is None:
            self._closed = True
            raise NoLiveView("this camera has no live view the initiator knows "
                             "(Canon EOS, Nikon, or PTP 1.1 streams)")
        self._started = self.reactor.seconds()
        # On from the first step that switches it on: a start that fails after it is
        # switched off again (aclose).
        if self.path == "canon-eos":
            self._eos = EOS(self.client)
            await self._eos.prepare()
            if CanonEOSProp.EVFMode in self._eos.values:
                await self._eos.set(CanonEOSProp.EVFMode, 1)
            self._on = True
            await self._eos.set(CanonEOSProp.EVFOutputDevice, 2)
        elif self.path == "nikon":
            self._on = True
            await self.client.call(NikonOp.StartLiveView)
            await Nikon(self.client).wait_ready(self.reactor, 2.0, 0.02)
        else:
            self._on = True
            await self.client.setDevicePropValue(DevicePropCode.EnabledStreams, STREAM_VIDEO, DataType.UINT32)
            r = await self.client.call(Op.GetStreamInfo, 1)
            self.stream_info = StreamInfo.decode(r.data or b"")

    async def _one(self) -> bytes | None:
        """One frame, or None when the camera has none yet."""
        if self.path == "canon-eos":
            r = await self.client.session.request(CanonOp.GetViewFinderData, 0x00200000, 0, 0)
            if r.code in NOT_READY:
                return None
            r.check(CanonOp.GetViewFinderData)
            data = r.data or b""
            if len(data) >= 8:
                size, kind = struct.unpack_from("<II", data)
                if kind in (1, 11) and size == len(data):
                    return data[8:]                  # the one record of a frame: no walk
            return next((p for kind, p in eos.records(data, terminated=False) if kind in (1, 11)), None)
        code = NikonOp.GetLiveViewImg if self.path == "nikon" else Op.GetStream
        r = await self.client.session.request(code)
        if r.code in NOT_READY:
            return None
        r.check(code)
        return jpeg_in(r.data or b"")

    async def _stop(self) -> None:
        if self.path == "canon-eos":
            assert self._eos is not None
            await self._eos.set(CanonEOSProp.EVFOutputDevice, 0)
        elif self.path == "nikon":
            await self.client.session.request(NikonOp.EndLiveView)
        else:
            await self.client.session.request(Op.SetDevicePropValue, DevicePropCode.EnabledStreams,
                                              data=pack_value(DataType.UINT32, 0))
