"""``cccp``: drive a CCCP server from the command line.

    cccp status cccp://host/
    cccp ptz cccp://host/ pan +5 zoom - focus 3.5
    cccp tape cccp://host/ play 10 20 | pause | ff 0 -5 | record
    cccp ls cccp://host/clips/
    cccp get cccp://host/clips/a.ts -o a.ts [--udp] [--duration SECONDS]
    cccp put clip.ts cccp://user:pass@host/clips/clip.ts [--udp]
    cccp stream cccp://host/live/testpattern --udp 127.0.0.1:6000

Ctrl-C (SIGINT) or SIGTERM during ``get`` or ``stream`` stops the transfer with ABOR
and quits cleanly; a second signal stops waiting for the server.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet import error as ierror

from .wire.commands import CAMERA_CONTROLS, Reply, format_number
from .wire.errors import CCCPError, CommandFailed, ConnectionLost, LocalProtocolError

NAMES = {"iris": "IRIS", "sens": "SENS", "sensitivity": "SENS", "roll": "ROLL", "pan": "PAN", "tilt": "TILT",
         "zoom": "ZOOM", "hori": "HORI", "horizontal": "HORI", "vert": "VERT", "vertical": "VERT",
         "dept": "DEPT", "depth": "DEPT", "focu": "FOCU", "focus": "FOCU"}


class CLIError(Exception):
    pass


class Progress:
    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.done = 0
        self.t0 = time.monotonic()
        self._last = 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last > 0.1:
            self._last = now
            rate = self.done / max(now - self.t0, 1e-6) / 1e6
            pct = f" {self.done * 100 / self.total:5.1f}%" if self.total else ""
            sys.stderr.write(f"\r{self.label[:30]:30}{pct} {self.done / 1e6:8.1f} MB {rate:7.1f} MB/s")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            self._last = 0.0
            self.add(0)
            sys.stderr.write("\n")

    def summary(self) -> str:
        secs = max(time.monotonic() - self.t0, 1e-6)
        return f"{self.done} bytes in {secs:.1f} s, {self.done / secs / 1e6:.1f} MB/s"


class _CountingConsumer:
    """Passes writes on to *target* and counts them for the progress line: a file (a
    download) or the real consumer of an upload (a TCP transport or a paced media
    sender), to which producer registration goes on for backpressure."""

    def __init__(self, target: Any, progress: Progress) -> None:
        self._target, self._progress = target, progress

    def registerProducer(self, p: Any, s: bool) -> None:
        if hasattr(self._target, "registerProducer"):
            self._target.registerProducer(p, s)

    def unregisterProducer(self) -> None:
        if hasattr(self._target, "unregisterProducer"):
            self._target.unregisterProducer()

    def write(self, data: bytes) -> None:
        self._target.write(data)
        self._progress.add(len(data))


class _ProgressSource:
    """A media source whose bytes are counted on their way out."""

    def __init__(self, source: Any, progress: Progress) -> None:
        self._source, self._progress = source, progress
        self.length = source.length

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        return self._source.startProducing(_CountingConsumer(consumer, self._progress))

    def pauseProducing(self) -> None:
        self._source.pauseProducing()

    def resumeProducing(self) -> None:
        self._source.resumeProducing()

    def stopProducing(self) -> None:
        self._source.stopProducing()


class Stopper:
    """Turns SIGINT and SIGTERM during a transfer into a clean stop.

    The first signal (or :meth:`stop` from a ``--duration`` timer) sends ABOR once the
    server has answered 150 (at once if it already has); the transfer then ends with
    the server's 426 and the ABOR with its 226, which :meth:`settle` waits for. A
    second signal, or no answer within *grace* seconds, closes the control connection.
    A signal before there is a connection stops the program (:attr:`hard`).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, reactor: Any, grace: float = 5.0) -> None:
        self.reactor = reactor
        self.grace = grace
        self.client: Any = None
        #: Why the transfer is being stopped ("SIGINT", "SIGTERM", "--duration"), or None.
        self.reason: str | None = None
        #: When the server answered 150 (time.monotonic()), or None.
        self.started_at: float | None = None
        #: When the stop was asked for (time.monotonic()), or None.
        self.stopped_at: float | None = None
        self.hard = False
        self.abort_reply: defer.Deferred[Any] | None = None
        self._saved: dict[int, Any] = {}
        self._timers: list[Any] = []

    def install(self) -> None:
        """Take SIGINT and SIGTERM over (call once the reactor runs: it installs its own)."""
        for sig in self.SIGNALS:
            self._saved[sig] = signal.getsignal(sig)
            signal.signal(sig, self._signalled)

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def _signalled(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.stop, signal.Signals(signum).name)

    def started(self, reply: Reply | None = None, duration: float | None = None) -> None:
        """The server answered 150: the transfer runs (for *duration* seconds at most)."""
        self.started_at = time.monotonic()
        if duration:
            self._timers.append(self.reactor.callLater(duration, self.stop, "--duration"))
        if self.reason is not None:
            self._abort()

    def stop(self, reason: str) -> None:
        if self.reason is not None:          # a second signal: stop waiting for the server
            if reason != "--duration":
                self._hangUp()
            return
        self.reason = reason
        self.stopped_at = time.monotonic()
        if self.client is None:
            self.hard = True
            self.reactor.stop()
        elif self.started_at is not None:
            self._abort()
        # else: the command checks :attr:`reason` before it starts the transfer, or
        # :meth:`started` sends the ABOR as soon as the 150 comes.

    def _abort(self) -> None:
        if self.abort_reply is not None or self.client is None or self.client.closed:
            return
        self.abort_reply = self.client.abort()
        self.abort_reply.addErrback(lambda f: None)        # settle() tells
        self._timers.append(self.reactor.callLater(self.grace, self._hangUp))

    def _hangUp(self) -> None:
        if self.client is not None and not self.client.closed:
            self.client.transport.abortConnection()

    def check(self) -> None:
        """Before a transfer starts: give up if a stop was asked for already."""
        if self.reason is not None:
            raise CLIError(f"interrupted ({self.reason}) before the transfer started")

    def stopped(self, e: BaseException) -> bool:
        """Whether *e* (from the transfer) is the end of a transfer we stopped."""
        if self.reason is None or self.started_at is None:
            return False
        return isinstance(e, ConnectionLost) or (isinstance(e, CommandFailed) and e.code == 426)

    async def settle(self) -> bool:
        """Wait for the ABOR's reply; True if the server answered it (and QUIT can follow)."""
        if self.abort_reply is None:
            return False
        result = await self.abort_reply
        return isinstance(result, Reply) and self.client is not None and not self.client.closed

    def elapsed(self) -> float:
        """Seconds from the 150 to the stop (the time the transfer ran)."""
        end = self.stopped_at or time.monotonic()
        return max(0.0, end - (self.started_at or end))


