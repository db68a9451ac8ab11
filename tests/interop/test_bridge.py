"""The bridge over loopback: our responder (virtual camera) ← the bridge ← a CCCP
client, with gphoto2 checking the camera side."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import pytest
import pytest_twisted
from twisted.cred.checkers import AllowAnonymousAccess
from twisted.cred.portal import Portal
from twisted.internet import defer, protocol, utils
from zope.interface.verify import verifyObject

from cccp.adapters import PTPBridge, PTPCamera, PTPMediaStore, place
from cccp.client import _Collect, connect
from cccp.errors import CommandFailed
from cccp.interfaces import ICamera, IMediaStore
from cccp.realm import CCCPRealm
from cccp.server import CCCPFactory
from ptpip.datasets import FORM_ENUM, FORM_RANGE, DevicePropDesc

from ..conftest import start_responder, stop_responder
from .test_gphoto2 import GPhoto
from .test_media_peers import FFPROBE, GST, codecs, ffprobe, free_port, wait_listening


def sleep(reactor: Any, s: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(s, d.callback, None)
    return d


class Rig:
    pass


@pytest_twisted.async_yield_fixture
async def rig(reactor: Any, camera_files: Any, tmp_path: Any) -> Any:
    root, files = camera_files
    r = Rig()
    r.files = files
    r.responder = await start_responder(reactor, root, scan_interval=0.2)
    r.bridge = PTPBridge(reactor, "127.0.0.1", r.responder.port, retry=0.2, close_after=0.3)
    r.bridge.startService()
    await r.bridge.connected
    realm = CCCPRealm(r.bridge.cccp_store, r.bridge.cccp_camera, None, anonymous_may_store=True)
    r.factory = CCCPFactory(Portal(realm, [AllowAnonymousAccess()]), reactor=reactor, multicast_ok=True,
                            multicast_interface="127.0.0.1")
    r.port = reactor.listenTCP(0, r.factory, interface="127.0.0.1")
    home = str(tmp_path / "home")
    os.makedirs(home)
    r.gphoto = GPhoto(reactor, r.responder.port, home)
    r.cccp = await connect(reactor, "127.0.0.1", r.port.getHost().port)
    yield r
    for p in list(r.factory.connections):
        p.transport.abortConnection()
    await r.port.stopListening()
    await r.bridge.stopService()
    await stop_responder(r.responder)


@pytest_twisted.ensureDeferred
async def test_adapters_are_registered_and_provide_the_interfaces(reactor, rig):
    client = rig.bridge.client
    camera, store = ICamera(client), IMediaStore(client)
    await store.ready            # (it reads the object tree; let that finish before the teardown)
    assert isinstance(camera, PTPCamera) and isinstance(store, PTPMediaStore)
    assert verifyObject(ICamera, camera)
    assert verifyObject(IMediaStore, store)
    assert verifyObject(ICamera, ICamera(client.session))


@pytest_twisted.ensureDeferred
async def test_zoom_changes_the_focal_length_gphoto2_reads(reactor, rig):
    r = await rig.cccp.zoom("+1")
    assert (r.code, r.text) == (200, "Command okay: ZOOM 36")
    out = await rig.gphoto("--get-config", "focallength")
    assert "Current: 36" in out
    r = await rig.cccp.zoom("+")
    assert r.text == "Command okay: ZOOM 37"
    r = await rig.cccp.zoom(80.4)
    assert r.text == "Command okay: ZOOM 80"


@pytest_twisted.ensureDeferred
async def test_iris_walks_the_f_number_enumeration(reactor, rig):
    """IRIS + opens the iris: the next smaller f-number of the camera's enumeration."""
    seen = []
    for step in ("+", "+", "+", "-"):
        r = await rig.cccp.iris(step)
        seen.append(r.text.rsplit(" ", 1)[1])
    assert seen == ["5", "4.5", "4", "4.5"]
    assert "Current: f/4.5" in await rig.gphoto("--get-config", "f-number")
    r = await rig.cccp.iris("7.9")                       # nearest allowed: f/8
    assert r.text == "Command okay: IRIS 8"
    r = await rig.cccp.iris("+100")                      # clamps at the widest aperture
    assert r.text == "Command okay: IRIS 2.8"


