"""One Twisted program serving a PTP-IP camera and a CCCP server over the same
folder, each built from parts of your own.

    python embedded.py --root ~/Pictures --ptpip-port 15740 --cccp-port 5021

- The PTP-IP camera is a ptpip.camera.Camera made of the stock folder store,
  a property set of our choosing and our own capture source (an
  ICaptureSource that paints a colour card).
- The CCCP server fronts the same folder (FileMediaStore) and our own camera
  head (an ICamera with just PAN and TILT), without a tape deck.

Port 0 picks free ports; the ports in use are printed once listening.
"""

import argparse
import io
import os
import sys
from decimal import Decimal

from PIL import Image
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.internet import endpoints, reactor
from zope.interface import implementer

from cccp.devices import FileMediaStore
from cccp.errors import NotImplementedHere
from cccp.interfaces import ICamera
from cccp.realm import CCCPRealm, make_portal
from cccp.server import CCCPFactory
from ptpip.constants import DataType, DevicePropCode
from ptpip.datasets import FORM_ENUM, FORM_RANGE
from ptpip.devices.camera import Camera
from ptpip.devices.filestore import FilesystemStore
from ptpip.devices.policy import AcceptAllPolicy
from ptpip.devices.properties import DeviceProperties, Property
from ptpip.interfaces import ICaptureSource
from ptpip.responder import ResponderFactory

COLOURS = [("RED", (200, 30, 30)), ("GREEN", (30, 160, 60)), ("BLUE", (30, 60, 200))]


@implementer(ICaptureSource)
class ColourCardCapture:
    """InitiateCapture paints the next colour card: capture() returns (filename, JPEG bytes)."""

    def __init__(self):
        self.count = 0

    def capture(self, object_format=0):
        name, rgb = COLOURS[self.count % len(COLOURS)]
        self.count += 1
        out = io.BytesIO()
        Image.new("RGB", (640, 480), rgb).save(out, "JPEG")
        return f"{name}_{self.count:04d}.JPG", out.getvalue()


def camera_properties():
    """Only the properties this camera has, with the standard codes and datatypes."""
    return DeviceProperties([
        Property(DevicePropCode.BatteryLevel, DataType.UINT8, 80, writable=False,
                 form=FORM_RANGE, range=(0, 100, 1)),
        Property(DevicePropCode.FNumber, DataType.UINT16, 400, form=FORM_ENUM,
                 enumeration=(280, 400, 560, 800, 1100)),
        Property(DevicePropCode.ExposureIndex, DataType.UINT16, 100, form=FORM_ENUM,
                 enumeration=(100, 200, 400, 800)),
    ])


@implementer(ICamera)
class PanTiltHead:
    """A motorised head: PAN and TILT in degrees, moved in 5 degree small steps."""

    STEP = Decimal(5)

    def __init__(self):
        self.limits = {"PAN": (Decimal(-90), Decimal(90)), "TILT": (Decimal(-10), Decimal(45))}
        self.position = {"PAN": Decimal(0), "TILT": Decimal(0)}

    def controls(self):
        return ["PAN", "TILT"]                 # CSTA order: rotations as applied

    def status(self, name):
        low, high = self._limits(name)
        return low, self.position[name], high

    def control(self, name, number):
        low, high = self._limits(name)
        target = number.apply(self.position[name], self.STEP)   # absolute, relative or step
        self.position[name] = min(max(target, low), high)       # clamp; the reply says where
        print(f"head: {name} now {self.position[name]}", flush=True)
        return self.position[name]

    def _limits(self, name):
        if name not in self.limits:
            raise NotImplementedHere(f"{name} is not supported by this head")   # answered 502
        return self.limits[name]


def build(root):
    """The two factories (and the camera, to stop its folder scanner on shutdown)."""
    camera = Camera(FilesystemStore(root), camera_properties(), ColourCardCapture(),
                    manufacturer="Example Works", model="Colour Card Camera")
    ptpip_factory = ResponderFactory(camera, friendly_name="embedded camera",
                                     policy=AcceptAllPolicy(anonymous=False), max_sessions=4)

    realm = CCCPRealm(FileMediaStore(root), PanTiltHead(), deck=None)
    users = InMemoryUsernamePasswordDatabaseDontUse(operator=b"secret")   # use a real checker
    cccp_factory = CCCPFactory(make_portal(realm, [users], anonymous=True), allow_anonymous=True,
                               max_connections=8)
    return camera, ptpip_factory, cccp_factory


def main():
    parser = argparse.ArgumentParser(description="A PTP-IP camera and a CCCP server in one process.")
    parser.add_argument("--root", required=True, help="the folder both servers serve")
    parser.add_argument("--interface", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--ptpip-port", type=int, default=15740)
    parser.add_argument("--cccp-port", type=int, default=5021)
    args = parser.parse_args()
    if not os.path.isdir(args.root):
        parser.error(f"--root {args.root!r} is not a folder")

    camera, ptpip_factory, cccp_factory = build(args.root)
    reactor.addSystemEventTrigger("before", "shutdown", camera.stop)

    def listen(port, factory, what):
        endpoint = endpoints.serverFromString(reactor, f"tcp:{port}:interface={args.interface}")
        d = endpoint.listen(factory)
        d.addCallback(lambda p: print(f"{what} listening on {args.interface}:{p.getHost().port}", flush=True))
        return d

    status = []

    def failed(failure):
        print(f"embedded.py: {failure.getErrorMessage()}", file=sys.stderr)
        if not status:                   # stop once, even if both ports failed
            status.append(1)
            reactor.stop()

    def start():
        listen(args.ptpip_port, ptpip_factory, "PTP-IP camera").addErrback(failed)
        listen(args.cccp_port, cccp_factory, "CCCP server").addErrback(failed)

    reactor.callWhenRunning(start)
    reactor.run()
    sys.exit(status[0] if status else 0)


if __name__ == "__main__":
    main()
