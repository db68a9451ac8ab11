"""What the store reads of pictures: their format from the first bytes, their size
from the header, the thumbnail embedded in their EXIF, and thumbnails made with
Pillow (slow: off the reactor thread) within a pixel limit, or a placeholder."""

from __future__ import annotations

import io
import struct

from ..wire.constants import ObjectFormat

__all__ = [
    "IMAGE_FORMATS",
    "MAX_THUMB_PIXELS",
    "MAX_THUMB_PIXELS_JPEG",
    "THUMB_SIZE",
    "exif_thumbnail",
    "header_size",
    "image_size",
    "make_thumbnail",
    "placeholder_thumbnail",
    "sniff_format",
    "thumbnail_size",
]

THUMB_SIZE = (160, 120)
#: Images with more pixels are not decoded for a thumbnail (a placeholder is sent): a
#: 10 KB PNG can declare 9000×9000 pixels. JPEGs decode at 1/8 scale (draft mode).
MAX_THUMB_PIXELS = 36_000_000
MAX_THUMB_PIXELS_JPEG = 400_000_000

def sniff_format(head: bytes, name: str = "") -> int:
    """The PTP ObjectFormat of a file from its first bytes (and, failing that, its name)."""
    if head.startswith(b"\xff\xd8\xff"):
        return ObjectFormat.EXIF_JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ObjectFormat.PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ObjectFormat.GIF
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ObjectFormat.DNG if name.lower().endswith(".dng") else ObjectFormat.TIFF
    if head[:2] == b"BM":
        return ObjectFormat.BMP
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ObjectFormat.WAV
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return ObjectFormat.AVI
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return ObjectFormat.MP3
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3") or (
            len(head) > 188 and head[0] == 0x47 and head[188] == 0x47):
        return ObjectFormat.MPEG
    if head[:4] == b"FORM" and head[8:12] == b"AIFF":
        return ObjectFormat.AIFF
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]):
        if name.lower().endswith((".htm", ".html")):
            return ObjectFormat.HTML
        if name.lower().endswith(".sh"):
            return ObjectFormat.Script
        return ObjectFormat.Text
    return ObjectFormat.Undefined


IMAGE_FORMATS = frozenset({ObjectFormat.EXIF_JPEG, ObjectFormat.JFIF, ObjectFormat.PNG, ObjectFormat.GIF,
                           ObjectFormat.TIFF, ObjectFormat.BMP, ObjectFormat.TIFF_EP})


def exif_thumbnail(head: bytes) -> bytes | None:
    """The JPEG thumbnail embedded in a JPEG's EXIF APP1 segment, if any."""
    if not head.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(head) and head[pos] == 0xFF:
        marker = head[pos + 1]
        seglen = struct.unpack_from(">H", head, pos + 2)[0]
        if marker == 0xE1 and head[pos + 4:pos + 10] == b"Exif\x00\x00":
            tiff = head[pos + 10:pos + 2 + seglen]
            return _thumb_from_tiff(tiff)
        if marker in (0xDA, 0xD9):
            return None
        pos += 2 + seglen
    return None


def _thumb_from_tiff(tiff: bytes) -> bytes | None:
    try:
        order = "<" if tiff[:2] == b"II" else ">"
        (ifd0,) = struct.unpack_from(order + "I", tiff, 4)
        (n,) = struct.unpack_from(order + "H", tiff, ifd0)
        (ifd1,) = struct.unpack_from(order + "I", tiff, ifd0 + 2 + 12 * n)
        if not ifd1:
            return None
        (n1,) = struct.unpack_from(order + "H", tiff, ifd1)
        offset = length = None
        for i in range(n1):
            tag, _typ, _cnt, val = struct.unpack_from(order + "HHII", tiff, ifd1 + 2 + 12 * i)
            if tag == 0x0201:
                offset = val
            elif tag == 0x0202:
                length = val
        if offset and length and offset + length <= len(tiff):
            thumb = tiff[offset:offset + length]
            return thumb if thumb.startswith(b"\xff\xd8") else None
    except struct.error:
        return None
    return None