@pytest_twisted.ensureDeferred
async def test_csta_shows_the_cameras_real_ranges(reactor, rig):
    status = await rig.cccp.cameraStatus()
    assert list(status.controls) == ["IRIS", "SENS", "ZOOM", "FOCU"]
    assert status.controls["IRIS"] == (Decimal("2.8"), Decimal("5.6"), Decimal(22))
    assert status.controls["SENS"] == (Decimal(100), Decimal(200), Decimal(6400))
    assert status.controls["ZOOM"] == (Decimal(18), Decimal(35), Decimal(105))
    assert status.controls["FOCU"] == (Decimal(100), Decimal(65535), Decimal(65535))
    r = await rig.cccp.sendCommand("SENS +")
    assert r.text == "Command okay: SENS 250"


@pytest_twisted.ensureDeferred
async def test_commands_the_camera_lacks_answer_502(reactor, rig):
    from cccp.errors import CommandFailed
    with pytest.raises(CommandFailed) as e:
        await rig.cccp.pan("+")
    assert e.value.code == 502


@pytest_twisted.ensureDeferred
async def test_property_changed_elsewhere_shows_in_csta(reactor, rig):
    """DevicePropChanged keeps the CCCP view current when gphoto2 changes a property."""
    await rig.cccp.cameraStatus()
    await rig.gphoto("--set-config", "f-number=f/11")
    await sleep(reactor, 0.2)
    status = await rig.cccp.cameraStatus()
    assert status.controls["IRIS"][1] == Decimal(11)


@pytest_twisted.ensureDeferred
async def test_list_and_retr_byte_identical(reactor, rig):
    names = await rig.cccp.nlst("/DCIM/100TEST")
    assert names == ["IMG_0001.JPG", "IMG_0002.JPG"]
    listing = await rig.cccp.list("/")
    assert "DCIM" in listing and "readme.txt" in listing
    await rig.cccp.type("I")
    sink = _Collect()
    r = await rig.cccp.retrieve("/DCIM/100TEST/IMG_0002.JPG", sink)
    assert r.code == 226
    assert sink.value() == rig.files["DCIM/100TEST/IMG_0002.JPG"]


@pytest_twisted.ensureDeferred
async def test_stor_lands_a_file_gphoto2_lists(reactor, rig, tmp_path):
    from cccp.devices import FileMediaSource
    src = tmp_path / "upload.jpg"
    src.write_bytes(rig.files["DCIM/100TEST/IMG_0001.JPG"])
    await rig.cccp.type("I")
    r = await rig.cccp.store("/DCIM/101TEST/FROMCCCP.JPG", FileMediaSource(str(src)))
    assert r.code == 226
    landed = os.path.join(rig.responder.root, "DCIM", "101TEST", "FROMCCCP.JPG")
    assert open(landed, "rb").read() == src.read_bytes()
    out = await rig.gphoto("--list-files")
    assert "FROMCCCP.JPG" in out
    assert "FROMCCCP.JPG" in await rig.cccp.nlst("/DCIM/101TEST")


@pytest_twisted.ensureDeferred
async def test_new_objects_appear_in_the_listing(reactor, rig):
    """ObjectAdded keeps the CCCP view of the object tree current."""
    with open(os.path.join(rig.responder.root, "fresh.txt"), "wb") as f:
        f.write(b"new")
    for _ in range(50):
        await sleep(reactor, 0.1)
        if "fresh.txt" in await rig.cccp.nlst("/"):
            break
    assert "fresh.txt" in await rig.cccp.nlst("/")


async def answer(client: Any, line: str) -> tuple[int, list[str]]:
    from cccp.errors import CommandFailed
    try:
        r = await client.sendCommand(line)
        return r.code, r.lines
    except CommandFailed as e:
        return e.code, e.lines