async def _connect(reactor: Any, url: str) -> Any:
    from .client import connect_url
    return await connect_url(reactor, url)


def _path(url: str) -> str:
    from .wire.url import parse_url
    return parse_url(url).path


async def cmd_status(reactor: Any, args: argparse.Namespace) -> None:
    c = await _connect(reactor, args.url)
    tape = await c.tapeStatus()
    cam = await c.cameraStatus()
    print(f"tape: {tape.operation} at {format_number(tape.position)}")
    for name, rng in tape.commands.items():
        print(f"  {name}" + (f" {format_number(rng[0])}..{format_number(rng[1])}" if rng else ""))
    print("camera:" + ("" if cam.controls else " (no controls)"))
    for name, (lo, cur, hi) in cam.controls.items():
        print(f"  {name:5} {format_number(cur):>10}   [{format_number(lo)} .. {format_number(hi)}]")
    await c.quit()


async def cmd_ptz(reactor: Any, args: argparse.Namespace) -> None:
    if not args.moves or len(args.moves) % 2:
        raise CLIError("give pairs: CONTROL VALUE ... (for example: pan +5 zoom -)")
    c = await _connect(reactor, args.url)
    for name, value in zip(args.moves[::2], args.moves[1::2], strict=True):
        verb = NAMES.get(name.lower(), name.upper())
        if verb not in CAMERA_CONTROLS:
            raise CLIError(f"unknown camera control {name!r}: one of {', '.join(sorted(NAMES))}")
        r = await c.camera(verb, value)
        print(r.text.replace("Command okay: ", ""))
    await c.quit()


