"""Drive a CCCP server with cccp.client: camera status and moves, the tape deck,
a listing, and a download during which the control connection stays usable.

    python cccp_control.py --move ZOOM=+ --move PAN=+5
    python cccp_control.py --play 2 --get /sample.ts --paced --output clips

Every client method sends one command and returns a Deferred of its reply;
4xx/5xx replies fail it with cccp.errors.CommandFailed.
"""

import argparse
import os
import sys

from twisted.internet import defer, error, task
from twisted.internet.interfaces import IConsumer
from zope.interface import implementer

from cccp.client import connect
from cccp.commands import format_number
from cccp.errors import CCCPError, CommandFailed


@implementer(IConsumer)
class FileSink:
    """Receives the bytes of a RETR and writes them to a file."""

    def __init__(self, f):
        self.f = f
        self.received = 0

    def registerProducer(self, producer, streaming):
        pass

    def unregisterProducer(self):
        pass

    def write(self, data):
        self.f.write(data)
        self.received += len(data)


async def control(reactor, args):
    # Connect, read the 220 greeting and log in (USER/PASS; anonymous by default).
    client = await connect(reactor, args.host, args.port, user=args.user, password=args.password)
    try:
        # CSTA: (minimum, current, maximum) of every control the camera has.
        camera = await client.cameraStatus()
        for name, (low, now, high) in camera.controls.items():
            print(f"{name:4} {format_number(now):>6}  [{format_number(low)} .. {format_number(high)}]")

        # Camera commands: a number is absolute, +N/-N relative, + or - one small step.
        for move in args.move:
            name, _, value = move.partition("=")
            reply = await client.camera(name, value)
            print(reply.text)                       # e.g. "Command okay: ZOOM 1.5"

        # The tape deck: PLAY, let it run, TSTA, then PAUS.
        if args.play:
            await client.play()
            await task.deferLater(reactor, args.play, lambda: None)
            tape = await client.tapeStatus()
            print(f"tape: {tape.operation} at {format_number(tape.position)}")
            await client.pause()

        # NLST through a data connection (PASV, as FTP clients do).
        for name in await client.nlst("/"):
            print(f"  {name}")

        if args.get:
            # TYPE I sends the file as it is, as fast as TCP allows; TYPE I M sends
            # MPEG2-TS in real time, paced by its PCR, like a video-on-demand server.
            await client.type("I M" if args.paced else "I")
            os.makedirs(args.output, exist_ok=True)
            target = os.path.join(args.output, os.path.basename(args.get))
            try:
                with open(target, "wb") as f:
                    sink = FileSink(f)
                    transfer = client.retrieve(args.get, sink)
                    # The server reads commands while data flows: ask how far it got.
                    while not transfer.called:
                        await task.deferLater(reactor, 1, lambda: None)
                        if transfer.called:
                            break
                        status = await client.status()
                        for line in status.lines:
                            if "in progress" in line:
                                print(line)
                    reply = await transfer
            except BaseException:
                os.unlink(target)                   # no half-written file left behind
                raise
            print(f"{reply.code} {reply.text}")
            print(f"saved {target} ({sink.received} bytes)")
    finally:
        if not client.closed:
            await client.quit()


def main():
    parser = argparse.ArgumentParser(description="Drive a CCCP camera/recorder server.")
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5021, help="control port (default 5021)")
    parser.add_argument("--user", default="anonymous")
    parser.add_argument("--password", default="cccp@")
    parser.add_argument("--move", action="append", default=[], metavar="CONTROL=VALUE",
                        help="a camera command such as ZOOM=+ or PAN=-15.5; repeatable")
    parser.add_argument("--play", type=float, default=0, metavar="SECONDS",
                        help="play the tape this long, show where it got, then pause")
    parser.add_argument("--get", metavar="PATH", help="download this medium, e.g. /sample.ts")
    parser.add_argument("--paced", action="store_true", help="TYPE I M: in real time (MPEG2-TS only)")
    parser.add_argument("--output", default=".", help="folder for the download (default .)")
    args = parser.parse_args()

    def run(reactor):
        d = defer.ensureDeferred(control(reactor, args))

        def failed(failure):
            failure.trap(CommandFailed, CCCPError, error.ConnectError, OSError)
            print(f"cccp_control.py: {failure.value}", file=sys.stderr)
            raise SystemExit(1)
        return d.addErrback(failed)

    task.react(run)


if __name__ == "__main__":
    main()