@pytest_twisted.ensureDeferred
async def test_the_bridge_reconnects_after_a_drop(reactor, rig):
    """While the camera is away, camera commands, CSTA and LIST answer 421 (502 would say the
    camera has no such control); after the bridge reconnected, everything works again."""
    from ..cccp.test_cli import run
    old = rig.bridge.client
    port = rig.responder.port
    off = rig.responder.listening
    await off.stopListening()                                # the camera is switched off
    for proto in list(rig.responder.factory.connections):
        proto.transport.abortConnection()
    try:
        for _ in range(100):
            if rig.bridge.client is None:
                break
            await sleep(reactor, 0.01)
        assert rig.bridge.client is None
        down = f"Service not available: the PTP-IP camera at 127.0.0.1:{port} is not connected (reconnecting)"
        for line in ("ZOOM +", "IRIS 8", "PAN +", "CSTA", "LIST /"):
            if line == "LIST /":
                from cccp.errors import CommandFailed
                with pytest.raises(CommandFailed) as e:
                    await rig.cccp.list("/")
                got = (e.value.code, e.value.lines)
            else:
                got = await answer(rig.cccp, line)
            assert got == (421, [down]), line
        url = f"cccp://127.0.0.1:{rig.port.getHost().port}/"
        out, err, code = await run(reactor, "ptz", url, "zoom", "+")
        assert (code, err.strip()) == (1, f"cccp: the server answered 421 {down}")
        out, err, code = await run(reactor, "status", url)
        assert (code, err.strip()) == (1, f"cccp: the server answered 421 {down}")
        assert (await answer(rig.cccp, "TSTA"))[0] == 200       # what does not need the camera goes on
    finally:
        # The camera comes back on the same port; the bridge's next attempt finds it.
        rig.responder.listening = reactor.listenTCP(port, rig.responder.factory, interface="127.0.0.1")
    for _ in range(100):
        await sleep(reactor, 0.1)
        if rig.bridge.client is not None and rig.bridge.client is not old:
            break
    r = await rig.cccp.zoom("+")
    assert r.code == 200
    assert (await answer(rig.cccp, "PAN +"))[0] == 502          # lacking a property is 502 again
    assert "IRIS" in (await rig.cccp.cameraStatus()).controls


async def test_a_camera_that_goes_mute_is_noticed(reactor, rig):
    """A camera that stops answering without closing (powered off, out of Wi-Fi range) is
    probed during the hanging command and given up: the command answers 421 instead of
    hanging, and the bridge reconnects once the camera is back."""
    rig.bridge.probe_interval, rig.bridge.probe_timeout = 0.3, 0.5
    await rig.bridge.stopService()                      # reconnect with the short probe times
    rig.bridge.connected = defer.Deferred()
    rig.bridge.startService()
    await rig.bridge.connected
    old = rig.bridge.client
    mute = list(rig.responder.factory.connections)
    for proto in mute:
        proto.transport.pauseProducing()                 # the camera hears nothing any more
    start = reactor.seconds()
    code, lines = await answer(rig.cccp, "ZOOM +")
    assert code == 421 and "not connected" in lines[0], lines
    assert reactor.seconds() - start < 5
    for proto in mute:
        proto.transport.resumeProducing()
    for _ in range(100):
        await sleep(reactor, 0.1)
        if rig.bridge.client is not None and rig.bridge.client is not old:
            break
    assert (await rig.cccp.zoom("+")).code == 200


# -- the twistd plugin's options with a bridged camera ---------------------------------------

async def start_plugin(reactor: Any, *args: str) -> tuple[Any, int, PTPBridge]:
    """``twistd cccp-server ARGS`` in this process: (the service, its port, the bridge)."""
    from twisted.application.internet import StreamServerEndpointService

    from cccp.tap import Options, makeService
    o = Options()
    o.parseOptions([*args, "--listen", "tcp:0:interface=127.0.0.1"])
    svc = makeService(o)
    svc.startService()
    bridge = next(s for s in svc if isinstance(s, PTPBridge))
    listener = next(s for s in svc if isinstance(s, StreamServerEndpointService))
    port = await listener._waitingForPort
    await bridge.connected
    return svc, port.getHost().port, bridge


