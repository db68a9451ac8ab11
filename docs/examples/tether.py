"""Tether to a PTP-IP camera: list its pictures, change a setting, take a
picture and download it with a progress line.

    python tether.py --host 127.0.0.1 --output shots --set FNumber=800
    python tether.py --all --output everything      # also download every file

Every step is one call of :class:`ptpip.client.PTPClient`; each returns a
Deferred, which ``await`` waits for inside ``defer.ensureDeferred``.
"""

import argparse
import os
import sys

from twisted.internet import defer, error, task

from ptpip.client import PTPClient
from ptpip.constants import DevicePropCode, EventCode, ObjectFormat, code_name
from ptpip.errors import PTPIPError


def show_progress(name):
    """A progress callback for PTPClient.download: called with (bytes so far, total)."""
    def progress(done, total):
        percent = 100 * done // total if total else 100
        sys.stderr.write(f"\r  {name}: {percent:3d}% ({done} of {total} bytes)")
        if done >= total:
            sys.stderr.write("\n")
    return progress


def print_event(event):
    """Events arrive on the event channel whenever the camera has news."""
    if event.code == EventCode.DevicePropChanged:
        params = " ".join(code_name(p) for p in event.params)       # which property
    else:
        params = " ".join(str(p) for p in event.params)             # object handles
    print(f"event: {code_name(event.code)} {params}".rstrip(), flush=True)


async def tether(reactor, args):
    # 1. Connect: both TCP channels, Init Command/Event handshake, GetDeviceInfo.
    camera = await PTPClient.connect(reactor, args.host, args.port, open_session=False,
                                     friendly_name="tether example")
    try:
        info = camera.device_info
        print(f"connected to {camera.session.responder_name!r}: {info.manufacturer} {info.model}")

        # 2. Open a PTP session: everything below needs one.
        await camera.openSession()
        camera.subscribe(print_event)

        # 3. List the object tree: (path, handle, ObjectInfo), folders first.
        entries = await camera.walk()
        for path, _handle, oi in entries:
            if oi.object_format == ObjectFormat.Association:
                print(f"  {path}/")
            else:
                print(f"  {path} ({oi.object_compressed_size} bytes)")

        # 4. Change settings: SetDevicePropValue, then read the value back.
        for setting in args.set:
            name, _, text = setting.partition("=")
            code = DevicePropCode[name]
            desc = await camera.getDevicePropDesc(code)
            value = text if isinstance(desc.current, str) else int(text, 0)
            await camera.setDevicePropValue(code, value, desc.datatype)
            now = await camera.getDevicePropValue(code, desc.datatype)
            print(f"{name}: {desc.current} -> {now}")

        os.makedirs(args.output, exist_ok=True)
        wanted = []
        if args.all:
            wanted = [(h, oi.filename) for _, h, oi in entries
                      if oi.object_format != ObjectFormat.Association]

        # 5. Take a picture: InitiateCapture, then the camera announces the new
        #    picture with ObjectAdded and the end of the capture with CaptureComplete.
        if not args.no_capture:
            handles = await camera.capture(reactor, timeout=30)
            for handle in handles:
                oi = await camera.getObjectInfo(handle)
                print(f"captured {oi.filename} (handle {handle})")
                wanted.append((handle, oi.filename))

        # 6. Download: GetPartialObject into NAME.part, then renamed to NAME.
        for handle, filename in wanted:
            target = os.path.join(args.output, filename)
            size = await camera.download(handle, target, progress=show_progress(filename))
            print(f"saved {target} ({size} bytes)")
    finally:
        # 7. CloseSession, then close both channels.
        await camera.close()


def main():
    parser = argparse.ArgumentParser(description="Tether to a PTP-IP camera.")
    parser.add_argument("--host", default="127.0.0.1", help="camera address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=15740, help="PTP-IP port (default 15740)")
    parser.add_argument("--output", default="shots", help="folder for downloads (default ./shots)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="set a property first, e.g. FNumber=800 (f/8); repeatable")
    parser.add_argument("--all", action="store_true", help="download every file on the camera too")
    parser.add_argument("--no-capture", action="store_true", help="do not take a picture")
    args = parser.parse_args()
    for setting in args.set:
        if setting.partition("=")[0] not in DevicePropCode.__members__:
            parser.error(f"unknown property in --set {setting!r} (try FNumber, ExposureIndex, ...)")

    def run(reactor):
        d = defer.ensureDeferred(tether(reactor, args))

        def failed(failure):
            failure.trap(PTPIPError, error.ConnectError, defer.TimeoutError, OSError)
            print(f"tether.py: {failure.value}", file=sys.stderr)
            raise SystemExit(1)
        return d.addErrback(failed)

    task.react(run)


if __name__ == "__main__":
    main()
