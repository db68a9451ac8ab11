"""The CCCP client: every command as a method returning a Deferred.

The server answers other commands while a transfer runs (draft section 1), so
the final reply of a transfer can come after replies to later commands. The
client keeps at most one transfer in the background and routes the transfer
completion codes (226, 425, 426, 451, 452, 552) to it; everything else answers
the oldest outstanding command, as in FTP. ABOR during a transfer is answered
426 (the transfer) then 226 (the ABOR).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .data import DataProtocol, connect_active, listen_passive
from .stream import MediaReceiver, MediaSender, listen_udp, multicast_receiver
from .wire.commands import (
    DEFAULT_PORT,
    CameraStatus,
    Reply,
    ReplyParser,
    TapeStatus,
    TransferMode,
    TransferType,
    format_host_port,
    format_number,
    parse_csta,
    parse_host_port,
    parse_mode,
    parse_tsta,
    parse_type,
)
from .wire.errors import CommandFailed, ConnectionLost, LocalProtocolError, RemoteProtocolError
from .wire.session import TOO_LONG, LineBuffer

#: Longest reply line accepted from a server (a listing line on the control connection
#: holds a file name; anything longer is not a CCCP server talking).
MAX_REPLY_LINE = 8192

TRANSFER_FINAL = frozenset({226, 425, 426, 451, 452, 552})


@dataclass
class _Pending:
    line: str
    deferred: defer.Deferred[Reply]
    transfer: bool = False
    on_preliminary: Callable[[Reply], Any] | None = None


@implementer(IConsumer)
class _Collect:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def registerProducer(self, p: Any, s: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def value(self) -> bytes:
        return b"".join(self.parts)


def _number(value: Decimal | int | float | str) -> str:
    if isinstance(value, str):
        return value
    return format_number(Decimal(str(value)) if isinstance(value, float) else Decimal(value))


_SIZE = re.compile(r"\((\d{1,19}) bytes\)\s*$")


def preliminary_size(text: str) -> int | None:
    """The byte count a 150 reply ends with (``... (1234 bytes)``), or None."""
    m = _SIZE.search(text)
    return int(m.group(1)) if m else None


class CCCPClient(protocol.Protocol):
    """A CCCP control connection. Build with :func:`connect`."""

    # Set by makeConnection: a tcp.Connection, which is an ITCPTransport, IConsumer and
    # IPushProducer at once (and whose internals the sendfile paths use).
    transport: Any

    log = Logger()

    def __init__(self, passive: bool = True) -> None:
        self.passive = passive
        self.greeting: defer.Deferred[Reply] = defer.Deferred()
        self._parser = ReplyParser()
        self._lines = LineBuffer(MAX_REPLY_LINE)
        self._queue: deque[_Pending] = deque()
        self._transfer: _Pending | None = None
        self._transfer_lock = defer.DeferredLock()
        self.closed = False
        self.whenClosed: defer.Deferred[None] = defer.Deferred()
        self.reactor: Any = None
        #: The TYPE and MODE in force (as the server accepted them).
        self.current_type = TransferType("A")
        self.current_mode = TransferMode("S")
        #: Seconds to keep a UDP port open after the final reply (late datagrams).
        self.udp_grace = 0.2

    # -- protocol ------------------------------------------------------------------
    def connectionMade(self) -> None:
        self._queue.append(_Pending("<greeting>", self.greeting))

    def dataReceived(self, data: bytes) -> None:
        self._lines.feed(data)
        while not self.closed:
            line = self._lines.next_line()
            if line is None:
                return
            try:
                if line is TOO_LONG:
                    raise RemoteProtocolError(f"a reply line longer than {MAX_REPLY_LINE} bytes")
                reply = self._parser.line(cast(bytes, line).decode("utf-8", "replace"))
            except RemoteProtocolError as e:
                self.log.warn("bad reply line from server: {e}", e=e)
                self.transport.loseConnection()
                return
            if reply is not None:
                self._dispatch(reply)

    def _dispatch(self, reply: Reply) -> None:
        if reply.preliminary:
            head = self._queue[0] if self._queue else None
            if head is not None and head.transfer:
                self._queue.popleft()
                self._transfer = head
                if head.on_preliminary is not None:
                    head.on_preliminary(reply)
            return
        if self._transfer is not None and reply.code in TRANSFER_FINAL:
            pending, self._transfer = self._transfer, None
        elif self._queue:
            pending = self._queue.popleft()
        else:
            self.log.warn("unsolicited reply {code} {text}", code=reply.code, text=reply.text)
            return
        if 400 <= reply.code < 600:
            pending.deferred.errback(CommandFailed(reply.code, reply.lines, pending.line.split(" ")[0]))
        else:
            pending.deferred.callback(reply)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        pending = list(self._queue) + ([self._transfer] if self._transfer else [])
        self._queue.clear()
        self._transfer = None
        for p in pending:
            if not p.deferred.called:
                p.deferred.errback(ConnectionLost(f"control connection closed: {reason.getErrorMessage()}"))
        self.whenClosed.callback(None)

    # -- commands ----------------------------------------------------------------------
    def sendCommand(self, line: str, *, transfer: bool = False,
                    on_preliminary: Callable[[Reply], Any] | None = None) -> defer.Deferred[Reply]:
        """Send one command line; fires with its final :class:`~cccp.wire.commands.Reply`
        or fails with :class:`~cccp.wire.errors.CommandFailed` for 4xx/5xx."""
        if "\n" in line or "\r" in line:
            return defer.fail(LocalProtocolError("a command is one line"))
        if self.closed:
            return defer.fail(ConnectionLost("control connection closed"))
        d: defer.Deferred[Reply] = defer.Deferred()
        self._queue.append(_Pending(line, d, transfer, on_preliminary))
        self.transport.write(line.encode("utf-8") + b"\r\n")
        return d

    def _cmd(self, verb: str, arg: str | None = None) -> defer.Deferred[Reply]:
        return self.sendCommand(verb if arg is None else f"{verb} {arg}")

    @defer.inlineCallbacks
    def login(self, user: str = "anonymous", password: str = "cccp@") -> Any:
        """USER, then PASS when the server asks for it (331); fires with the final reply."""
        r = yield self._cmd("USER", user)
        if r.code == 331:
            r = yield self._cmd("PASS", password)
        return r

    def user(self, name: str) -> defer.Deferred[Reply]:
        """USER *name*."""
        return self._cmd("USER", name)

    def password(self, pw: str) -> defer.Deferred[Reply]:
        """PASS *pw*."""
        return self._cmd("PASS", pw)

    def account(self, acct: str) -> defer.Deferred[Reply]:
        """ACCT *acct*."""
        return self._cmd("ACCT", acct)

    def cwd(self, path: str) -> defer.Deferred[Reply]:
        """CWD *path*."""
        return self._cmd("CWD", path)

    def cdup(self) -> defer.Deferred[Reply]:
        """CDUP: to the parent folder."""
        return self._cmd("CDUP")

    def smnt(self, path: str) -> defer.Deferred[Reply]:
        """SMNT *path* (structure mount)."""
        return self._cmd("SMNT", path)

    def reinitialize(self) -> defer.Deferred[Reply]:
        """REIN: log out; the connection stays open for a new USER."""
        return self._cmd("REIN")

    @defer.inlineCallbacks
    def pwd(self) -> Any:
        """PWD: the current folder, unquoted."""
        r = yield self._cmd("PWD")
        text = r.lines[0]
        if text.startswith('"'):
            end = 1
            out = []
            while end < len(text):
                if text[end] == '"':
                    if text[end + 1:end + 2] == '"':
                        out.append('"')
                        end += 2
                        continue
                    break
                out.append(text[end])
                end += 1
            return "".join(out)
        return text

    def system(self) -> defer.Deferred[Reply]:
        """SYST."""
        return self._cmd("SYST")

    def status(self, path: str | None = None) -> defer.Deferred[Reply]:
        """STAT: the server's status, or during a transfer its progress; with *path*, a listing."""
        return self._cmd("STAT", path)

    def help(self, command: str | None = None) -> defer.Deferred[Reply]:
        """HELP, or HELP *command*."""
        return self._cmd("HELP", command)

    def noop(self) -> defer.Deferred[Reply]:
        """NOOP."""
        return self._cmd("NOOP")

    def type(self, spec: str) -> defer.Deferred[Reply]:
        """TYPE *spec* (``A``, ``I``, ``I M`` for paced MPEG2-TS, ``I R 33`` for RTP with payload type 33...).

        The client remembers it to frame what it sends and receives.
        """
        parsed = parse_type(spec)

        def accepted(r: Reply) -> Reply:
            self.current_type = parsed
            return r
        return self._cmd("TYPE", spec).addCallback(accepted)

    def mode(self, spec: str) -> defer.Deferred[Reply]:
        """MODE *spec* (``S`` for a TCP stream, ``P 7`` for UDP datagrams of 7 TS packets...)."""
        parsed = parse_mode(spec)

        def accepted(r: Reply) -> Reply:
            self.current_mode = parsed
            return r
        return self._cmd("MODE", spec).addCallback(accepted)

    def _framing(self) -> str:
        if self.current_type.format == "R":
            return "rtp"
        if self.current_type.format == "M" or self.current_mode.code == "P":
            return "ts"
        return "raw"

    @defer.inlineCallbacks
    def quit(self) -> Any:
        """QUIT, then close the connection."""
        r = yield self._cmd("QUIT")
        self.transport.loseConnection()
        return r

    def abort(self) -> defer.Deferred[Reply]:
        """ABOR: ends the running transfer (its Deferred fails with 426)."""
        return self._cmd("ABOR")

    # -- data ---------------------------------------------------------------------------
    @defer.inlineCallbacks
    def _dataChannel(self) -> Any:
        """PASV (connecting to the control host, as curl and ftplib do) or PORT."""
        peer = self.transport.getPeer()
        if self.passive:
            r = yield self._cmd("PASV")
            text = r.lines[0]
            start, end = text.find("("), text.find(")")
            _host, port = parse_host_port(text[start + 1:end] if start >= 0 else text.split()[-1])
            data = yield connect_active(self.reactor, peer.host, port)
            return data, None
        local = self.transport.getHost()
        listener = listen_passive(self.reactor, local.host, peer.host)
        try:
            yield self._cmd("PORT", format_host_port(local.host, listener.port.getHost().port))
        except BaseException:
            listener.stop()
            raise
        return None, listener

    @defer.inlineCallbacks
    def _transferCommand(self, line: str, run: Callable[[DataProtocol], Any],
                         on_preliminary: Callable[[Reply], None] | None = None) -> Any:
        yield self._transfer_lock.acquire()
        try:
            data, listener = yield self._dataChannel()
            started: defer.Deferred[DataProtocol] = defer.Deferred()
            if data is not None:
                started.callback(data)
            else:
                listener.accepted.addTimeout(30, self.reactor)
                listener.accepted.chainDeferred(started)
            ran: list[Any] = []

            def preliminary(reply: Reply) -> None:
                if on_preliminary is not None:
                    on_preliminary(reply)

                def go(d: Any) -> Any:
                    ran.append(run(d))
                    return d
                started.addCallback(go)

            final = self.sendCommand(line, transfer=True, on_preliminary=preliminary)
            try:
                reply = yield final
            except BaseException:
                started.addCallback(lambda d: d.abort())
                started.addErrback(lambda f: None)
                raise
            finally:
                if listener is not None:
                    listener.stop()
            conn = yield started
            yield conn.closed_d
            return reply
        finally:
            self._transfer_lock.release()

    @defer.inlineCallbacks
    def streamTo(self, path: str, host: str, port: int,
                 on_start: Callable[[Reply], Any] | None = None) -> Any:
        """RETR *path* to a third party (a player, a recorder, a multicast group):
        PORT host,port then RETR; fires with the final reply. In MODE P the
        stream goes out as UDP datagrams. *on_start* is called with the 150 reply
        (from then on, :meth:`abort` stops the stream)."""
        yield self._transfer_lock.acquire()
        try:
            yield self._cmd("PORT", format_host_port(host, port))
            reply = yield self.sendCommand(f"RETR {path}", transfer=True, on_preliminary=on_start)
            return reply
        finally:
            self._transfer_lock.release()

    def retrieve(self, path: str, consumer: IConsumer,
                 multicast: tuple[str, int] | None = None,
                 on_size: Callable[[int], None] | None = None,
                 on_start: Callable[[Reply], Any] | None = None) -> defer.Deferred[Reply]:
        """RETR *path* into *consumer*; fires with the final (226) reply.

        Follows TYPE and MODE: TYPE I M delivers validated TS, TYPE I R delivers
        the RTP payload (TS for payload type 33), and MODE P receives UDP datagrams
        (through PASV, announcing our address with one datagram, or through PORT).
        With *multicast* ``(group, port)`` in MODE P, the client joins the group and
        asks the server to send there (the server's policy must allow multicast).
        *on_size* is called with the byte count when the server's 150 reply names one
        (``(N bytes)``, for files sent as they are over TCP); *on_start* with the 150
        reply itself, in every mode (a live stream has no size: it runs until
        :meth:`abort`).
        """
        def preliminary(reply: Reply) -> None:
            size = preliminary_size(reply.text)
            if on_size is not None and size is not None:
                on_size(size)
            if on_start is not None:
                on_start(reply)
        framing = self._framing()
        if self.current_mode.code == "P":
            receiver = MediaReceiver(consumer, framing=framing, udp=True,
                                     payload_types=self.current_type.payload_types)
            if multicast is not None:
                return self._retrieveMulticast(path, receiver, *multicast, on_start=preliminary)
            return self._retrieveUDP(path, receiver, on_start=preliminary)
        sink: Any = consumer if framing == "raw" else MediaReceiver(
            consumer, framing=framing, udp=False, payload_types=self.current_type.payload_types)
        return self._transferCommand(f"RETR {path}", lambda data: data.receiveInto(sink), preliminary)

    def store(self, path: str, source: Any) -> defer.Deferred[Reply]:
        """STOR *path* from an IBodyProducer-like *source* (``length``, ``startProducing``).

        In MODE P the TS is sent as paced UDP datagrams to the server's PASV port,
        and the recording is ended with ABOR once everything was sent.
        """
        if self.current_mode.code == "P":
            return self._storeUDP(path, source)
        framing = self._framing()

        def run(data: DataProtocol) -> None:
            if framing == "rtp":         # RTP framed on TCP (RFC 4571), packetised here
                sender = MediaSender(self.reactor, data.transport, udp=False, framing="rtp", paced=False)
                data.transport.registerProducer(sender, True)
                started = defer.maybeDeferred(source.startProducing, sender)
                started.addBoth(sender.sourceDone)
                sender._schedule()
                d = sender.done
                d.addBoth(lambda r: (data.transport.unregisterProducer(), r)[1])
            else:                        # raw bytes or TS: sent as they are; the server checks them
                d = defer.maybeDeferred(source.startProducing, data.transport)

            def failed(f: Failure) -> None:
                # Break the connection so the server discards the partial recording.
                self.log.failure("STOR source failed; aborting the data connection", f)
                data.abort()
            d.addCallbacks(lambda _: data.close(), failed)
        return self._transferCommand(f"STOR {path}", run)

    @defer.inlineCallbacks
    def _udpPort(self) -> Any:
        """A local UDP endpoint for MODE P, and the server's port when passive."""
        peer = self.transport.getPeer()
        local = self.transport.getHost()
        ep = listen_udp(self.reactor, local.host, peer.host)
        if self.passive:
            r = yield self._cmd("PASV")
            text = r.lines[0]
            _host, port = parse_host_port(text[text.find("(") + 1:text.find(")")])
            ep.peer = (peer.host, port)
        else:
            try:
                yield self._cmd("PORT", format_host_port(local.host, ep.port.getHost().port))
            except BaseException:
                ep.close()
                raise
        return ep

    @defer.inlineCallbacks
    def _retrieveUDP(self, path: str, receiver: MediaReceiver,
                     on_start: Callable[[Reply], Any] | None = None) -> Any:
        yield self._transfer_lock.acquire()
        ep = None
        try:
            ep = yield self._udpPort()
            ep.on_datagram = receiver.datagram
            final = self.sendCommand(f"RETR {path}", transfer=True, on_preliminary=on_start)
            if ep.peer is not None:
                ep.send(b"")                # tell the server's PASV port where to send
            reply = yield final
            yield task.deferLater(self.reactor, self.udp_grace)
            return reply
        finally:
            if ep is not None:
                ep.close()
            self._transfer_lock.release()

    @defer.inlineCallbacks
    def _retrieveMulticast(self, path: str, receiver: MediaReceiver, group: str, port: int,
                           on_start: Callable[[Reply], Any] | None = None) -> Any:
        yield self._transfer_lock.acquire()
        member = None
        try:
            member = multicast_receiver(self.reactor, group, port, self.transport.getHost().host)
            member.on_datagram = receiver.datagram
            yield self._cmd("PORT", format_host_port(group, port))
            reply = yield self.sendCommand(f"RETR {path}", transfer=True, on_preliminary=on_start)
            yield task.deferLater(self.reactor, self.udp_grace)
            return reply
        finally:
            if member is not None:
                member.close()
            self._transfer_lock.release()

    @defer.inlineCallbacks
    def _storeUDP(self, path: str, source: Any) -> Any:
        if not self.passive:
            raise LocalProtocolError("STOR in MODE P needs PASV (passive mode)")
        yield self._transfer_lock.acquire()
        ep = None
        try:
            ep = yield self._udpPort()
            preliminary: defer.Deferred[Reply] = defer.Deferred()

            def go(r: Reply) -> None:
                if not preliminary.called:
                    preliminary.callback(r)

            def refused(f: Failure) -> Failure:
                if not preliminary.called:
                    preliminary.errback(f)
                return f
            final = self.sendCommand(f"STOR {path}", transfer=True, on_preliminary=go)
            final.addErrback(refused)
            yield preliminary
            sender = MediaSender(self.reactor, ep, udp=True, framing=self._framing(),
                                 per_datagram=self.current_mode.per_packet or 7,
                                 paced=not getattr(source, "live", False))
            started = defer.maybeDeferred(source.startProducing, sender)
            started.addBoth(sender.sourceDone)
            sender._schedule()
            yield sender.done
            yield task.deferLater(self.reactor, self.udp_grace)
            abort = self._cmd("ABOR")              # a UDP recording ends with ABOR
            reply = yield final
            yield abort
            return reply
        finally:
            if ep is not None:
                ep.close()
            self._transfer_lock.release()

    @defer.inlineCallbacks
    def list(self, path: str | None = None) -> Any:
        """LIST *path*: the long listing as text."""
        sink = _Collect()
        yield self._transferCommand("LIST" if path is None else f"LIST {path}", lambda d: d.receiveInto(sink))
        return sink.value().decode("utf-8", "replace")

    @defer.inlineCallbacks
    def nlst(self, path: str | None = None) -> Any:
        """NLST *path*: the names, as a list."""
        sink = _Collect()
        yield self._transferCommand("NLST" if path is None else f"NLST {path}", lambda d: d.receiveInto(sink))
        return [n for n in sink.value().decode("utf-8", "replace").split("\r\n") if n]

    # -- tape (draft section 4) ----------------------------------------------------------
    def _tape(self, verb: str, stop: Any = None, speed: Any = None) -> defer.Deferred[Reply]:
        args = []
        if stop is not None:
            args.append(_number(stop))
        if speed is not None:
            if stop is None:
                raise LocalProtocolError("a speed needs a stop position before it")
            args.append(_number(speed))
        return self._cmd(verb, " ".join(args) or None)

    def play(self, stop: Any = None, speed: Any = None) -> defer.Deferred[Reply]:
        """PLAY [*stop* [*speed*]]: play the tape (to position *stop*, at *speed* times normal)."""
        return self._tape("PLAY", stop, speed)

    def record(self, stop: Any = None, speed: Any = None) -> defer.Deferred[Reply]:
        """RECO [*stop* [*speed*]]: record."""
        return self._tape("RECO", stop, speed)

    def fastForward(self, stop: Any = None, speed: Any = None) -> defer.Deferred[Reply]:
        """FF [*stop* [*speed*]]: wind; a negative speed rewinds."""
        return self._tape("FF", stop, speed)

    def pause(self) -> defer.Deferred[Reply]:
        """PAUS: stop the tape where it is."""
        return self._cmd("PAUS")

    @defer.inlineCallbacks
    def tapeStatus(self) -> Any:
        """TSTA, parsed: a :class:`~cccp.wire.commands.TapeStatus` (state and position)."""
        r = yield self._cmd("TSTA")
        return parse_tsta(r.lines)

    # -- camera (draft section 5) ----------------------------------------------------------
    def camera(self, verb: str, value: Any) -> defer.Deferred[Reply]:
        """A camera command: *value* is a number (absolute), a string such as "+5"
        (relative) or "+"/"-" (a small step)."""
        return self._cmd(verb.upper(), _number(value))

    def iris(self, value: Any) -> defer.Deferred[Reply]:
        """IRIS *value*: aperture."""
        return self.camera("IRIS", value)

    def sensitivity(self, value: Any) -> defer.Deferred[Reply]:
        """SENS *value*: sensitivity."""
        return self.camera("SENS", value)

    def roll(self, value: Any) -> defer.Deferred[Reply]:
        """ROLL *value*: rotation about the optical axis, degrees."""
        return self.camera("ROLL", value)

    def pan(self, value: Any) -> defer.Deferred[Reply]:
        """PAN *value*: degrees."""
        return self.camera("PAN", value)

    def tilt(self, value: Any) -> defer.Deferred[Reply]:
        """TILT *value*: degrees."""
        return self.camera("TILT", value)

    def zoom(self, value: Any) -> defer.Deferred[Reply]:
        """ZOOM *value*: focal length."""
        return self.camera("ZOOM", value)

    def horizontal(self, value: Any) -> defer.Deferred[Reply]:
        """HORI *value*: horizontal translation."""
        return self.camera("HORI", value)

    def vertical(self, value: Any) -> defer.Deferred[Reply]:
        """VERT *value*: vertical translation."""
        return self.camera("VERT", value)

    def depth(self, value: Any) -> defer.Deferred[Reply]:
        """DEPT *value*: translation along the optical axis."""
        return self.camera("DEPT", value)

    def focus(self, value: Any) -> defer.Deferred[Reply]:
        """FOCU *value*: focus distance."""
        return self.camera("FOCU", value)

    @defer.inlineCallbacks
    def cameraStatus(self) -> Any:
        """CSTA, parsed: a :class:`~cccp.wire.commands.CameraStatus` with ``(min, current, max)`` of every control."""
        r = yield self._cmd("CSTA")
        return parse_csta(r.lines)