async def cmd_tape(reactor: Any, args: argparse.Namespace) -> None:
    c = await _connect(reactor, args.url)
    action = args.action.lower()
    calls = {"play": c.play, "record": c.record, "rec": c.record, "ff": c.fastForward}
    if action == "pause":
        r = await c.pause()
    elif action in calls:
        r = await calls[action](*args.numbers[:2])
    elif action == "status":
        s = await c.tapeStatus()
        print(f"{s.operation} at {format_number(s.position)}")
        await c.quit()
        return
    else:
        raise CLIError(f"unknown tape action {args.action!r}: play, record, ff, pause or status")
    print(r.text.replace("Command okay: ", ""))
    await c.quit()


async def cmd_ls(reactor: Any, args: argparse.Namespace) -> None:
    c = await _connect(reactor, args.url)
    print((await c.list(_path(args.url))).rstrip("\r\n"))
    await c.quit()


async def _media_mode(c: Any, args: argparse.Namespace) -> None:
    await c.type(args.type)
    if args.udp:
        await c.mode(f"P {args.per_datagram if args.type != 'I R 33' else 1}")


async def cmd_get(reactor: Any, args: argparse.Namespace) -> None:
    """RETR into FILE.part, renamed to FILE when complete. Stopped by ``--duration`` or,
    for a stream of unknown size, by SIGINT/SIGTERM, it keeps what arrived (a recording);
    a file of known size that did not arrive whole is removed."""
    stopper: Stopper = args.stopper
    c = await _connect(reactor, args.url)
    stopper.client = c
    path = _path(args.url)
    out = args.output or os.path.basename(path.rstrip("/")) or "download"
    await _media_mode(c, args)
    part = out + ".part"
    progress = Progress(os.path.basename(out), None, args.progress)
    try:
        f = open(part, "wb")  # closed by the with below
    except OSError as e:
        raise CLIError(f"cannot write {out}: {e.strerror}") from None
    try:
        with f:
            def sized(n: int) -> None:
                progress.total = n
            stopper.check()
            r = await c.retrieve(path, _CountingConsumer(f, progress), on_size=sized,
                                 on_start=lambda reply: stopper.started(reply, args.duration))
    except (CommandFailed, ConnectionLost) as e:
        if not stopper.stopped(e):
            if os.path.exists(part):
                os.unlink(part)
            raise
        confirmed = await stopper.settle()
        progress.finish()
        how = f"stopped after {stopper.elapsed():.1f} s ({stopper.reason})"
        if not confirmed:
            how += "; the server did not answer ABOR, the control connection was closed"
        if stopper.reason != "--duration" and progress.total is not None:
            os.unlink(part)                  # a file of known size, cut short: not a file to keep
            raise CLIError(f"interrupted ({stopper.reason}): {out} not saved "
                           f"({progress.done} of {progress.total} bytes had arrived)") from None
        os.replace(part, out)                # a recording: what arrived is the file
        print(f"{path} -> {out} ({progress.summary()}): {how}")
        if confirmed:
            await c.quit()
        return
    except BaseException:
        if os.path.exists(part):
            os.unlink(part)
        raise
    progress.finish()
    os.replace(part, out)
    print(f"{path} -> {out} ({progress.summary()}): {r.text}")
    await c.quit()


def _check_ts(path: str) -> None:
    """Refuse a file that is not whole MPEG2-TS packets (sync byte every 188 bytes)."""
    from .wire.media import TS_PACKET, TS_SYNC
    size = os.path.getsize(path)
    hint = "; send it as it is with --type I over TCP"
    if size == 0 or size % TS_PACKET:
        raise CLIError(f"{path} is not an MPEG2-TS stream ({size} bytes is not a whole number of "
                       f"{TS_PACKET}-byte packets){hint}")
    with open(path, "rb") as f:
        at = 0
        while True:
            block = f.read(TS_PACKET * 4096)
            if not block:
                return
            syncs = block[::TS_PACKET]          # reads are whole packets, so these line up
            if syncs.count(TS_SYNC) != len(syncs):
                i = next(k for k, b in enumerate(syncs) if b != TS_SYNC) * TS_PACKET
                raise CLIError(f"{path} is not an MPEG2-TS stream (no sync byte at offset {at + i}){hint}")
            at += len(block)


