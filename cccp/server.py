"""The CCCP server: an FTP-derived control channel that reads and answers
commands at all times, also while data flows (draft section 1: "server and
client must monitor the control and data connections simultaneously").

:class:`CCCPFactory` builds a :class:`CCCPServerProtocol` per control
connection. Devices come from the avatar that :mod:`twisted.cred` returns
(:class:`~cccp.realm.ICCCPUser`): a media store, a camera and a tape deck.
"""

from __future__ import annotations

import posixpath
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from twisted.cred import credentials
from twisted.cred import error as cred_error
from twisted.internet import defer, error, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .commands import (
    ALL_COMMANDS,
    CAMERA_CONTROLS,
    FTP_ONLY,
    MAX_LINE,
    CameraStatus,
    TapeStatus,
    TransferMode,
    TransferType,
    csta_lines,
    format_host_port,
    format_number,
    format_reply,
    parse_command,
    parse_host_port,
    parse_mode,
    parse_number,
    parse_type,
    tsta_lines,
)
from .data import CountingConsumer, DataProtocol, PassiveFactory, connect_active, listen_passive
from .devices import Entry
from .errors import (
    FileUnavailable,
    NotImplementedHere,
    ParameterNotImplemented,
    RemoteProtocolError,
    SyntaxErrorInArguments,
)
from .media import RTP_MP2T
from .realm import ICCCPUser
from .stream import (
    MediaReceiver,
    MediaSender,
    StreamStopped,
    UDPEndpoint,
    is_multicast,
    listen_udp,
    multicast_receiver,
    multicast_sender,
)

#: The draft leaves the port "to be assigned by IANA"; we use this one by default.
DEFAULT_PORT = 5021

ANONYMOUS_NAMES = ("anonymous", "ftp")
PRE_LOGIN = frozenset({"USER", "PASS", "QUIT", "HELP", "NOOP", "SYST"})

HELP_TEXT: dict[str, str] = {
    "USER": "USER <name>", "PASS": "PASS <password>", "ACCT": "ACCT <account>",
    "CWD": "CWD <path>", "CDUP": "CDUP", "SMNT": "SMNT <path>", "REIN": "REIN", "QUIT": "QUIT",
    "PWD": "PWD", "LIST": "LIST [<path>]", "NLST": "NLST [<path>]", "SYST": "SYST",
    "STAT": "STAT [<path>]", "HELP": "HELP [<command>]", "NOOP": "NOOP",
    "PORT": "PORT h1,h2,h3,h4,p1,p2", "PASV": "PASV",
    "TYPE": "TYPE A [N] | I [M MP@ML|SP@ML | R pt[,pt...]]", "MODE": "MODE S [qos] | P n [qos]",
    "RETR": "RETR <path>", "STOR": "STOR <path>", "ABOR": "ABOR",
    "PLAY": "PLAY [stop-position [speed]]", "PAUS": "PAUS", "RECO": "RECO [stop-position [speed]] (also REC)",
    "FF": "FF [stop-position [speed]]", "TSTA": "TSTA",
    "IRIS": "IRIS <number> (+ opens)", "SENS": "SENS <number> (+ brighter)",
    "ROLL": "ROLL <number> (+ clockwise)", "PAN": "PAN <number> (+ view moves right)",
    "TILT": "TILT <number> (+ view moves up)", "ZOOM": "ZOOM <number> (+ narrower view)",
    "HORI": "HORI <number> (+ right)", "VERT": "VERT <number> (+ up)", "DEPT": "DEPT <number> (+ forward)",
    "FOCU": "FOCU <number> (+ farther)", "CSTA": "CSTA",
}


@dataclass
class _Transfer:
    verb: str
    path: str
    data: Any                       # a DataProtocol (TCP) or a UDPEndpoint
    started: float
    counter: Any = None
    source: Any = None
    recording: Any = None
    sender: Any = None              # a MediaSender
    receiver: Any = None            # a MediaReceiver
    aborted: bool = False
    udp: bool = False
    failure: Any = None             # why the source failed, if it did
    finished: Any = None            # fires when a UDP recording is ended by ABOR

    @property
    def transferred(self) -> int:
        if self.sender is not None:
            return self.sender.sent
        if self.receiver is not None:
            return self.receiver.bytes
        if self.counter is not None:
            return self.counter.count
        return self.data.received

    def close_data(self, abort: bool = False) -> None:
        if self.udp:
            self.data.close()
        elif abort:
            self.data.abort()
        else:
            self.data.close()


