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


UPNP_CLIENT = os.path.join(os.path.dirname(sys.executable), "upnp-client")
GI_PYTHON = "/usr/bin/python3"
GSSDP_BROWSE = os.path.join(os.path.dirname(__file__), "gssdp_browse.py")
UDN = "uuid:01234567-89ab-cdef-0123-456789abcdef"


def test_ssdp_announcement_seen_by_an_independent_control_point_and_by_ptpip(namespaces, tmp_path):
    """SSDP between two namespaces: async-upnp-client's ``upnp-client`` (an independent
    UPnP stack) hears the NOTIFYs (alive at start, byebye at stop) and finds the camera
    with M-SEARCH, so does GSSDP's resource browser (Debian's libgssdp, through
    PyGObject); curl fetches its description; ``ptpip discover`` lists it as found over
    SSDP as well as DNS-SD."""
    assert os.path.exists(UPNP_CLIENT), "upnp-client (async-upnp-client, a test extra) is needed"
    assert shutil.which("curl"), "curl is needed (.ci/run installs it)"
    a, b, address = namespaces
    listener = in_ns(b, "timeout", "-s", "INT", "25", UPNP_CLIENT, "advertisements")
    time.sleep(1.0)
    twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    camera = in_ns(a, *twistd, "-n", "--pidfile=", "--logfile", str(tmp_path / "twistd.log"),
                   "ptpip-responder", "--name", "UPnP Cam", "--guid", GUID, "--listen", "tcp:15740",
                   "--profile", "canon-eos", cwd=str(tmp_path))
    try:
        found: list[dict] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not found:
            p = in_ns(b, UPNP_CLIENT, "search", "--search_target", "urn:schemas-twisted-ptpip:service:PTPIP:1")
            out, _ = p.communicate(timeout=30)
            found = [r for r in map(json.loads, filter(None, out.decode().splitlines()))
                     if r.get("USN", "").startswith(UDN)]
        assert found, "upnp-client search found no camera"
        location = found[0]["LOCATION"]
        assert location.startswith(f"http://{address}:")
        # GSSDP (GNOME's SSDP stack, as gssdp-discover used it) finds it too.
        assert os.path.exists(GI_PYTHON), "the system python3 with gi (python3-gi) is needed"
        p = in_ns(b, GI_PYTHON, GSSDP_BROWSE, f"vb{a[4:]}", "urn:schemas-twisted-ptpip:service:PTPIP:1", "4")
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err.decode()
        gssdp = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
        assert [g["locations"] for g in gssdp if g["usn"].startswith(UDN)] == [[location]], out
        p = in_ns(b, "curl", "-sf", location)
        xml, err = p.communicate(timeout=30)
        assert p.returncode == 0, err.decode()
        text = xml.decode()
        for part in ("<friendlyName>UPnP Cam</friendlyName>", "<modelName>Canon EOS 5D Mark IV</modelName>",
                     "<manufacturer>Canon Inc.</manufacturer>", f"<UDN>{UDN}</UDN>", "<ptpip:port>15740</ptpip:port>",
                     f"<ptpip:guid>{GUID}</ptpip:guid>"):
            assert part in text, (part, text)
        listed: list[dict] = []
        while time.monotonic() < deadline + 30 and not listed:
            p = in_ns(b, sys.executable, "-m", "ptpip.cli", "--json", "discover", "--wait", "3")
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
            listed = [f for f in json.loads(out) if f["guid"] == GUID and "ssdp" in f["via"]]
        assert listed and listed[0]["address"] == address and listed[0]["port"] == 15740
        assert listed[0]["model"] == "Canon EOS 5D Mark IV"
    finally:
        camera.terminate()
        camera.wait(10)
    time.sleep(1.0)
    listener.send_signal(2)
    out, _ = listener.communicate(timeout=30)
    heard = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    ours = [h for h in heard if h.get("USN", "").startswith(UDN)]
    assert {h["NTS"] for h in ours} == {"ssdp:alive", "ssdp:byebye"}, heard[-5:]
    assert any(h["NT"] == "upnp:rootdevice" and h["NTS"] == "ssdp:alive" and h["LOCATION"].startswith(
        f"http://{address}:") for h in ours)