async def cmd_put(reactor: Any, args: argparse.Namespace) -> None:
    from .devices import FileMediaSource
    if not os.path.isfile(args.file):
        raise CLIError(f"no such file: {args.file}")
    if args.udp or args.type.strip().upper() != "I":
        # Sent as TS packets (paced, or packed into RTP): the file must be MPEG2-TS through
        # and through, or packets would be dropped on the way without a word.
        _check_ts(args.file)
    c = await _connect(reactor, args.url)
    path = _path(args.url)
    if path.endswith("/"):
        path += os.path.basename(args.file)
    await _media_mode(c, args)
    source = FileMediaSource(args.file)
    progress = Progress(os.path.basename(args.file), source.length, args.progress)
    r = await c.store(path, _ProgressSource(source, progress))
    progress.finish()
    print(f"{args.file} -> {path} ({progress.summary()}): {r.text}")
    await c.quit()


async def cmd_stream(reactor: Any, args: argparse.Namespace) -> None:
    """PORT and RETR in MODE P until the medium ends, or until SIGINT/SIGTERM: then
    ABOR, wait for the server's 426 and 226, QUIT, and say how long it ran."""
    host, _, port = args.udp.rpartition(":")
    if not host or not port.isdigit():
        raise CLIError("--udp takes HOST:PORT, for example 127.0.0.1:6000")
    stopper: Stopper = args.stopper
    c = await _connect(reactor, args.url)
    stopper.client = c
    await c.type(args.type)
    await c.mode(f"P {1 if args.type.startswith('I R') else args.per_datagram}")
    stopper.check()
    print(f"streaming {_path(args.url)} to udp://{host}:{port} (Ctrl-C to stop)", file=sys.stderr)
    try:
        r = await c.streamTo(_path(args.url), host, int(port), on_start=stopper.started)
    except (CommandFailed, ConnectionLost) as e:
        if not stopper.stopped(e):
            raise
        confirmed = await stopper.settle()
        note = "" if confirmed else " (the server did not answer ABOR; the control connection was closed)"
        print(f"stopped after {stopper.elapsed():.1f} s{note}")
        if confirmed:
            await c.quit()
        return
    print(r.text)
    await c.quit()


async def cmd_shell(reactor: Any, args: argparse.Namespace) -> None:
    """An interactive control session: command lines go to the server as they are
    (``ls [path]`` lists through a data connection); history is kept in ~/.cccp_history."""
    from twisted.internet import threads
    try:
        import readline
    except ImportError:                      # pragma: no cover - not on every platform
        readline = None  # type: ignore[assignment]
    history = os.path.expanduser("~/.cccp_history")
    if readline is not None:
        try:
            readline.read_history_file(history)
        except OSError:
            pass
    c = await _connect(reactor, args.url)
    greeting = "connected; commands go to the server as typed (ls [path] lists, quit ends)"
    print(greeting, flush=True)
    try:
        while True:
            try:
                line = await threads.deferToThread(input, "cccp> " if sys.stdin.isatty() else "")
            except EOFError:
                break
            line = line.strip()
            if not line:
                continue
            if line.lower() in ("quit", "exit", "bye"):
                break
            try:
                if line.lower() == "ls" or line.lower().startswith("ls "):
                    print((await c.list(line[3:].strip() or None)).rstrip("\r\n"), flush=True)
                    continue
                r = await c.sendCommand(line)
                code, lines = r.code, r.lines
            except CommandFailed as e:
                code, lines = e.code, e.lines
            for i, text in enumerate(lines):
                print(f"{code}{'-' if i < len(lines) - 1 else ' '}{text}", flush=True)
    finally:
        if readline is not None:
            try:
                readline.write_history_file(history)
            except OSError:
                pass
        if not c.closed:
            await c.quit()


