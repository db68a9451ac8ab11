"""Live view: the sources (test card with the settings, a folder, a video file through
ffmpeg), the standard camera's PTP 1.1 streams, and the initiator's ``liveview()`` with
other operations interleaved, over real sockets on 127.0.0.1."""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Any

import pytest
import pytest_twisted
from PIL import Image, ImageChops, ImageStat
from twisted.internet import defer, task
from twisted.python import usage

from cccp.wire.rtpjpeg import parse_jpeg
from ptpip.client import PTPClient
from ptpip.devices.liveview import (
    MAX_FRAME,
    FfmpegLiveView,
    FolderLiveView,
    JPEGSplitter,
    ViewSettings,
    camera_settings,
    draw_live_frame,
    parse_comment,
)
from ptpip.devices.profiles import get_profile
from ptpip.liveview import NoLiveView
from ptpip.wire.constants import DataType, DevicePropCode, ResponseCode
from ptpip.wire.constants import OperationCode as Op
from ptpip.wire.datasets import StreamInfo, pack_value
from ptpip.wire.errors import OperationError
from ptpip.wire.vendor import CanonEOSProp

from ..conftest import make_tree, start_responder, stop_responder
from .test_profiles import Driver, _Frames

FFMPEG = shutil.which("ffmpeg")


def _image(jpeg: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(jpeg))
    im.load()
    return im


def _brightness(jpeg: bytes) -> float:
    return ImageStat.Stat(_image(jpeg).convert("L")).mean[0]


# -- the test card ------------------------------------------------------------------------
def test_the_card_shows_the_settings_and_exposure_and_zoom_change_the_picture(tmp_path):
    d = Driver(tmp_path, "generic")
    props = d.camera.properties
    plain = draw_live_frame(640, 480, 1, camera_settings(d.camera))
    facts = parse_comment(plain)
    assert (facts["n"], facts["ev"], facts["zoom"], facts["FNumber"], facts["ExposureBias"]) == \
        ("1", "+0.0", "1.0", "5.6", "+0.0")
    props.set(DevicePropCode.ExposureBiasCompensation, 1000)
    brighter = draw_live_frame(640, 480, 1, camera_settings(d.camera))
    assert parse_comment(brighter)["ev"] == "+1.0"
    assert _brightness(brighter) > _brightness(plain) * 1.2
    props.set(DevicePropCode.ExposureBiasCompensation, -1000)
    assert _brightness(draw_live_frame(640, 480, 1, camera_settings(d.camera))) < _brightness(plain) * 0.8
    props.set(DevicePropCode.ExposureBiasCompensation, 0)
    props.set(DevicePropCode.DigitalZoom, 20)
    zoomed = draw_live_frame(640, 480, 1, camera_settings(d.camera))
    assert parse_comment(zoomed)["zoom"] == "2.0"
    # The centre doubled: the colour bars are twice as wide, so the picture differs a lot.
    diff = ImageStat.Stat(ImageChops.difference(_image(plain), _image(zoomed)).convert("L")).mean[0]
    assert diff > 20


def test_the_eos_card_shows_its_exposure_compensation(tmp_path):
    d = Driver(tmp_path, "canon-eos")
    assert parse_comment(draw_live_frame(320, 240, 1, camera_settings(d.camera)))["ExpCompensation"] == "+0.0"
    d.camera.properties.set(CanonEOSProp.ExpCompensation, 0xF8)           # -1 stop
    s = camera_settings(d.camera)
    assert s.ev == -1.0 and dict(s.lines)["ExpCompensation"] == "-1.0"
    d.camera.properties.set(CanonEOSProp.ExpCompensation, 0x05)           # +2/3
    assert round(camera_settings(d.camera).ev, 2) == 0.67


def test_frames_go_as_rtp_jpeg_without_re_encoding():
    """The card is a baseline 4:2:0 JPEG with the standard Huffman tables (RFC 2435)."""
    f = parse_jpeg(draw_live_frame(640, 480, 3, ViewSettings()))
    assert (f.width, f.height, f.type, len(f.tables)) == (640, 480, 1, 128)