@pytest_twisted.ensureDeferred
async def test_read_only_refuses_stor_to_the_bridged_camera(reactor, camera_files, tmp_path):
    """--read-only holds whatever the store is: STOR to the camera answers 550 as it does for a
    folder, even with --anonymous-write, and nothing reaches the camera."""
    from cccp.devices import FileMediaSource
    from cccp.errors import CommandFailed
    root, files = camera_files
    responder = await start_responder(reactor, root)
    svc, port, _bridge = await start_plugin(reactor, "--camera", f"ptpip:127.0.0.1:{responder.port}",
                                            "--read-only", "--anonymous-write")
    try:
        c = await connect(reactor, "127.0.0.1", port)
        await c.type("I")
        src = tmp_path / "IMG.JPG"
        src.write_bytes(files["DCIM/100TEST/IMG_0001.JPG"])
        with pytest.raises(CommandFailed) as e:
            await c.store("/COPY.JPG", FileMediaSource(str(src)))
        assert (e.value.code, e.value.lines) == (550, ["Permission denied: this user may not store"])
        assert not os.path.exists(os.path.join(root, "COPY.JPG"))
        assert "COPY.JPG" not in await c.nlst("/")
        # Reading and control still work.
        sink = _Collect()
        await c.retrieve("/DCIM/100TEST/IMG_0001.JPG", sink)
        assert sink.value() == files["DCIM/100TEST/IMG_0001.JPG"]
        assert (await c.zoom("+")).code == 200
        await c.quit()
    finally:
        await svc.stopService()
        await stop_responder(responder)


@pytest_twisted.ensureDeferred
async def test_without_read_only_the_plugin_stores_to_the_bridged_camera(reactor, camera_files, tmp_path):
    from cccp.devices import FileMediaSource
    root, files = camera_files
    responder = await start_responder(reactor, root)
    svc, port, _bridge = await start_plugin(reactor, "--camera", f"ptpip:127.0.0.1:{responder.port}",
                                            "--anonymous-write")
    try:
        c = await connect(reactor, "127.0.0.1", port)
        await c.type("I")
        src = tmp_path / "IMG.JPG"
        src.write_bytes(files["DCIM/100TEST/IMG_0001.JPG"])
        r = await c.store("/COPY.JPG", FileMediaSource(str(src)))
        assert r.code == 226
        assert open(os.path.join(root, "COPY.JPG"), "rb").read() == src.read_bytes()
        await c.quit()
    finally:
        await svc.stopService()
        await stop_responder(responder)


def test_root_with_a_bridged_camera_is_a_usage_error(tmp_path):
    """The bridged camera is the media store: a --root would be silently ignored, so it is refused."""
    from twisted.python import usage

    from cccp.tap import Options
    with pytest.raises(usage.UsageError) as e:
        Options().parseOptions(["--camera", "ptpip:127.0.0.1", "--root", str(tmp_path)])
    assert str(e.value) == ("--root cannot be combined with --camera ptpip:...: the bridged camera's "
                            "pictures are the media store")


@pytest.mark.parametrize("form,values,current,target,direction,expected", [
    (FORM_ENUM, (280, 400, 560, 800), 560, Decimal(560), -1, 400),
    (FORM_ENUM, (280, 400, 560, 800), 560, Decimal(790), 1, 800),
    (FORM_ENUM, (280, 400, 560, 800), 800, Decimal(800), 1, 800),
    (FORM_RANGE, (1800, 10500, 100), 3500, Decimal(3549), 0, 3500),
    (FORM_RANGE, (1800, 10500, 100), 3500, Decimal(3500), 1, 3600),
    (FORM_RANGE, (1800, 10500, 100), 3500, Decimal(99999), 1, 10500),
])
def test_place_on_ranges_and_enumerations(form, values, current, target, direction, expected):
    desc = DevicePropDesc(0x5007, 4, True, current, current, form,
                          values if form == FORM_RANGE else None, values if form == FORM_ENUM else ())
    assert place(desc, current, target, direction) == expected


# -- the camera's live view as /live/camera ------------------------------------------------

async def _live(reactor: Any, rig: Any, type_: str, mode: str, port: int, host: str = "127.0.0.1") -> Any:
    """A CCCP client sending /live/camera to *host*:*port*; its transfer (ends on ABOR)."""
    c = await connect(reactor, "127.0.0.1", rig.port.getHost().port)
    await c.type(type_)
    await c.mode(mode)
    transfer = c.streamTo("/live/camera", host, port)
    transfer.addErrback(lambda f: f.trap(CommandFailed))            # 426 after ABOR
    return c, transfer


async def _stop(c: Any, transfer: Any) -> None:
    await c.abort()
    await transfer
    await c.quit()