class CCCPServerProtocol(protocol.Protocol):
    """One CCCP control connection."""

    # Set by makeConnection: a tcp.Connection, which is an ITCPTransport, IConsumer and
    # IPushProducer at once (and whose internals the sendfile paths use).
    transport: Any

    log = Logger()
    factory: CCCPFactory

    def __init__(self) -> None:
        self._buffer = b""
        self._discarding = False
        self.user: ICCCPUser | None = None
        self._logout: Callable[[], None] | None = None
        self._pending_user: str | None = None
        self._failed_logins = 0
        self._login_busy = False
        self.cwd = "/"
        self.type = TransferType("A")
        self.mode = TransferMode("S")
        self._passive: PassiveFactory | UDPEndpoint | None = None
        self._active: tuple[str, int] | None = None
        self.transfer: _Transfer | None = None
        self._idle: Any = None
        self._closing = False

    # -- connection -------------------------------------------------------------
    def connectionMade(self) -> None:
        sock = getattr(self.transport, "socket", None)
        if sock is not None:
            # Clients send ABOR as TCP urgent data (ftplib) after TELNET IP/DM: keep it inline.
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
            except OSError:
                pass
        peer = self.transport.getPeer()
        self.peer_host = getattr(peer, "host", None)
        refusal = self.factory.admit(self)
        if refusal:
            self.reply(421, refusal)
            self.transport.loseConnection()
            self._closing = True
            return
        self.reply(220, self.factory.banner)
        self._resetIdle()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.release(self)
        self._cancelIdle()
        self._abortTransfer()
        self._closePassive()
        if self._logout is not None:
            self._logout()
            self._logout = None

    def reply(self, code: int, text: str | list[str]) -> None:
        if (self.transport is not None and not self._closing) or code in (221, 421):
            self.transport.write(format_reply(code, text))

    # -- lines ----------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while not self._closing:
            nl = self._buffer.find(b"\n")
            if nl < 0:
                if len(self._buffer) > MAX_LINE:
                    if not self._discarding:
                        self.reply(500, f"Command line too long (more than {MAX_LINE} bytes)")
                    self._discarding = True
                    self._buffer = b""
                return
            line, self._buffer = self._buffer[:nl], self._buffer[nl + 1:]
            if self._discarding:
                self._discarding = False
                continue
            if len(line) > MAX_LINE:
                self.reply(500, f"Command line too long (more than {MAX_LINE} bytes)")
                continue
            self.lineReceived(line.rstrip(b"\r"))
            if self._login_busy:
                # A failed login is answered after a delay; read nothing meanwhile.
                self.transport.pauseProducing()
                return

    def lineReceived(self, line: bytes) -> None:
        self._resetIdle()
        try:
            command = parse_command(line)
        except RemoteProtocolError as e:
            self.reply(e.code, str(e))
            return
        verb = command.verb
        if verb in FTP_ONLY:
            self.reply(502, f"{command.raw_verb.upper()} does not exist in CCCP")
            return
        handler = getattr(self, f"cccp_{verb}", None)
        if handler is None or verb not in ALL_COMMANDS:
            self.reply(500, f"Syntax error, command unrecognized: {command.raw_verb[:20]}")
            return
        if self.user is None and verb not in PRE_LOGIN:
            self.reply(530, "Please login with USER and PASS")
            return
        try:
            result = handler(command.arg)
        except RemoteProtocolError as e:
            self.reply(e.code, str(e))
            return
        except Exception:
            self.log.failure("{verb} failed", verb=verb)
            self.reply(451, "Requested action aborted: local error in processing")
            return
        if isinstance(result, defer.Deferred):
            result.addCallback(self._sendResult)
            result.addErrback(self._sendError, verb)
        else:
            self._sendResult(result)

    def _sendResult(self, result: Any) -> None:
        if result is not None:
            code, text = result
            self.reply(code, text)

    def _sendError(self, failure: Failure, verb: str) -> None:
        if isinstance(failure.value, RemoteProtocolError):
            self.reply(failure.value.code, str(failure.value))
        else:
            self.log.failure("{verb} failed", failure, verb=verb)
            self.reply(451, "Requested action aborted: local error in processing")

    # -- idle timeout ---------------------------------------------------------------
    def _resetIdle(self) -> None:
        self._cancelIdle()
        if self.factory.idle_timeout:
            self._idle = self.factory.reactor.callLater(self.factory.idle_timeout, self._idleTimeout)

    def _cancelIdle(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None

    def _idleTimeout(self) -> None:
        self._idle = None
        if self.transfer is not None:
            self._resetIdle()           # a running transfer is not idleness
            return
        self.reply(421, f"Idle for {self.factory.idle_timeout:g} seconds; closing control connection")
        self._closing = True
        self.transport.loseConnection()

    # -- helpers ---------------------------------------------------------------------
    def _path(self, arg: str | None) -> str:
        if arg is None or arg == "":
            return self.cwd
        return posixpath.normpath(posixpath.join(self.cwd, arg)) if not arg.startswith("/") else \
            posixpath.normpath(arg)

    def _store(self) -> Any:
        if self.user is None or self.user.store is None:
            raise NotImplementedHere("This device has no media store")
        return self.user.store

    def _camera(self) -> Any:
        if self.user is None or self.user.camera is None:
            raise NotImplementedHere("This device has no camera controls")
        return self.user.camera

    def _deck(self) -> Any:
        if self.user is None or self.user.deck is None:
            raise NotImplementedHere("This device has no tape control")
        return self.user.deck

    # -- login (RFC 959) ----------------------------------------------------------------
    def cccp_USER(self, arg: str | None) -> tuple[int, str]:
        if not arg:
            raise SyntaxErrorInArguments("USER needs a user name")
        if self.user is not None:
            self._logoutUser()
        self._pending_user = arg
        if arg.lower() in ANONYMOUS_NAMES and self.factory.allow_anonymous:
            return 331, "Guest login ok, send your e-mail address as password"
        return 331, f"Password required for {arg}"

    def cccp_PASS(self, arg: str | None) -> Any:
        if self.user is not None:
            return 230, "Already logged in"
        if self._pending_user is None:
            return 503, "Login with USER first"
        name, self._pending_user = self._pending_user, None
        if name.lower() in ANONYMOUS_NAMES and self.factory.allow_anonymous:
            d = self.factory.portal.login(credentials.Anonymous(), None, ICCCPUser)
        else:
            # Checkers disagree on bytes or text (strcred's memory checker keeps text,
            # FilePasswordDB bytes): try bytes, then text.
            password = arg or ""
            portal = self.factory.portal
            d = portal.login(credentials.UsernamePassword(name.encode(), password.encode()), None, ICCCPUser)
            d.addErrback(lambda f: f.trap(cred_error.UnauthorizedLogin) and portal.login(
                credentials.UsernamePassword(cast(bytes, name), cast(bytes, password)), None, ICCCPUser))
        d.addCallbacks(self._loggedIn, self._loginFailed, callbackArgs=(name,), errbackArgs=(name,))
        return d

    def _loggedIn(self, result: tuple[Any, Any, Callable[[], None]], name: str) -> tuple[int, str]:
        _iface, avatar, logout = result
        self.user, self._logout = avatar, logout
        self.cwd = "/"
        self._failed_logins = 0
        self.log.info("{peer} logged in as {name}", peer=self.peer_host, name=avatar.name)
        if avatar.anonymous:
            return 230, "Guest login ok, access restrictions apply"
        return 230, f"User {name} logged in"

    def _loginFailed(self, failure: Failure, name: str) -> defer.Deferred[Any]:
        failure.trap(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials)
        self._failed_logins += 1
        self.log.warn("{peer}: login failed for {name} ({n} of {max})", peer=self.peer_host, name=name,
                      n=self._failed_logins, max=self.factory.max_login_attempts)
        self._login_busy = True
        d: defer.Deferred[Any] = defer.Deferred()

        def answer() -> None:
            self._login_busy = False
            if self._failed_logins >= self.factory.max_login_attempts:
                self.reply(530, "Login incorrect")
                self.reply(421, "Too many failed logins; closing control connection")
                self._closing = True
                self.transport.loseConnection()
                d.callback(None)
                return
            d.callback((530, "Login incorrect"))
            if self.transport is not None:
                self.transport.resumeProducing()
                self.reactor_call(self.dataReceived, b"")
        self.factory.reactor.callLater(self.factory.login_delay, answer)
        return d

    def reactor_call(self, f: Callable[..., Any], *a: Any) -> None:
        self.factory.reactor.callLater(0, f, *a)

    def _logoutUser(self) -> None:
        if self._logout is not None:
            self._logout()
        self.user, self._logout = None, None

    def cccp_ACCT(self, arg: str | None) -> tuple[int, str]:
        if not arg:
            raise SyntaxErrorInArguments("ACCT needs an account")
        return 202, "ACCT not needed: superfluous at this site"

    def cccp_REIN(self, arg: str | None) -> tuple[int, str]:
        # RFC 959: flush the user; a transfer in progress completes.
        self._logoutUser()
        self._pending_user = None
        self.cwd = "/"
        self.type, self.mode = TransferType("A"), TransferMode("S")
        self._closePassive()
        self._active = None
        return 220, "Service ready for new user"

    def cccp_QUIT(self, arg: str | None) -> None:
        self.reply(221, "Goodbye")
        self._closing = True
        self.transport.loseConnection()
        return None

    # -- navigation ---------------------------------------------------------------------
    def cccp_PWD(self, arg: str | None) -> tuple[int, str]:
        return 257, '"' + self.cwd.replace('"', '""') + '" is the current directory'

    def cccp_CWD(self, arg: str | None) -> tuple[int, str]:
        if not arg:
            raise SyntaxErrorInArguments("CWD needs a path")
        path = self._path(arg)
        if not self._store().isdir(path):
            raise FileUnavailable(f"{arg}: no such directory")
        self.cwd = path
        return 250, f'Directory changed to "{path}"'

    def cccp_CDUP(self, arg: str | None) -> tuple[int, str]:
        self.cwd = posixpath.dirname(self.cwd.rstrip("/")) or "/"
        return 200, f'Directory changed to "{self.cwd}"'

    def cccp_SMNT(self, arg: str | None) -> tuple[int, str]:
        if not arg:
            raise SyntaxErrorInArguments("SMNT needs a path")
        return 202, "SMNT superfluous: this device has a single file structure"

    def cccp_SYST(self, arg: str | None) -> tuple[int, str]:
        return 215, "UNIX Type: L8 (CCCP camcoder control)"

    def cccp_NOOP(self, arg: str | None) -> tuple[int, str]:
        return 200, "NOOP ok"

    def cccp_HELP(self, arg: str | None) -> tuple[int, str | list[str]]:
        if arg:
            verb = arg.strip().upper()
            verb = {"REC": "RECO"}.get(verb, verb)
            if verb in HELP_TEXT:
                return 214, f"Syntax: {HELP_TEXT[verb]}"
            raise NotImplementedHere(f"Unknown command {arg.strip()[:20]}")
        names = list(ALL_COMMANDS)
        rows = [" ".join(f"{n:<5}" for n in names[i:i + 8]).rstrip() for i in range(0, len(names), 8)]
        return 214, ["The following commands are recognized (REC is RECO):"] + rows + ["Help OK"]

    # -- status ---------------------------------------------------------------------------
    def cccp_STAT(self, arg: str | None) -> tuple[int, str | list[str]]:
        if arg:
            path = self._path(arg)
            store = self._store()
            entries = store.listdir(path)
            code = 212 if store.isdir(path) else 213
            return code, [f"Status of {path}:"] + [_list_line(e) for e in entries] + ["End of status"]
        lines = ["CCCP server status:", f"Connected from {self.peer_host}"]
        lines.append(f"Logged in as {self.user.name}" if self.user else "Not logged in")
        lines.append(f"TYPE: {self.type.describe()}; MODE: {self.mode.describe()}")
        lines.append("QoS: recorded only; transfers are best effort (the QoS format is undetermined)")
        if self.transfer is not None:
            t = self.transfer
            lines.append(f"{t.verb} {t.path} in progress: {t.transferred} bytes in "
                         f"{time.monotonic() - t.started:.1f} s")
        else:
            lines.append("No data transfer in progress")
        return 211, lines + ["End of status"]

    # -- TYPE / MODE -----------------------------------------------------------------
    def cccp_TYPE(self, arg: str | None) -> tuple[int, str]:
        t = parse_type(arg)
        if t.format == "R" and self.mode.code == "P" and self.mode.per_packet != 1:
            raise SyntaxErrorInArguments(
                f"RTP carries one RTP packet per datagram: MODE P {self.mode.per_packet} must be MODE P 1 first")
        self.type = t
        return 200, f"Type set to {t.describe()}"

    def cccp_MODE(self, arg: str | None) -> tuple[int, str]:
        m = parse_mode(arg)
        if m.code == "P" and self.type.format == "R" and m.per_packet != 1:
            raise SyntaxErrorInArguments("MODE P n with TYPE I R: n must be 1 (one RTP packet per datagram)")
        if m.code == "P" and m.per_packet > 64:
            raise ParameterNotImplemented(f"MODE P {m.per_packet}: at most 64 TS packets fit in a datagram")
        if m.code != self.mode.code:
            self._closePassive()
            self._active = None
        self.mode = m
        return 200, f"Mode set to {m.describe()}"

    # -- data ports -------------------------------------------------------------------
    def _closePassive(self) -> None:
        """Drop a PASV listener (and a connection it accepted) that no transfer used."""
        passive, self._passive = self._passive, None
        if passive is None:
            return
        if isinstance(passive, UDPEndpoint):
            passive.close()
            return
        passive.stop()
        passive.accepted.addCallback(lambda p: p.abort())
        passive.accepted.addErrback(lambda f: None)

    def cccp_PORT(self, arg: str | None) -> tuple[int, str]:
        host, port = parse_host_port(arg)
        udp = self.mode.code == "P"
        if udp and is_multicast(host):
            if not self.factory.multicast_ok:
                raise SyntaxErrorInArguments(f"Multicast group {host} refused: multicast is not enabled here")
        elif host != self.peer_host and not self.factory.allow_foreign_port:
            self.log.warn("{peer}: refused PORT to foreign address {host}:{port}", peer=self.peer_host,
                          host=host, port=port)
            raise SyntaxErrorInArguments(f"Rejected data connection to foreign address {host}:{port}")
        if port < 1024:
            raise SyntaxErrorInArguments(f"Rejected data connection to privileged port {port}")
        self._closePassive()
        self._active = (host, port)
        return 200, f"PORT command successful{' (UDP)' if udp else ''}"

    def cccp_PASV(self, arg: str | None) -> tuple[int, str]:
        self._closePassive()
        self._active = None
        local = self.transport.getHost()
        try:
            if self.mode.code == "P":
                self._passive = listen_udp(self.factory.reactor, local.host, self.peer_host,
                                           self.factory.passive_ports)
                port = self._passive.port.getHost().port
            else:
                self._passive = listen_passive(self.factory.reactor, local.host, self.peer_host,
                                               self.factory.passive_ports)
                port = self._passive.port.getHost().port
        except error.CannotListenError:
            return 425, "Can't open passive connection: no free port in the passive range"
        shown = self.factory.masquerade or local.host
        return 227, f"Entering Passive Mode ({format_host_port(shown, port)})"

    def _openData(self) -> defer.Deferred[DataProtocol]:
        """The TCP data connection of MODE S (PASV accepted or PORT connected)."""
        if isinstance(self._passive, PassiveFactory):
            passive, self._passive = self._passive, None
            d = passive.accepted
            d.addTimeout(self.factory.data_timeout, self.factory.reactor)

            def stop(result: Any) -> Any:
                passive.stop()
                return result
            return d.addBoth(stop)
        if self._active is not None:
            host, port = self._active
            self._active = None
            return connect_active(self.factory.reactor, host, port, self.factory.data_timeout,
                                  bind=self.transport.getHost().host)
        return defer.fail(RemoteProtocolError("Use PORT or PASV first", 425))

    def _openUDP(self, sending: bool) -> defer.Deferred[UDPEndpoint]:
        """The UDP data port of MODE P. Sending: to the PORT address, or to whoever sends
        the first datagram to our PASV port. Receiving: on the PASV port, or on a multicast
        group named by PORT."""
        reactor = self.factory.reactor
        if isinstance(self._passive, UDPEndpoint):
            ep, self._passive = self._passive, None
            if not sending:
                return defer.succeed(ep)
            d = ep.first_datagram
            d.addTimeout(self.factory.data_timeout, reactor)

            def learned(addr: tuple[str, int]) -> UDPEndpoint:
                ep.peer = addr
                return ep

            def never(f: Failure) -> Failure:
                ep.close()
                return f
            return d.addCallbacks(learned, never)
        if self._active is not None:
            host, port = self._active
            self._active = None
            if is_multicast(host):
                if sending:
                    return defer.succeed(multicast_sender(
                        reactor, host, port, ttl=self.factory.multicast_ttl,
                        interface=self.factory.multicast_interface))
                return defer.succeed(multicast_receiver(reactor, host, port,
                                                        self.factory.multicast_interface or "0.0.0.0"))
            if not sending:
                return defer.fail(ParameterNotImplemented(
                    "STOR in MODE P needs PASV (or PORT with a multicast group to record)"))
            ep = listen_udp(reactor, self.transport.getHost().host)
            ep.peer = (host, port)
            return defer.succeed(ep)
        return defer.fail(RemoteProtocolError("Use PORT or PASV first", 425))

    def _startTransfer(self, verb: str, path: str, kind: str,
                       run: Callable[[_Transfer], defer.Deferred[Any]], udp: bool = False,
                       sending: bool = True, size: int | None = None) -> defer.Deferred[Any]:
        """Open the data port, answer 150, run the transfer; fires with the final reply.

        With *size* the 150 reply ends in ``(N bytes)``, as FTP servers say it and as
        curl and our client read it for progress.
        """
        if self.transfer is not None:
            raise RemoteProtocolError(f"Bad sequence: {self.transfer.verb} is still in progress", 503)

        def failed(f: Failure) -> Any:
            if f.check(RemoteProtocolError):
                return f
            return 425, f"Can't open data connection: {f.getErrorMessage()}"

        def opened(data: Any) -> defer.Deferred[Any]:
            t = self.transfer = _Transfer(verb, path, data, time.monotonic(), udp=udp)
            where = f" to {data.peer[0]}:{data.peer[1]} (UDP)" if udp and data.peer else (" (UDP)" if udp else "")
            count = f" ({size} bytes)" if size is not None else ""
            self.reply(150, f"Opening {kind} mode data connection for {path}{where}{count}")

            def broken(f: Failure) -> Failure:
                self._finish(t, None)
                t.close_data(abort=True)
                return f
            return run(t).addErrback(broken)

        d = self._openUDP(sending) if udp else self._openData()
        return d.addCallbacks(opened, failed)

    # -- listings --------------------------------------------------------------------------
    def cccp_LIST(self, arg: str | None) -> defer.Deferred[Any]:
        return self._listing("LIST", arg, _list_line)

    def cccp_NLST(self, arg: str | None) -> defer.Deferred[Any]:
        return self._listing("NLST", arg, lambda e: e.name)

    def _listing(self, verb: str, arg: str | None, fmt: Callable[[Entry], str]) -> defer.Deferred[Any]:
        if self.mode.code == "P":
            raise ParameterNotImplemented(f"{verb} needs MODE S: listings are not sent over UDP")
        if arg and arg.startswith("-"):          # "LIST -la" from ls-style clients
            arg = arg.split(" ", 1)[1] if " " in arg else None
        path = self._path(arg)
        store = self._store()
        entries = store.listdir(path)
        text = "".join(fmt(e) + "\r\n" for e in entries).encode()

        def run(t: _Transfer) -> defer.Deferred[Any]:
            t.counter = CountingConsumer(t.data.transport)
            t.counter.write(text)
            t.data.close()
            return t.data.closed_d.addCallback(self._transferEnded, t)
        return self._startTransfer(verb, path, "ASCII", run)

    # -- RETR / STOR ----------------------------------------------------------------------
    def _mediaSpec(self, verb: str) -> tuple[str, int]:
        """(framing, RTP payload type) for the current TYPE and MODE; 504 where impossible."""
        if self.type.code == "A":
            raise ParameterNotImplemented(f"{verb} needs TYPE I: TYPE A is for LIST and NLST only")
        if self.type.format == "R":
            if self.mode.code == "P" and self.mode.per_packet != 1:
                raise ParameterNotImplemented("RTP over UDP carries one RTP packet per datagram: use MODE P 1")
            return "rtp", self.type.payload_types[0]
        if self.type.format == "M":
            return "ts", RTP_MP2T
        return ("ts" if self.mode.code == "P" else "raw"), RTP_MP2T

    def _openSource(self, path: str, payload_type: int) -> Any:
        store = self._store()
        if payload_type != RTP_MP2T and self.type.format == "R":
            for pt in self.type.payload_types:
                try:
                    return store.open(path, payload_type=pt), pt
                except (ParameterNotImplemented, TypeError):
                    continue
            raise ParameterNotImplemented(
                f"{path} cannot be sent as RTP payload types {','.join(map(str, self.type.payload_types))}")
        try:
            return store.open(path, payload_type=payload_type), payload_type
        except TypeError:                      # a plain IMediaStore without payload types
            return store.open(path), payload_type

    def cccp_RETR(self, arg: str | None) -> defer.Deferred[Any]:
        if not arg:
            raise SyntaxErrorInArguments("RETR needs a path")
        framing, pt = self._mediaSpec("RETR")
        path = self._path(arg)
        source, pt = self._openSource(path, pt)
        udp = self.mode.code == "P"
        live = getattr(source, "live", False) or getattr(source, "length", 0) is None
        raw = framing == "raw" and not live

        def run(t: _Transfer) -> defer.Deferred[Any]:
            t.source = source
            if raw:
                t.counter = CountingConsumer(t.data.transport)
                done = defer.maybeDeferred(source.startProducing, t.counter)
            else:
                output = t.data if udp else t.data.transport
                sender = t.sender = MediaSender(
                    self.factory.reactor, output, udp=udp, framing="rtp" if framing == "rtp" else "ts",
                    per_datagram=self.mode.per_packet or 7, paced=not getattr(source, "live", False),
                    rtp_input=getattr(source, "rtp_input", False))
                if not udp:
                    t.data.transport.registerProducer(sender, True)
                started = defer.maybeDeferred(source.startProducing, sender)
                started.addBoth(sender.sourceDone)
                sender._schedule()
                done = sender.done

            def sent(result: Any) -> Any:
                if isinstance(result, Failure) and not t.aborted and not result.check(StreamStopped):
                    self.log.failure("RETR {path} failed", result, path=path)
                    t.failure = result
                if udp:
                    t.close_data()
                    return None
                if t.sender is not None:
                    t.data.transport.unregisterProducer()
                t.data.close()
                return t.data.closed_d
            done.addBoth(sent)
            return done.addCallback(self._transferEnded, t)

        kind = "BINARY" if raw else ("RTP" if framing == "rtp" else "MPEG2-TS")
        size = source.length if raw and not udp else None
        return self._startTransfer("RETR", path, kind, run, udp=udp, sending=True, size=size)

    def cccp_STOR(self, arg: str | None) -> defer.Deferred[Any]:
        if not arg:
            raise SyntaxErrorInArguments("STOR needs a path")
        framing, _pt = self._mediaSpec("STOR")
        if not self.user or not self.user.may_store:
            raise RemoteProtocolError("Permission denied: this user may not store", 550)
        path = self._path(arg)
        recording = self._store().receive(path)
        udp = self.mode.code == "P"

        def run(t: _Transfer) -> defer.Deferred[Any]:
            t.recording = recording
            if framing == "raw":
                t.data.receiveInto(recording)
            else:
                t.receiver = MediaReceiver(recording, framing=framing, udp=udp,
                                           payload_types=self.type.payload_types, strict=True)
                if udp:
                    t.data.on_datagram = t.receiver.datagram
                    t.finished = defer.Deferred()
                    return t.finished        # a UDP recording ends with ABOR
                t.data.receiveInto(t.receiver)
            return t.data.closed_d.addCallback(self._storeEnded, t)

        def never_started(f: Failure) -> Failure:
            recording.abort()
            return f
        kind = "BINARY" if framing == "raw" else ("RTP" if framing == "rtp" else "MPEG2-TS")
        return self._startTransfer("STOR", path, kind, run, udp=udp, sending=False).addErrback(never_started)

    def _storeEnded(self, reason: BaseException, t: _Transfer) -> tuple[int, str] | defer.Deferred[tuple[int, str] | None] | None:
        clean = isinstance(reason, error.ConnectionDone) and t.data.failure is None
        if t.aborted or not clean:
            t.recording.abort()
            return self._transferEnded(reason, t)
        return self._commit(t)

    def _commit(self, t: _Transfer) -> defer.Deferred[tuple[int, str] | None]:
        """Land the recording (a store may take its time, e.g. an upload to a camera).

        In a media TYPE the data must have been whole TS (or RTP) packets, at least
        one: otherwise the recording is thrown away with 451 and a file of that name
        stays as it was. TYPE I stores any bytes, none included, as FTP does.
        """
        if t.receiver is not None:
            try:
                t.receiver.finish()
            except Exception as e:
                t.recording.abort()
                self.log.info("STOR {path} refused: {e}", path=t.path, e=e)
                return defer.succeed(self._finish(t, (451, f"Requested action aborted: {e}")))

        def failed(f: Failure) -> tuple[int, str] | None:
            t.recording.abort()
            self.log.failure("STOR {path}: commit failed", f, path=t.path)
            return self._finish(t, (451, f"Requested action aborted: {f.getErrorMessage()}"))

        def landed(_: Any) -> tuple[int, str] | None:
            extra = ""
            if t.receiver is not None and (t.receiver.depacketizer.lost or t.receiver.bad_datagrams):
                extra = (f" ({t.receiver.depacketizer.lost} RTP packets lost, "
                         f"{t.receiver.bad_datagrams} bad datagrams dropped)")
            return self._finish(t, (226, f"Transfer complete: {t.transferred} bytes stored in {t.path}{extra}"))
        return defer.maybeDeferred(t.recording.commit).addCallbacks(landed, failed)

    def _transferEnded(self, reason: Any, t: _Transfer) -> tuple[int, str] | None:
        if t.aborted:
            return self._finish(t, None)          # ABOR answers for it
        failure = t.failure
        data_failure = None if t.udp else t.data.failure
        if data_failure is not None:
            return self._finish(t, (451, f"Requested action aborted: {data_failure.getErrorMessage()}"))
        if failure is not None:
            return self._finish(t, (451, f"Requested action aborted: {failure.getErrorMessage()}"))
        if isinstance(reason, BaseException) and not isinstance(reason, error.ConnectionDone):
            return self._finish(t, (426, f"Connection closed; transfer aborted: {reason}"))
        if t.verb == "RETR" and t.sender is None and t.source is not None and t.source.length is not None \
                and t.transferred != t.source.length:
            return self._finish(t, (426, f"Transfer aborted after {t.transferred} of {t.source.length} bytes"))
        return self._finish(t, (226, f"Transfer complete ({t.transferred} bytes)"))

    def _finish(self, t: _Transfer, result: tuple[int, str] | None) -> tuple[int, str] | None:
        if self.transfer is t:
            self.transfer = None
        self._resetIdle()
        return result

    def cccp_ABOR(self, arg: str | None) -> Any:
        t = self.transfer
        if t is None:
            self._closePassive()
            self._active = None
            return 225, "No transfer to abort"
        if t.udp and t.verb == "STOR":
            # A UDP recording runs until ABOR: that is its normal end, so it is kept.
            t.data.close()
            finished = t.finished

            def answer(reply: Any) -> tuple[int, str]:
                if finished is not None and not finished.called:
                    finished.callback(reply)          # the STOR's own 226 goes first
                return 226, "ABOR command successful"
            return self._commit(t).addCallback(answer)
        self._abortTransfer()
        self.reply(426, f"Connection closed; {t.verb} {t.path} aborted after {t.transferred} bytes")
        return 226, "ABOR command successful"

    def _abortTransfer(self) -> None:
        t = self.transfer
        if t is None:
            return
        t.aborted = True
        if t.sender is not None:
            t.sender.stop()
        elif t.source is not None:
            t.source.stopProducing()
        if t.recording is not None:
            t.recording.abort()
        finished = t.finished
        if finished is not None and not finished.called:
            finished.callback(None)
        t.close_data(abort=True)
        self.transfer = None

    # -- tape (draft section 4) ----------------------------------------------------------
    def _tapeArgs(self, verb: str, arg: str | None) -> tuple[Decimal | None, Decimal | None]:
        words = arg.split(" ") if arg else []
        if len(words) > 2 or any(w == "" for w in words):
            raise SyntaxErrorInArguments(f"{verb} takes [stop-position [speed]] separated by single spaces")
        stop = speed = None
        deck = self._deck()
        if words:
            n = parse_number(words[0], allow_step=False)
            stop = n.apply(deck.state()[1], Decimal(0))
        if len(words) == 2:
            speed = parse_number(words[1], allow_step=False).value
        return stop, speed

    def _tape(self, verb: str, arg: str | None, method: str) -> Any:
        deck = self._deck()
        if verb not in deck.commands():
            raise NotImplementedHere(f"{verb} is not supported by this tape device")
        stop, speed = self._tapeArgs(verb, arg)
        d = defer.maybeDeferred(getattr(deck, method), stop, speed)
        return d.addCallback(lambda used: self._tapeReply(verb, speed, used))

    def _tapeReply(self, verb: str, asked: Decimal | None = None, used: Any = None) -> tuple[int, str]:
        """200 with the state reached, and the speed when the tape moves: the draft leaves
        precision and range to the device, so a speed it clamped is named as such."""
        op, pos = self._deck().state()
        text = f"Command okay: {verb}; now {op} at {format_number(pos)}"
        if isinstance(used, Decimal) and op != "PAUS":
            text += f", speed {format_number(used)}"
            if asked is not None and asked != used:
                text += f" (clamped from {format_number(asked)})"
        return 200, text

    def cccp_PLAY(self, arg: str | None) -> Any:
        return self._tape("PLAY", arg, "play")

    def cccp_RECO(self, arg: str | None) -> Any:
        return self._tape("RECO", arg, "record")

    def cccp_FF(self, arg: str | None) -> Any:
        return self._tape("FF", arg, "fastForward")

    def cccp_PAUS(self, arg: str | None) -> Any:
        if arg:
            raise SyntaxErrorInArguments("PAUS takes no argument")
        deck = self._deck()
        if "PAUS" not in deck.commands():
            raise NotImplementedHere("PAUS is not supported by this tape device")
        return defer.maybeDeferred(deck.pause).addCallback(lambda _: self._tapeReply("PAUS"))

    def cccp_TSTA(self, arg: str | None) -> tuple[int, list[str]]:
        # "TAPE STATUS command is always supported", also by devices without a tape.
        deck = self.user.deck if self.user is not None else None
        if deck is None:
            status = TapeStatus("PAUS", Decimal(0))
        else:
            op, pos = deck.state()
            status = TapeStatus(op, pos, dict(deck.commands()))
        return 200, tsta_lines(status)

    # -- camera (draft section 5) -----------------------------------------------------------
    def _cameraCommand(self, verb: str, arg: str | None) -> Any:
        camera = self._camera()
        if verb not in camera.controls():
            raise NotImplementedHere(f"{verb} is not supported by this camera")
        if arg is None or arg == "" or " " in arg:
            raise SyntaxErrorInArguments(f"{verb} needs one number: [+|-]digits[.digits], + or -")
        number = parse_number(arg)
        d = defer.maybeDeferred(camera.control, verb, number)
        return d.addCallback(lambda value: (200, f"Command okay: {verb} {format_number(value)}"))

    def cccp_CSTA(self, arg: str | None) -> Any:
        camera = self.user.camera if self.user is not None else None
        if camera is None:
            return 200, csta_lines(CameraStatus("OK"))
        names = list(camera.controls())
        ds = [defer.maybeDeferred(camera.status, n) for n in names]
        d = defer.gatherResults(ds, consumeErrors=True)

        def first_error(f: Failure) -> Failure:
            f.trap(defer.FirstError)
            return cast(defer.FirstError, f.value).subFailure   # e.g. a 421 from a camera that went away
        d.addErrback(first_error)
        return d.addCallback(lambda values: (200, csta_lines(CameraStatus("OK", dict(zip(names, values, strict=True))))))


def _make_camera_handler(verb: str) -> Callable[[CCCPServerProtocol, str | None], Any]:
    def handler(self: CCCPServerProtocol, arg: str | None) -> Any:
        return self._cameraCommand(verb, arg)
    handler.__name__ = f"cccp_{verb}"
    handler.__doc__ = f"{verb} (draft section 5)."
    return handler


for _verb in CAMERA_CONTROLS:
    setattr(CCCPServerProtocol, f"cccp_{_verb}", _make_camera_handler(_verb))


def _list_line(e: Entry) -> str:
    perms = ("d" if e.is_dir else "-") + "".join(
        ("r" if e.mode & (4 << s) else "-") + ("w" if e.mode & (2 << s) else "-") + ("x" if e.mode & (1 << s) else "-")
        for s in (6, 3, 0))
    t = time.localtime(e.mtime)
    when = time.strftime("%b %d %H:%M", t) if time.time() - e.mtime < 180 * 86400 else time.strftime("%b %d  %Y", t)
    return f"{perms} 1 cccp cccp {e.size:>12} {when} {e.name}"


class CCCPFactory(protocol.ServerFactory):
    """Serves CCCP on one or more ports.

    :param portal: a ``twisted.cred`` portal whose realm returns :class:`~cccp.realm.ICCCPUser`.
    :param allow_anonymous: accept USER anonymous/ftp (the portal needs an anonymous checker).
    :param passive_ports: ``(low, high)`` range for PASV, or None for any free port.
    :param masquerade: the address to announce in 227 replies (behind NAT).
    :param max_connections: control connections at once; beyond, 421.
    :param max_per_address: control connections from one address at once.
    :param idle_timeout: seconds without a command before 421 (0: never).
    :param max_login_attempts: failed PASS before the connection is closed.
    :param multicast_ok: allow PORT to a multicast group in MODE P (TTL *multicast_ttl*,
        default 1: the local link only; outgoing *multicast_interface*).
    :param login_delay: seconds before a failed login is answered.
    :param reactor: ``IReactorTCP`` + ``IReactorTime`` (a ``task.Clock`` suffices for timers in tests).
    """

    # Twisted types Factory.protocol through a structural protocol whose ``factory`` is a
    # plain Factory; ours names its own factory class, which mypy cannot reconcile.
    protocol = CCCPServerProtocol  # type: ignore[assignment]
    log = Logger()

    def __init__(self, portal: Any, *, allow_anonymous: bool = True,
                 passive_ports: tuple[int, int] | None = None, masquerade: str | None = None,
                 max_connections: int = 64, max_per_address: int = 8, idle_timeout: float = 300.0,
                 max_login_attempts: int = 3, login_delay: float = 1.0, data_timeout: float = 30.0,
                 allow_foreign_port: bool = False, banner: str = "CCCP server ready",
                 multicast_ok: bool = False, multicast_ttl: int = 1, multicast_interface: str | None = None,
                 reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.portal = portal
        self.allow_anonymous = allow_anonymous
        self.passive_ports = passive_ports
        self.masquerade = masquerade
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.idle_timeout = idle_timeout
        self.max_login_attempts = max_login_attempts
        self.login_delay = login_delay
        self.data_timeout = data_timeout
        self.allow_foreign_port = allow_foreign_port
        self.multicast_ok = multicast_ok
        self.multicast_ttl = multicast_ttl
        self.multicast_interface = multicast_interface
        self.banner = banner
        self.reactor = reactor
        self.connections: set[CCCPServerProtocol] = set()
        self._per_address: dict[str, int] = {}

    def admit(self, proto: CCCPServerProtocol) -> str | None:
        """None to serve *proto*, or the text of the 421 that refuses it."""
        host = proto.peer_host or ""
        if len(self.connections) >= self.max_connections:
            return f"Too many connections ({self.max_connections}); try again later"
        if self._per_address.get(host, 0) >= self.max_per_address:
            return f"Too many connections from {host} ({self.max_per_address}); try again later"
        self.connections.add(proto)
        self._per_address[host] = self._per_address.get(host, 0) + 1
        return None

    def release(self, proto: CCCPServerProtocol) -> None:
        if proto in self.connections:
            self.connections.discard(proto)
            host = proto.peer_host or ""
            self._per_address[host] -= 1
            if not self._per_address[host]:
                del self._per_address[host]