# -- the standard camera's PTP 1.1 streams -----------------------------------------------
def test_a_standard_camera_offers_ptp11_streams_and_a_vendor_camera_does_not(tmp_path):
    d = Driver(tmp_path, "generic")
    d.camera.live_view = _Frames()
    info = d.camera.deviceInfo()
    assert {Op.GetStreamInfo, Op.GetStream} <= set(info.operations_supported)
    assert {DevicePropCode.SupportedStreams, DevicePropCode.EnabledStreams} <= set(info.device_properties_supported)
    assert d.op(Op.GetDevicePropValue, DevicePropCode.SupportedStreams).data == pack_value(DataType.UINT32, 1)
    with pytest.raises(OperationError) as e:
        d.op(Op.GetStream)                                                # video not enabled yet
    assert e.value.response_code == ResponseCode.AccessDenied
    for stream in (0, 1):                                                 # gphoto2 asks with both
        data = d.op(Op.GetStreamInfo, stream).data
        assert len(data) == 36 and StreamInfo.decode(data).frame_max_size == MAX_FRAME
    with pytest.raises(OperationError) as e:
        d.op(Op.GetStreamInfo, 7)
    assert e.value.response_code == ResponseCode.InvalidParameter
    d.op(Op.SetDevicePropValue, DevicePropCode.EnabledStreams, data=pack_value(DataType.UINT32, 1))
    assert d.op(Op.GetStream).data == b"\xff\xd8frame1\xff\xd9"          # a bare JPEG, no header
    assert d.op(Op.GetStream).data == b"\xff\xd8frame2\xff\xd9"
    for name in ("canon-eos", "nikon"):
        v = Driver(tmp_path / name, name)
        assert Op.GetStream not in v.camera.deviceInfo().operations_supported
        assert DevicePropCode.EnabledStreams not in v.camera.properties.supported()


def test_a_camera_without_live_view_has_no_streams(tmp_path):
    from ptpip.devices.camera import filesystem_camera
    root = tmp_path / "card"
    root.mkdir()
    cam = filesystem_camera(str(root), scan_interval=None, live_view="none")
    assert cam.live_view is None and Op.GetStream not in cam.deviceInfo().operations_supported


# -- the other sources --------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_folder_source_shows_each_picture_in_turn_as_a_plain_jpeg(tmp_path):
    from ptpip.devices.capture import draw_test_card
    folder = tmp_path / "shots"
    folder.mkdir()
    Image.new("RGB", (1200, 900), (200, 10, 10)).save(folder / "a.png")
    (folder / "b.jpg").write_bytes(draw_test_card(800, 600))              # with an EXIF thumbnail
    (folder / "notes.txt").write_text("not a picture")
    clock = task.Clock()
    source = FolderLiveView(clock, str(folder), rate=2.0)
    first = await source.frame()
    assert _image(first).size == (640, 480) and _image(first).getpixel((10, 10))[0] > 150
    clock.advance(0.5)
    second = await source.frame()
    assert second != first and b"Exif" not in second and second.count(b"\xff\xd8") == 1
    assert _image(second).size == (640, 480)
    clock.advance(0.5)
    assert await source.frame() == first                                   # round again, cached
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OSError, match="no pictures"):
        await FolderLiveView(clock, str(empty)).frame()


def test_the_splitter_cuts_concatenated_jpegs_whatever_the_chunks():
    frames = [b"\xff\xd8" + bytes([n]) * (300 + n) + b"\xff\xd9" for n in range(1, 6)]
    stream = b"junk" + b"".join(frames)
    for size in (1, 7, 64, len(stream)):
        s, got = JPEGSplitter(), []
        for i in range(0, len(stream), size):
            got += s.feed(stream[i:i + size])
        assert got == frames
    s = JPEGSplitter()
    s.feed(b"\xff\xd8" + b"\0" * (MAX_FRAME + 10))
    assert s.buffer == b""                                                  # an endless frame is dropped


@pytest.fixture
def video(tmp_path: Any) -> str:
    assert FFMPEG, "ffmpeg is needed (.ci/run installs it)"
    path = str(tmp_path / "clip.mp4")
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "2",
                    "-pix_fmt", "yuv420p", path], check=True)
    return path


@pytest_twisted.ensureDeferred
async def test_a_video_file_source_decodes_with_ffmpeg_newest_frame_first_and_stops_when_idle(reactor, video):
    source = FfmpegLiveView.from_file(reactor, video, rate=20, width=320, idle=1.0)
    frames = []
    for _ in range(10):
        frames.append(await source.frame())
        await task.deferLater(reactor, 0.06, lambda: None)
    assert len(set(frames)) >= 5                                             # it moves
    for jpeg in frames:
        assert _image(jpeg).size == (320, 240)
        parse_jpeg(jpeg)                          # standard tables: goes as RTP/JPEG as it is
    assert source.process is not None
    await task.deferLater(reactor, 1.5, lambda: None)
    assert source.process is None                                           # idle: ffmpeg stopped
    assert (await source.frame())[:2] == b"\xff\xd8"                         # and starts again
    source.stop()


@pytest_twisted.ensureDeferred
async def test_a_video_source_that_cannot_start_says_why(reactor, tmp_path):
    source = FfmpegLiveView.from_file(reactor, str(tmp_path / "missing.mp4"), idle=1.0)
    with pytest.raises(OSError, match=r"missing\.mp4"):
        await source.frame()