def _encoders() -> list[int]:
    """ffmpeg processes this test process started that are still running."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)
            except OSError:
                continue
            if "(ffmpeg" in fields[0] and int(fields[1].split()[1]) == os.getpid() and fields[1].split()[0] != "Z":
                found.append(int(entry))
    return found


async def _off(reactor: Any, rig: Any) -> None:
    """The camera's live view is switched off once nobody watches (and the bridge's 0.3 s
    close-after delay is over), and no encoder is left (within 2.3 s: sooner than the
    SIGKILL that follows a SIGTERM ffmpeg ignored)."""
    for _ in range(46):
        if not rig.bridge.viewfinder.viewers and rig.responder.camera.properties.get(0x5021) == 0 \
                and not _encoders():
            return
        await sleep(reactor, 0.05)
    raise AssertionError(f"the camera's live view was left on, or an encoder runs: {_encoders()}")


@pytest_twisted.ensureDeferred
async def test_live_camera_is_listed_beside_the_cameras_folders(reactor, rig):
    assert "live" in await rig.cccp.nlst("/")
    assert await rig.cccp.nlst("/live") == ["camera"]
    await rig.cccp.type("I")
    assert (await answer(rig.cccp, "STOR /live/camera"))[0] == 553


@pytest.mark.parametrize("over", ["udp", "tcp"])
@pytest_twisted.ensureDeferred
async def test_live_camera_as_rtp_jpeg_decodes_with_gstreamer(reactor, rig, over):
    """TYPE I R 26: the camera's JPEGs in RFC 2435 packets, no encoder; GStreamer's
    rtpjpegdepay ! jpegdec decodes 30 frames, from UDP datagrams or from TCP with
    RFC 4571 framing (rtpstreamdepay). ABOR switches the camera's live view off."""
    caps = "media=video,encoding-name=JPEG,payload=26,clock-rate=90000"
    if over == "udp":
        port = free_port("udp") & ~1
        src = ["udpsrc", f"port={port}", "address=127.0.0.1", "timeout=5000000000", f"caps=application/x-rtp,{caps}"]
    else:
        port = free_port()
        src = ["tcpserversrc", "host=127.0.0.1", f"port={port}", "!", f"application/x-rtp-stream,{caps}",
               "!", "rtpstreamdepay"]
    gst = utils.getProcessOutputAndValue(GST, [
        "-q", *src, "!", "rtpjpegdepay", "!", "jpegdec", "!", "video/x-raw,width=640,height=480",
        "!", "fakesink", "num-buffers=30"], reactor=reactor)
    if over == "tcp":
        await wait_listening(reactor, port)
    else:
        await sleep(reactor, 0.5)
    c, transfer = await _live(reactor, rig, "I R 26", "P 1" if over == "udp" else "S", port)
    out, err, code = await gst
    assert code == 0, (out + err).decode()
    assert rig.bridge.viewfinder.frames >= 30
    assert rig.responder.camera.operations_seen[0x1025] >= 30               # GetStream, one per frame
    await _stop(c, transfer)
    await _off(reactor, rig)


@pytest_twisted.ensureDeferred
async def test_live_camera_as_rtp_jpeg_reads_with_ffprobe_from_an_sdp_file(reactor, rig, tmp_path):
    from cccp.wire.rtpjpeg import sdp
    port = free_port("udp") & ~1
    (tmp_path / "camera.sdp").write_text(sdp(port))
    probe = utils.getProcessOutputAndValue(FFPROBE, [
        "-v", "error", "-protocol_whitelist", "file,udp,rtp", "-i", str(tmp_path / "camera.sdp"),
        "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0"], reactor=reactor)
    await sleep(reactor, 0.5)
    c, transfer = await _live(reactor, rig, "I R 26", "P 1", port)
    out, err, code = await probe
    await _stop(c, transfer)
    assert code == 0, err.decode()
    assert out.decode().strip() == "mjpeg,640,480", (out, err)
    await _off(reactor, rig)


@pytest_twisted.ensureDeferred
async def test_live_camera_as_mpeg2_ts_decodes_with_ffprobe(reactor, rig):
    """TYPE I M: ffmpeg makes MPEG-2 video of the frames; over UDP and over TCP."""
    port = free_port("udp")
    probe = ffprobe(reactor, f"udp://127.0.0.1:{port}?timeout=5000000")
    await sleep(reactor, 0.3)
    c, transfer = await _live(reactor, rig, "I M", "P 7", port)
    out, err, code = await probe
    await _stop(c, transfer)
    assert code == 0, err.decode()
    assert "mpeg2video" in codecs(out.decode())
    await _off(reactor, rig)
    port = free_port()
    probe = ffprobe(reactor, f"tcp://127.0.0.1:{port}?listen=1")
    await wait_listening(reactor, port)
    c, transfer = await _live(reactor, rig, "I M", "S", port)
    out, err, code = await probe
    await _stop(c, transfer)
    assert code == 0 and "mpeg2video" in codecs(out.decode()), err.decode()
    await _off(reactor, rig)


