"""Discovery (spec 5.2) between two network namespaces this test creates itself:
the responder announces ``_ptp._tcp`` over mDNS in one, `ptpip discover` finds it, with
its GUID, from the other, and `ptpip ls` reaches it there. No traffic leaves the machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

IP = shutil.which("ip")
GUID = "0123456789abcdef0123456789abcdef"


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


@pytest.fixture
def namespaces():
    assert IP, "iproute2 (ip) is needed to create the test's network namespaces"
    assert os.geteuid() == 0, "creating network namespaces needs root (CI runs as root)"
    tag = f"{os.getpid() % 10000}"
    a, b = f"ptpA{tag}", f"ptpB{tag}"
    net = f"10.251.{os.getpid() % 250}"
    try:
        sh(IP, "netns", "add", a)
        sh(IP, "netns", "add", b)
        sh(IP, "link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        sh(IP, "link", "set", f"va{tag}", "netns", a)
        sh(IP, "link", "set", f"vb{tag}", "netns", b)
        for ns, dev, addr in ((a, f"va{tag}", f"{net}.1/24"), (b, f"vb{tag}", f"{net}.2/24")):
            sh(IP, "-n", ns, "addr", "add", addr, "dev", dev)
            sh(IP, "-n", ns, "link", "set", dev, "up", "multicast", "on")
            sh(IP, "-n", ns, "link", "set", "lo", "up")
            sh(IP, "-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        yield a, b, f"{net}.1"
    finally:
        for ns in (a, b):
            subprocess.run([IP, "netns", "del", ns], capture_output=True)


def in_ns(ns: str, *argv: str, **kw: object) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.Popen([IP, "netns", "exec", ns, *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)  # type: ignore[arg-type]


def test_discover_finds_the_camera_with_its_guid_in_another_namespace(namespaces, tmp_path):
    a, b, address = namespaces
    twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    camera = in_ns(a, *twistd, "-n", "--pidfile=", "--logfile", str(tmp_path / "twistd.log"),
                   "ptpip-responder", "--name", "Namespace Cam", "--guid", GUID, "--listen", "tcp:15740",
                   cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 30
        found: list[dict] = []
        while time.monotonic() < deadline and not found:
            p = in_ns(b, sys.executable, "-m", "ptpip.cli", "--json", "discover", "--wait", "3")
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
            found = [f for f in json.loads(out) if f["guid"] == GUID]
        log = open(tmp_path / "twistd.log").read() if os.path.exists(tmp_path / "twistd.log") else ""
        assert found, f"not discovered; responder log:\n{log[-2000:]}"
        assert found[0]["name"] == "Namespace Cam" and found[0]["address"] == address
        assert found[0]["port"] == 15740
        p = in_ns(b, sys.executable, "-m", "ptpip.cli", "--host", address, "ls")
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
        assert "IMG_0001.JPG" in out.decode()
    finally:
        camera.terminate()
        camera.wait(10)