def test_the_responder_checks_the_live_view_option(tmp_path, video):
    from ptpip.tap import Options
    for bad, why in ((str(tmp_path / "nope"), "no such folder or video file"),
                     ("v4l2:/dev/video99", "no V4L2 device")):
        with pytest.raises(usage.UsageError, match=why):
            Options().parseOptions(["--live-view", bad])
    for good in ("testcard", "none", str(tmp_path), video, f"file:{video}"):
        Options().parseOptions(["--live-view", good])


# -- the initiator ------------------------------------------------------------------------
@pytest.fixture(params=["generic", "canon-eos", "nikon"])
def profile(request: Any) -> str:
    return request.param


@pytest_twisted.ensureDeferred
async def test_liveview_interleaves_with_downloads_and_property_changes(reactor, tmp_path, profile):
    """``PTPClient.liveview()`` on each path; a download and a property change while it
    runs both work, and the frame after the change shows it."""
    root = tmp_path / "card"
    root.mkdir()
    files = make_tree(str(root))
    r = await start_responder(reactor, str(root), profile=get_profile(profile))
    client = await PTPClient.connect(reactor, "127.0.0.1", r.port)
    try:
        handle = await client.findPath("/DCIM/100TEST/IMG_0001.JPG")
        evs, downloads = [], []
        async with client.liveview(frames=12) as view:
            async for jpeg in view:
                assert _image(jpeg).size == (640, 480)
                evs.append(parse_comment(jpeg)["ev"])
                if view.count == 4:
                    # Not awaited before the next frame is asked for: the session queues them.
                    downloads.append(defer.ensureDeferred(_fetch(client, handle)))
                    if profile == "canon-eos":
                        from ptpip.vendors import EOS
                        await EOS(client).set(CanonEOSProp.ExpCompensation, 0x08)
                    else:
                        await client.setDevicePropValue(DevicePropCode.ExposureBiasCompensation, 1000,
                                                        DataType.INT16)
        assert view.count == 12 and evs[:4] == ["+0.0"] * 4 and evs[4:] == ["+1.0"] * 8, evs
        assert (await downloads[0]) == files["DCIM/100TEST/IMG_0001.JPG"]
        off = {"generic": (DevicePropCode.EnabledStreams, 0), "canon-eos": (CanonEOSProp.EVFOutputDevice, 0),
               "nikon": (0xD1A2, 0)}[profile]
        assert r.camera.properties.get(off[0]) == off[1]                   # switched off at the end
    finally:
        await client.close()
        await stop_responder(r)


async def _fetch(client: PTPClient, handle: int) -> bytes:
    r = await client.call(Op.GetObject, handle)
    return bytes(r.data or b"")


@pytest_twisted.ensureDeferred
async def test_liveview_on_a_camera_without_one_says_so(reactor, tmp_path):
    root = tmp_path / "card"
    root.mkdir()
    r = await start_responder(reactor, str(root))
    r.camera.live_view = None
    r.camera._operations = None
    client = await PTPClient.connect(reactor, "127.0.0.1", r.port)
    try:
        with pytest.raises(NoLiveView, match="no live view"):
            async for _ in client.liveview():
                pass
    finally:
        await client.close()
        await stop_responder(r)



@pytest_twisted.ensureDeferred
async def test_a_folder_source_gives_each_caller_its_own_picture_while_converting(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    Image.new("RGB", (800, 600), (220, 0, 0)).save(folder / "a.png")
    Image.new("RGB", (800, 600), (0, 0, 220)).save(folder / "b.png")
    clock = task.Clock()
    source = FolderLiveView(clock, str(folder), rate=2.0)
    first = source.frame()                       # a.png, being converted
    clock.advance(0.5)
    second = source.frame()                      # b.png, asked for before a.png is done
    red, blue = _image(await first).getpixel((5, 5)), _image(await second).getpixel((5, 5))
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0]
    clock.advance(0.5)
    assert _image(await source.frame()).getpixel((5, 5))[0] > 150      # a.png again, from the cache


def test_write_now_leaves_any_transport_but_plain_tcp_to_its_own_write():
    from twisted.internet.testing import StringTransport
    from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

    from ptpip.sockets import write_now
    plain = StringTransport()
    write_now(plain, [b"ab", b"cd"])
    assert plain.value() == b"abcd"
    inner = StringTransport()
    class Quiet:
        def makeConnection(self, transport: Any) -> None:
            pass
    factory = WrappingFactory(None)
    wrapper = ProtocolWrapper(factory, Quiet())            # what TLS and policies put in between
    wrapper.makeConnection(inner)
    write_now(wrapper, [b"xy"])
    assert inner.value() == b"xy"