@pytest_twisted.ensureDeferred
async def test_viewers_share_one_live_view_and_a_multicast_group_receives_it(reactor, rig):
    """Two viewers (RTP/JPEG to a multicast group, TS over UDP) share the camera's one
    live view; the first ABOR leaves it on for the other, the last switches it off."""
    from cccp.stream import multicast_receiver
    from cccp.wire.media import RTPPacket
    group, mport = "239.255.42.43", free_port("udp") & ~1
    member = multicast_receiver(reactor, group, mport, "127.0.0.1")
    got: list[Any] = []
    member.on_datagram = lambda data, addr: got.append(RTPPacket.decode(data))
    sink = reactor.listenUDP(0, _Count(), interface="127.0.0.1")
    try:
        first = await _live(reactor, rig, "I R 26", "P 1", mport, host=group)
        second = await _live(reactor, rig, "I M", "P 7", sink.getHost().port)
        for _ in range(100):
            if sum(p.marker for p in got) >= 10 and sink.protocol.bytes > 50_000:
                break
            await sleep(reactor, 0.05)
        assert sum(p.marker for p in got) >= 10 and {p.payload_type for p in got} == {26}
        assert sink.protocol.bytes > 50_000
        assert rig.bridge.viewfinder.sessions == 1 and len(rig.bridge.viewfinder.viewers) == 2
        await _stop(*first)
        before = sink.protocol.bytes
        await sleep(reactor, 0.5)
        assert sink.protocol.bytes > before and rig.responder.camera.properties.get(0x5021) == 1
        await _stop(*second)
        await _off(reactor, rig)
    finally:
        member.close()
        await sink.stopListening()


@pytest_twisted.ensureDeferred
async def test_many_viewers_of_the_camera_cost_one_encoder_and_one_packetiser(reactor, rig, tmp_path):
    """Three TS viewers and two RTP/JPEG viewers of /live/camera: one live view session on
    the camera, one ffmpeg for the three, one RTP/JPEG stream for the two; the viewer
    that joins last starts at an I-frame and decodes cleanly."""
    from .test_fanout import Capture
    from .tsmedia import cut_at_last_picture, ffmpeg_errors, frames
    ts = [reactor.listenUDP(0, Capture(), interface="127.0.0.1") for _ in range(3)]
    jpeg = [reactor.listenUDP(0, Capture(), interface="127.0.0.1") for _ in range(2)]
    sessions = []
    try:
        for p in ts[:2]:
            sessions.append(await _live(reactor, rig, "I M", "P 7", p.getHost().port))
        for p in jpeg:
            sessions.append(await _live(reactor, rig, "I R 26", "P 1", p.getHost().port))
        await sleep(reactor, 2.0)
        sessions.append(await _live(reactor, rig, "I M", "P 7", ts[2].getHost().port))
        await sleep(reactor, 2.0)
        assert len(_encoders()) == 1
        assert rig.bridge.viewfinder.sessions == 1 and len(rig.bridge.viewfinder.viewers) == 2
        assert sorted(rig.bridge.live.tees) == [("camera", 26), ("camera", 33)]
        for p in ts + jpeg:
            assert len(p.protocol.got) > 10
        # the RTP/JPEG viewers get the same packets (one packetiser), each from a frame start
        a, b = ([d for _, d in p.protocol.got] for p in jpeg)
        assert b[0] in a and a[a.index(b[0]):][:len(b) - 5] == b[:len(b) - 5]
        assert b[0][13:16] == b"\0\0\0"                         # fragment offset 0 (RFC 2435)
        for s in sessions:
            await _stop(*s)
        await _off(reactor, rig)
        late = ts[2].protocol.save(tmp_path / "late.ts")
        cut_at_last_picture(late)
        assert frames(late)[0].kind == "I" and ffmpeg_errors(late) == ""
    finally:
        for p in ts + jpeg:
            p.stopListening()