class _ClientFactory(protocol.ClientFactory):
    def __init__(self, reactor: Any, passive: bool) -> None:
        self.reactor = reactor
        self.passive = passive

    def buildProtocol(self, addr: Any) -> CCCPClient:
        p = CCCPClient(self.passive)
        p.factory = self
        p.reactor = self.reactor
        return p


@defer.inlineCallbacks
def connect(reactor: Any, host: str, port: int = DEFAULT_PORT, *, user: str | None = "anonymous",
            password: str = "cccp@", passive: bool = True, timeout: float = 30.0) -> Any:
    """Connect, read the greeting and (unless *user* is None) log in."""
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    client: CCCPClient = yield endpoint.connect(_ClientFactory(reactor, passive))
    try:
        yield client.greeting
        if user is not None:
            yield client.login(user, password)
    except BaseException:
        client.transport.loseConnection()
        raise
    return client


def connect_url(reactor: Any, url: str, **kwargs: Any) -> defer.Deferred[CCCPClient]:
    from .wire.url import parse_url
    u = parse_url(url)
    kwargs.setdefault("user", u.user or "anonymous")
    kwargs.setdefault("password", u.password if u.password is not None else "cccp@")
    return connect(reactor, u.host, u.port, **kwargs)


__all__ = ["CCCPClient", "CameraStatus", "CommandFailed", "TapeStatus", "connect", "connect_url"]
