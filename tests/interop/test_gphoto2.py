"""The real gphoto2/libgphoto2 drives our responder over loopback, unchanged.

gphoto2 is installed by .ci/run; a missing gphoto2 fails these tests, it never skips them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any

import pytest_twisted
from twisted.internet import utils

from ..conftest import make_tree, start_responder, stop_responder

GPHOTO2 = shutil.which("gphoto2")


def test_gphoto2_is_installed():
    """A missing peer is a failure in CI, not a skip."""
    assert GPHOTO2, "gphoto2 is not installed: .ci/run installs it with apt-get"


class GPhoto:
    def __init__(self, reactor: Any, port: int, home: str) -> None:
        self.reactor = reactor
        self.port = port
        self.home = home

    async def __call__(self, *args: str, cwd: str | None = None, ok: bool = True) -> str:
        assert GPHOTO2, "gphoto2 is not installed"
        env = {"HOME": self.home, "LANG": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        argv = ["--camera", "PTP/IP Camera", "--port", f"ptpip:127.0.0.1:{self.port}:{self.port}", *args]
        out, err, code = await utils.getProcessOutputAndValue(GPHOTO2, argv, env=env, path=cwd or self.home,
                                                              reactor=self.reactor)
        text = (out + err).decode("utf-8", "replace")
        if ok:
            assert code == 0, f"gphoto2 {' '.join(args)} failed ({code}):\n{text}"
        return text


@pytest_twisted.async_yield_fixture
async def camera(reactor: Any, tmp_path: Any) -> Any:
    root = str(tmp_path / "camera")
    os.makedirs(root)
    files = make_tree(root)
    # A video clip over 20 MiB: gphoto2 fetches it with GetPartialObject in 1 MiB steps.
    # (libgphoto2 refuses to download objects of format Undefined, so it has a real header.)
    big = b"RIFF" + (21 * 1024 * 1024).to_bytes(4, "little") + b"AVI LIST" + os.urandom(21 * 1024 * 1024 + 333)
    with open(os.path.join(root, "DCIM", "100TEST", "MVI_0001.AVI"), "wb") as f:
        f.write(big)
    files["DCIM/100TEST/MVI_0001.AVI"] = big
    r = await start_responder(reactor, root, scan_interval=0.2)
    home = str(tmp_path / "home")
    os.makedirs(home)
    r.files = files
    r.gphoto = GPhoto(reactor, r.port, home)
    yield r
    await stop_responder(r)


@pytest_twisted.ensureDeferred
async def test_summary(camera):
    out = await camera.gphoto("--summary")
    assert "Manufacturer: Twisted PTP-IP" in out
    assert "Model: Virtual Camera" in out
    assert "store_00010001" in out
    assert "F-Number(0x5007)" in out and "Exposure Index" in out


@pytest_twisted.ensureDeferred
async def test_list_files_over_nested_folders(camera):
    out = await camera.gphoto("--list-files")
    assert "folder '/store_00010001/DCIM/100TEST'" in out
    assert "folder '/store_00010001/DCIM/101TEST/deep'" in out
    for name in ("IMG_0001.JPG", "IMG_0002.JPG", "MVI_0001.AVI", "notes.txt", "readme.txt"):
        assert name in out


@pytest_twisted.ensureDeferred
async def test_get_all_files_byte_identical(camera, tmp_path):
    dest = tmp_path / "download"
    dest.mkdir()
    await camera.gphoto("--get-all-files", cwd=str(dest))
    for name, data in camera.files.items():
        got = (dest / os.path.basename(name)).read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), name
    assert len(camera.files["DCIM/100TEST/MVI_0001.AVI"]) > 20 * 1024 * 1024


@pytest_twisted.ensureDeferred
async def test_get_all_thumbnails(camera, tmp_path):
    dest = tmp_path / "thumbs"
    dest.mkdir()
    await camera.gphoto("--get-all-thumbnails", cwd=str(dest))
    thumbs = sorted(p.name for p in dest.iterdir())
    assert thumbs == ["thumb_IMG_0001.jpg", "thumb_IMG_0002.jpg"]
    from PIL import Image
    for t in thumbs:
        with Image.open(dest / t) as im:
            assert im.format == "JPEG" and max(im.size) <= 160


@pytest_twisted.ensureDeferred
async def test_get_all_thumbnails_goes_past_images_that_cannot_be_decoded(camera, tmp_path):
    """libgphoto2 asks every image for its thumbnail and stops at the first error: a
    truncated JPEG and a decompression bomb get placeholders, and every image has one."""
    from PIL import Image
    folder = os.path.join(camera.root, "DCIM", "100TEST")
    with open(os.path.join(folder, "IMG_0005.JPG"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(4000))
    Image.new("1", (9000, 9000)).save(os.path.join(folder, "IMG_0006.PNG"), optimize=True)
    camera.camera.store.scan()
    dest = tmp_path / "thumbs"
    dest.mkdir()
    await camera.gphoto("--get-all-thumbnails", cwd=str(dest))
    thumbs = sorted(p.name for p in dest.iterdir())
    # gphoto2 names each thumbnail after its picture; every one is a JPEG
    assert thumbs == ["thumb_IMG_0001.jpg", "thumb_IMG_0002.jpg", "thumb_IMG_0005.jpg", "thumb_IMG_0006.png"]
    for t in thumbs:
        with Image.open(dest / t) as im:
            im.load()
            assert im.format == "JPEG"


@pytest_twisted.ensureDeferred
async def test_upload_file(camera, tmp_path):
    src = tmp_path / "upload.bin"
    src.write_bytes(os.urandom(300_000))
    await camera.gphoto("--folder", "/store_00010001/DCIM/101TEST", "--upload-file", str(src))
    landed = os.path.join(camera.root, "DCIM", "101TEST", "upload.bin")
    assert open(landed, "rb").read() == src.read_bytes()
    assert not [n for n in os.listdir(os.path.dirname(landed)) if n.startswith(".ptpip")]
    out = await camera.gphoto("--list-files")
    assert "upload.bin" in out


@pytest_twisted.ensureDeferred
async def test_delete_file(camera):
    await camera.gphoto("--delete-file", "/store_00010001/readme.txt")
    assert not os.path.exists(os.path.join(camera.root, "readme.txt"))
    out = await camera.gphoto("--list-files")
    assert "readme.txt" not in out and "notes.txt" in out


@pytest_twisted.ensureDeferred
async def test_capture_image_and_download(camera, tmp_path):
    dest = tmp_path / "cap"
    dest.mkdir()
    out = await camera.gphoto("--capture-image-and-download", cwd=str(dest))
    assert "New file is in location /store_00010001/CAP_0001.JPG" in out
    from PIL import Image
    with Image.open(dest / "CAP_0001.JPG") as im:
        assert im.format == "JPEG" and im.size == (1600, 1200)


@pytest_twisted.ensureDeferred
async def test_get_and_set_f_number_and_iso(camera):
    out = await camera.gphoto("--get-config", "f-number")
    assert "Current: f/5.6" in out and "Choice: 9 f/8" in out
    await camera.gphoto("--set-config", "f-number=f/8")
    assert "Current: f/8" in await camera.gphoto("--get-config", "f-number")
    assert camera.camera.properties.get(0x5007) == 800
    await camera.gphoto("--set-config", "iso=1600")
    assert "Current: 1600" in await camera.gphoto("--get-config", "iso")
    assert camera.camera.properties.get(0x500F) == 1600


@pytest_twisted.ensureDeferred
async def test_wait_event_sees_a_dropped_file(camera, reactor):
    def drop() -> None:
        with open(os.path.join(camera.root, "dropped.jpg"), "wb") as f:
            f.write(open(os.path.join(camera.root, "DCIM", "100TEST", "IMG_0001.JPG"), "rb").read())

    reactor.callLater(1.5, drop)
    out = await camera.gphoto("--wait-event=4s")
    assert "FILEADDED dropped.jpg /store_00010001" in out