class _Count(protocol.DatagramProtocol):
    bytes = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.bytes += len(data)


@pytest_twisted.ensureDeferred
async def test_a_canon_eos_live_view_goes_out_as_rtp_jpeg(reactor, camera_files, tmp_path):
    """The bridge takes the camera's own path: a Canon EOS's GetViewFinderData, with
    EVFOutputDevice back to 0 after the ABOR."""
    from ptpip.devices.profiles import get_profile
    from ptpip.wire.vendor import CanonEOSProp, CanonOp
    root, _ = camera_files
    responder = await start_responder(reactor, root, profile=get_profile("canon-eos"))
    bridge = PTPBridge(reactor, "127.0.0.1", responder.port, retry=0.2, close_after=0.3)
    bridge.startService()
    await bridge.connected
    realm = CCCPRealm(bridge.cccp_store, bridge.cccp_camera, None)
    factory = CCCPFactory(Portal(realm, [AllowAnonymousAccess()]), reactor=reactor)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        r = Rig()
        r.port, r.bridge = port, bridge
        udp = free_port("udp") & ~1
        gst = utils.getProcessOutputAndValue(GST, [
            "-q", "udpsrc", f"port={udp}", "address=127.0.0.1", "timeout=5000000000",
            "caps=application/x-rtp,media=video,encoding-name=JPEG,payload=26,clock-rate=90000",
            "!", "rtpjpegdepay", "!", "jpegdec", "!", "fakesink", "num-buffers=20"], reactor=reactor)
        await sleep(reactor, 0.5)
        c, transfer = await _live(reactor, r, "I R 26", "P 1", udp)
        out, err, code = await gst
        assert code == 0, (out + err).decode()
        assert responder.camera.operations_seen[CanonOp.GetViewFinderData] >= 20
        await _stop(c, transfer)
        for _ in range(100):
            if responder.camera.properties.get(CanonEOSProp.EVFOutputDevice) == 0 and not bridge.viewfinder.viewers:
                break
            await sleep(reactor, 0.05)
        assert responder.camera.properties.get(CanonEOSProp.EVFOutputDevice) == 0
    finally:
        for p in list(factory.connections):
            p.transport.abortConnection()
        await port.stopListening()
        await bridge.stopService()
        await stop_responder(responder)


@pytest_twisted.ensureDeferred
async def test_a_camera_lost_during_live_view_ends_the_transfer_and_comes_back(reactor, rig):
    """The camera drops while /live/camera streams: the RETR ends with a 4xx reply (not
    a hang), /live/camera is gone while the camera is; after the reconnection it streams."""
    sink = reactor.listenUDP(0, _Count(), interface="127.0.0.1")
    try:
        c = await connect(reactor, "127.0.0.1", rig.port.getHost().port)
        await c.type("I R 26")
        await c.mode("P 1")
        transfer = c.streamTo("/live/camera", "127.0.0.1", sink.getHost().port)
        for _ in range(100):
            if sink.protocol.bytes > 20_000:
                break
            await sleep(reactor, 0.05)
        old, port = rig.bridge.client, rig.responder.port
        await rig.responder.listening.stopListening()
        for proto in list(rig.responder.factory.connections):
            proto.transport.abortConnection()
        with pytest.raises(CommandFailed) as e:
            await transfer
        assert e.value.code in (426, 451), e.value.lines
        with pytest.raises(CommandFailed) as e:
            await c.streamTo("/live/camera", "127.0.0.1", sink.getHost().port)      # meanwhile: refused
        assert e.value.code in (421, 550), e.value.lines
        rig.responder.listening = reactor.listenTCP(port, rig.responder.factory, interface="127.0.0.1")
        for _ in range(100):
            await sleep(reactor, 0.1)
            if rig.bridge.client is not None and rig.bridge.client is not old:
                break
        before = sink.protocol.bytes
        again = await _live(reactor, rig, "I R 26", "P 1", sink.getHost().port)
        for _ in range(100):
            if sink.protocol.bytes > before + 20_000:
                break
            await sleep(reactor, 0.05)
        assert sink.protocol.bytes > before + 20_000
        await _stop(*again)
        await c.quit()
    finally:
        await sink.stopListening()
