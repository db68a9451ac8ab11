"""Capture sources: where InitiateCapture gets its new pictures."""

from __future__ import annotations

import io
import os
import struct
import time
from typing import Any

from twisted.internet import threads
from zope.interface import implementer

from ..interfaces import ICaptureSource
from ..wire.constants import ObjectFormat, ResponseCode
from ..wire.errors import OperationError


def draw_test_card(width: int = 1600, height: int = 1200, stamp: str | None = None,
                   counter: int = 0, quality: int = 88) -> bytes:
    """A JPEG test card: colour bars, a grey ramp, a circle and a time stamp (Pillow)."""
    im = card_image(width, height, stamp, counter)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    thumb = im.copy()
    thumb.thumbnail((160, 120))
    small = io.BytesIO()
    thumb.save(small, "JPEG", quality=75)
    return with_exif_thumbnail(out.getvalue(), small.getvalue())


def card_image(width: int, height: int, stamp: str | None = None, counter: int = 0) -> Any:
    """The test card as a Pillow image (for pictures and live view frames alike)."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (width, height), (16, 16, 16))
    d = ImageDraw.Draw(im)
    bars = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0),
            (192, 0, 192), (192, 0, 0), (0, 0, 192)]
    bar_h = height * 2 // 3
    bw = width / len(bars)
    for i, colour in enumerate(bars):
        d.rectangle([int(i * bw), 0, int((i + 1) * bw), bar_h], fill=colour)
    steps = 16
    for i in range(steps):
        g = 255 * i // (steps - 1)
        d.rectangle([int(i * width / steps), bar_h, int((i + 1) * width / steps), height * 5 // 6], fill=(g, g, g))
    r = min(width, height) // 4
    cx, cy = width // 2, height // 3
    d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(255, 255, 255), width=max(2, width // 300))
    d.line([cx - r, cy, cx + r, cy], fill=(255, 255, 255), width=2)
    d.line([cx, cy - r, cx, cy + r], fill=(255, 255, 255), width=2)
    text = stamp or time.strftime("%Y-%m-%d %H:%M:%S")
    size = max(12, height // 16)
    try:
        font: Any = ImageFont.load_default(size=size)
    except TypeError:
        font = ImageFont.load_default()
    d.text((width // 40, height * 5 // 6 + height // 40), f"ptpip  #{counter:04d}  {text}",
           fill=(255, 255, 255), font=font)
    return im


def with_exif_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """*jpeg* with an EXIF APP1 segment that carries *thumbnail* (a small JPEG) in IFD1,
    as cameras write their pictures: initiators show it without decoding the picture."""
    if not jpeg.startswith(b"\xff\xd8") or len(thumbnail) > 60_000:
        raise ValueError("a JPEG and a thumbnail of at most 60 kB are needed")
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1, 1) + struct.pack("<I", 26)
    thumb_at = 26 + 2 + 3 * 12 + 4
    ifd1 = struct.pack("<H", 3) + struct.pack("<HHII", 0x0103, 3, 1, 6) + \
        struct.pack("<HHII", 0x0201, 4, 1, thumb_at) + struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail)) + \
        struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + ifd1 + thumbnail
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


@implementer(ICaptureSource)
class TestCardCapture:
    """Draws a fresh test card with a time stamp for every capture (in a thread)."""

    __test__ = False      # not a pytest test class

    def __init__(self, width: int = 1600, height: int = 1200, prefix: str = "CAP_") -> None:
        self.width = width
        self.height = height
        self.prefix = prefix
        self.count = 0

    def capture(self, object_format: int = 0) -> Any:
        if object_format not in (0, ObjectFormat.EXIF_JPEG, ObjectFormat.JFIF):
            raise OperationError(ResponseCode.InvalidObjectFormatCode, f"cannot capture 0x{object_format:04X}")
        self.count += 1
        n = self.count
        name = f"{self.prefix}{n:04d}.JPG"
        d = threads.deferToThread(draw_test_card, self.width, self.height, None, n)
        return d.addCallback(lambda data: (name, data))


@implementer(ICaptureSource)
class FolderCapture:
    """Returns the files of a folder one after another, in name order, cycling."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._next = 0

    def capture(self, object_format: int = 0) -> tuple[str, bytes]:
        """The next picture; a folder that is gone or empty answers StoreNotAvailable (the
        camera has nothing to capture onto), a file that cannot be read GeneralError."""
        try:
            entries = os.listdir(self.folder)
        except OSError as e:
            raise OperationError(ResponseCode.StoreNotAvailable,
                                 f"capture folder {self.folder}: {e.strerror}") from None
        names = sorted(n for n in entries
                       if os.path.isfile(os.path.join(self.folder, n)) and not n.startswith("."))
        if not names:
            raise OperationError(ResponseCode.StoreNotAvailable, f"no pictures in {self.folder}")
        name = names[self._next % len(names)]
        self._next += 1
        path = os.path.join(self.folder, name)
        try:
            with open(path, "rb") as f:
                return name, f.read()
        except OSError as e:
            raise OperationError(ResponseCode.GeneralError, f"{path}: {e.strerror}") from None
