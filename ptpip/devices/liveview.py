"""Live view frames: what a camera's viewfinder shows, as JPEGs for the vendor paths.

:class:`TestCardLiveView` draws a small moving test card (a frame counter and a bar
that sweeps across) in a thread, so the reactor never encodes. A frame is a plain
baseline JFIF with no EXIF thumbnail: libgphoto2 finds a Nikon or Fuji frame by its
first ``FF D8`` and the first ``FF D9`` after it.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.internet import defer, threads
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import ILiveViewSource
from .capture import card_image


def draw_live_frame(width: int, height: int, n: int) -> bytes:
    from PIL import ImageDraw
    im = card_image(width, height, stamp=f"LIVE {n:05d}", counter=n)
    d = ImageDraw.Draw(im)
    x = (n * max(4, width // 40)) % width
    d.rectangle([x, 0, x + max(4, width // 64), height], fill=(255, 64, 0))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=70)
    return out.getvalue()


@implementer(ILiveViewSource)
class TestCardLiveView:
    """A moving test card; one frame is drawn at a time (a caller asking meanwhile waits
    for the same frame), so a fast poller costs no more than one thread."""

    __test__ = False      # not a pytest test class

    def __init__(self, width: int = 640, height: int = 480) -> None:
        self.width = width
        self.height = height
        self.count = 0
        self._drawing: defer.Deferred[bytes] | None = None
        self._waiting: list[defer.Deferred[bytes]] = []

    def frame(self) -> defer.Deferred[bytes]:
        d: defer.Deferred[bytes] = defer.Deferred()
        self._waiting.append(d)
        if self._drawing is None:
            self.count += 1
            self._drawing = threads.deferToThread(draw_live_frame, self.width, self.height, self.count)
            self._drawing.addBoth(self._drawn)
        return d

    def _drawn(self, result: Any) -> None:
        self._drawing = None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