#: JPEG start-of-frame markers (baseline, extended, progressive, lossless...; not DHT, JPG, DAC).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def header_size(head: bytes) -> tuple[int, int, int] | None:
    """(width, height, bit depth) from the first bytes of a JPEG, PNG or GIF, without
    Pillow (what a listing of a large card costs per picture); None when the header is
    not in *head* or the format is another."""
    try:
        if head.startswith(b"\xff\xd8"):
            pos = 2
            while pos + 4 <= len(head):
                if head[pos] != 0xFF:
                    return None
                marker = head[pos + 1]
                if marker == 0xFF:                     # fill byte
                    pos += 1
                    continue
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    pos += 2
                    continue
                seglen = struct.unpack_from(">H", head, pos + 2)[0]
                if marker in _SOF:
                    bits, height, width, comps = struct.unpack_from(">BHHB", head, pos + 4)
                    return (width, height, bits * comps) if width and height else None
                if marker in (0xDA, 0xD9) or seglen < 2:
                    return None
                pos += 2 + seglen
            return None
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            width, height, bits, colour = struct.unpack_from(">IIBB", head, 16)
            channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 3)
            return width, height, bits * channels
        if head[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack_from("<HH", head, 6)
            return width, height, 8
    except struct.error:
        return None
    return None


def make_thumbnail(path: str) -> tuple[bytes, int, int] | None:
    """A JPEG thumbnail (bytes, width, height) of an image file, made with Pillow, or
    None when it cannot be decoded or has more pixels than the limit. Slow: run it
    off the reactor thread."""
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(path) as src:
            limit = MAX_THUMB_PIXELS_JPEG if src.format == "JPEG" else MAX_THUMB_PIXELS
            if src.width * src.height > limit:
                return None
            src.draft("RGB", THUMB_SIZE)
            im = src.convert("RGB")
            im.thumbnail(THUMB_SIZE)
            out = io.BytesIO()
            im.save(out, "JPEG", quality=80)
            return out.getvalue(), im.width, im.height
    except Exception:
        return None


_placeholder: tuple[bytes, int, int] | None = None


def placeholder_thumbnail() -> tuple[bytes, int, int]:
    """The thumbnail of an image that cannot be shown: a grey card with a cross. Sent
    instead of NoThumbnailPresent, because libgphoto2 asks every object for one and
    ``gphoto2 --get-all-thumbnails`` stops at the first error."""
    global _placeholder
    if _placeholder is None:
        from PIL import Image, ImageDraw
        w, h = THUMB_SIZE
        im = Image.new("RGB", (w, h), (96, 96, 96))
        d = ImageDraw.Draw(im)
        d.rectangle((4, 4, w - 5, h - 5), outline=(200, 200, 200), width=2)
        d.line((4, 4, w - 5, h - 5), fill=(200, 200, 200), width=2)
        d.line((4, h - 5, w - 5, 4), fill=(200, 200, 200), width=2)
        out = io.BytesIO()
        im.save(out, "JPEG", quality=70)
        _placeholder = (out.getvalue(), w, h)
    return _placeholder


def thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """The size of the thumbnail of a *width* × *height* image (fitted in THUMB_SIZE)."""
    if not width or not height:
        return 0, 0
    scale = min(THUMB_SIZE[0] / width, THUMB_SIZE[1] / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def image_size(path: str) -> tuple[int, int, int]:
    """(width, height, bit depth) read from the image header with Pillow, or zeros."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            depth = {"1": 1, "L": 8, "P": 8, "RGB": 24, "RGBA": 32, "CMYK": 32, "I;16": 16}.get(im.mode, 24)
            return im.width, im.height, depth
    except Exception:
        return 0, 0, 0
