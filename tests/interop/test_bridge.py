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
from twisted.internet import defer
from zope.interface.verify import verifyObject

from cccp.adapters import PTPBridge, PTPCamera, PTPMediaStore, place
from cccp.client import _Collect, connect
from cccp.interfaces import ICamera, IMediaStore
from cccp.realm import CCCPRealm
from cccp.server import CCCPFactory
from ptpip.datasets import FORM_ENUM, FORM_RANGE, DevicePropDesc

from ..conftest import start_responder, stop_responder
from .test_gphoto2 import GPhoto


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
    r.bridge = PTPBridge(reactor, "127.0.0.1", r.responder.port, retry=0.2)
    r.bridge.startService()
    await r.bridge.connected
    realm = CCCPRealm(r.bridge.cccp_store, r.bridge.cccp_camera, None, anonymous_may_store=True)
    r.factory = CCCPFactory(Portal(realm, [AllowAnonymousAccess()]), reactor=reactor)
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