COMMANDS = {"shell": cmd_shell, "status": cmd_status, "ptz": cmd_ptz, "tape": cmd_tape, "ls": cmd_ls, "get": cmd_get,
            "put": cmd_put, "stream": cmd_stream}


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cccp", description="Drive a CCCP camera/recorder server.")
    sub = p.add_subparsers(dest="command", required=True)
    sh = sub.add_parser("shell", help="an interactive session with history")
    sh.add_argument("url")
    s = sub.add_parser("status", help="TSTA and CSTA")
    s.add_argument("url")
    z = sub.add_parser("ptz", help="camera controls: pan +5 zoom - ...")
    z.add_argument("url")
    z.add_argument("moves", nargs=argparse.REMAINDER)
    t = sub.add_parser("tape", help="play/record/ff [stop [speed]], pause, status")
    t.add_argument("url")
    t.add_argument("action")
    t.add_argument("numbers", nargs="*")
    ls = sub.add_parser("ls", help="LIST a folder")
    ls.add_argument("url")
    for name, helptext in (("get", "RETR a medium into a file"), ("put", "STOR a file")):
        g = sub.add_parser(name, help=helptext)
        if name == "put":
            g.add_argument("file")
        g.add_argument("url")
        if name == "get":
            g.add_argument("-o", "--output")
            g.add_argument("--duration", type=_seconds, metavar="SECONDS",
                           help="stop (ABOR) after this long and keep what arrived (for live streams)")
        g.add_argument("--udp", action="store_true", help="UDP (MODE P) instead of TCP")
        g.add_argument("--type", default="I", help="TYPE after 'TYPE ' (I, 'I M', 'I R 33')")
        g.add_argument("--per-datagram", type=int, default=7)
        g.add_argument("--progress", dest="progress", action="store_true", default=sys.stderr.isatty())
        g.add_argument("--no-progress", dest="progress", action="store_false")
    st = sub.add_parser("stream", help="send a medium to a player over UDP")
    st.add_argument("url")
    st.add_argument("--udp", required=True, metavar="HOST:PORT")
    st.add_argument("--type", default="I M")
    st.add_argument("--per-datagram", type=int, default=7)
    return p


def _where(args: argparse.Namespace) -> str:
    try:
        from .wire.url import parse_url
        u = parse_url(args.url)
        return f" at {u.host}:{u.port}"
    except Exception:
        return ""


#: Commands whose transfer SIGINT/SIGTERM stop with ABOR (see :class:`Stopper`).
STOPPABLE = ("get", "stream")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    status = [0]
    stopper: Stopper | None = None

    def run(reactor: Any) -> defer.Deferred[Any]:
        nonlocal stopper
        if args.command in STOPPABLE:
            s = stopper = args.stopper = Stopper(reactor)
            reactor.callWhenRunning(s.install)            # after the reactor's own handlers
        d = defer.ensureDeferred(COMMANDS[args.command](reactor, args))
        if args.command in STOPPABLE:
            def restored(result: Any) -> Any:
                s.restore()
                return result
            d.addBoth(restored)

        def report(f: Any) -> None:
            e = f.value
            if isinstance(e, CommandFailed):
                sys.stderr.write(f"cccp: the server answered {e.code} {' / '.join(e.lines)}\n")
            elif isinstance(e, (ierror.ConnectError, ierror.TimeoutError)):
                sys.stderr.write(f"cccp: cannot reach the server{_where(args)}: {e.__class__.__name__}\n")
            elif isinstance(e, OSError) and e.filename and e.strerror:
                sys.stderr.write(f"cccp: {e.filename}: {e.strerror}\n")
            elif isinstance(e, (CLIError, CCCPError, LocalProtocolError, OSError)):
                sys.stderr.write(f"cccp: {e}\n")
            else:
                sys.stderr.write(f"cccp: unexpected error: {e.__class__.__name__}: {e}\n")
            status[0] = 1
        return d.addErrback(report)

    try:
        task.react(run)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    if stopper is not None and stopper.hard:
        sys.stderr.write(f"cccp: interrupted ({stopper.reason}) before connecting\n")
        status[0] = 1
    raise SystemExit(status[0])


if __name__ == "__main__":
    main()
