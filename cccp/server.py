"""The CCCP server: an FTP-derived control channel that reads and answers
commands at all times, also while data flows (draft section 1: "server and
client must monitor the control and data connections simultaneously").

:class:`CCCPFactory` builds a :class:`CCCPServerProtocol` per control connection.
The protocol is thin: command lines come out of a bounded
:class:`~cccp.wire.session.LineBuffer`, :class:`~cccp.wire.session.Session`
decides what they may do (login phase, working directory, TYPE and MODE, the
transfer plan), :mod:`twisted.cred` logs users in, and the devices of the avatar
(:class:`~cccp.realm.ICCCPUser`: a media store, a camera, a tape deck) answer.
Data ports and transfers are :class:`~cccp.transfers.Transfers`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

from twisted.cred import credentials
from twisted.cred import error as cred_error
from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .devices.store import FileMediaSource
from .devices.tape import ClipTapeSource, IndexCache
from .events import EVENTS_PATH, EventHub, EventsSource
from .interfaces import ICamera, IMediaSource, IMediaStore, ITapeDeck, ITapeMedia
from .realm import ICCCPUser
from .transfers import Transfers
from .wire.commands import (
    CAMERA_CONTROLS,
    DEFAULT_PORT,
    HELP_TEXT,
    MAX_LINE,
    CameraStatus,
    TapeStatus,
    csta_lines,
    escape_text,
    format_number,
    format_reply,
    help_lines,
    list_line,
    parse_command,
    parse_host_port,
    parse_number,
    tsta_lines,
)
from .wire.errors import (
    FileUnavailable,
    NotImplementedHere,
    ParameterNotImplemented,
    RemoteProtocolError,
    SyntaxErrorInArguments,
)
from .wire.logins import LoginGuard
from .wire.media import RTP_MP2T
from .wire.session import TOO_LONG, Framing, LineBuffer, LoginPhase, Session, TransferPlan

__all__ = ["DEFAULT_PORT", "HELP_TEXT", "CCCPFactory", "CCCPServerProtocol"]


class CCCPServerProtocol(protocol.Protocol):
    """One CCCP control connection."""

    # Set by makeConnection: a tcp.Connection (ITCPTransport, IConsumer, IPushProducer).
    transport: Any

    log = Logger()
    factory: CCCPFactory

    def __init__(self) -> None:
        self.lines = LineBuffer(MAX_LINE)
        #: Why commands are not read now ("login": a password is being checked; "output":
        #: the peer does not read our replies).
        self._holds: set[str] = set()
        self._stall: Any = None
        self._login_timer: Any = None
        #: The command being answered (metrics): "-" before any, "other" for a line that is none.
        self._verb = "-"
        self.authenticated = False
        self.session: Session = Session()
        self.transfers = Transfers(self)
        self.user: ICCCPUser | None = None
        self._logout: Callable[[], None] | None = None
        self._failed_logins = 0
        self._idle: Any = None
        self._closing = False
        self.peer_host: str | None = None

    # -- connection -------------------------------------------------------------
    def connectionMade(self) -> None:
        sock = getattr(self.transport, "socket", None)
        if sock is not None:
            # Clients send ABOR as TCP urgent data (ftplib) after TELNET IP/DM: keep it inline.
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
            except OSError:
                pass
        self.session = Session(self.factory.allow_anonymous)
        self.peer_host = getattr(self.transport.getPeer(), "host", None)
        refusal = self.factory.admit(self)
        if refusal:
            self.factory.metrics.refused.inc()
            self.reply(421, refusal)
            self.transport.loseConnection()
            self._closing = True
            return
        self.factory.metrics.connections.inc()
        self.transport.registerProducer(_ReplyWatch(self), True)
        self.reply(220, self.factory.banner)
        self._resetIdle()
        if self.factory.login_timeout:
            self._login_timer = self.factory.reactor.callLater(self.factory.login_timeout, self._loginTimedOut)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.release(self)
        self._cancelIdle()
        for timer in (self._stall, self._login_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self.transfers.close()
        self._logoutUser()

    def _loginTimedOut(self) -> None:
        """Not logged in within login_timeout of connecting (NOOP does not count)."""
        self._login_timer = None
        if not self.authenticated and not self._closing:
            self.reply(421, f"Not logged in within {self.factory.login_timeout:g} seconds; closing control connection")
            self.log.info("{peer}: not logged in within {t} s; closed", peer=self.peer_host,
                          t=self.factory.login_timeout)
            self.close()

    # -- reading: held while a password is checked, or while the peer does not read ---
    def hold(self, why: str) -> None:
        if not self._holds and self.transport is not None:
            self.transport.pauseProducing()
        self._holds.add(why)

    def unhold(self, why: str) -> None:
        if why not in self._holds:
            return
        self._holds.discard(why)
        if not self._holds and not self._closing and self.transport is not None:
            self.transport.resumeProducing()
            if self.lines.pending:
                self.factory.reactor.callLater(0, self._readLines)

    def _outputStalled(self) -> None:
        self._stall = None
        if not self._closing:
            self.log.warn("{peer} has not read its replies for {t} s; closing", peer=self.peer_host,
                          t=self.factory.stall_timeout)
            self._closing = True
            self.transport.abortConnection()

    def reply(self, code: int, text: str | list[str], verb: str | None = None) -> None:
        """Send a reply (to *verb*, or to the last command read)."""
        if (self.transport is not None and not self._closing) or code in (221, 421):
            self.transport.write(format_reply(code, text))
            self.factory.metrics.replies.labels(verb or self._verb, str(code)).inc()

    def close(self) -> None:
        """Close the control connection after what is already written."""
        self._closing = True
        self.transport.loseConnection()

    def transferEnded(self) -> None:
        """A transfer has ended: idleness counts from now."""
        self._resetIdle()

    # -- lines ----------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        self.lines.feed(data)
        self._readLines()

    def _readLines(self) -> None:
        while not self._closing and not self._checking and not self._holds:
            line = self.lines.next_line()
            if line is None:
                return
            if line is TOO_LONG:
                self.reply(500, f"Command line too long (more than {MAX_LINE} bytes)")
                continue
            self.lineReceived(cast(bytes, line))

    @property
    def _checking(self) -> bool:
        # A password is with the checker (a failed one is answered after a delay): the
        # commands after it wait their turn.
        return self.session.login is LoginPhase.CHECKING

    def lineReceived(self, line: bytes) -> None:
        self._resetIdle()
        self._verb = "other"
        try:
            command = parse_command(line)
            if hasattr(self, f"cccp_{command.verb}"):
                self._verb = command.verb      # (metrics: a made-up verb is no label of its own)
            self.session.check(command)
            handler = getattr(self, f"cccp_{command.verb}")
            result = handler(command.arg)
        except RemoteProtocolError as e:
            self.reply(e.code, str(e))
            return
        except Exception:
            self.log.failure("{line!r} failed", line=line[:40])
            self.reply(451, "Requested action aborted: local error in processing")
            return
        if isinstance(result, defer.Deferred):
            result.addCallback(self._sendResult, command.verb)
            result.addErrback(self._sendError, command.verb)
        else:
            self._sendResult(result, command.verb)

    def _sendResult(self, result: Any, verb: str | None = None) -> None:
        if result is not None:
            code, text = result
            self.reply(code, text, verb)

    def _sendError(self, failure: Failure, verb: str) -> None:
        if isinstance(failure.value, RemoteProtocolError):
            self.reply(failure.value.code, str(failure.value), verb)
        else:
            self.log.failure("{verb} failed", failure, verb=verb)
            self.reply(451, "Requested action aborted: local error in processing", verb)

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
        if self.transfers.current is not None:
            self._resetIdle()           # a running transfer is not idleness
            return
        self.reply(421, f"Idle for {self.factory.idle_timeout:g} seconds; closing control connection")
        self.close()

    # -- devices ----------------------------------------------------------------------
    def _store(self) -> IMediaStore:
        if self.user is None or self.user.store is None:
            raise NotImplementedHere("This device has no media store")
        return cast(IMediaStore, self.user.store)

    def _camera(self) -> ICamera:
        if self.user is None or self.user.camera is None:
            raise NotImplementedHere("This device has no camera controls")
        return cast(ICamera, self.user.camera)

    def _deck(self) -> ITapeDeck:
        if self.user is None or self.user.deck is None:
            raise NotImplementedHere("This device has no tape control")
        return cast(ITapeDeck, self.user.deck)

    # -- login (RFC 959) ----------------------------------------------------------------
    def cccp_USER(self, arg: str | None) -> tuple[int, str]:
        if arg and self.user is not None:
            self._logoutUser()
        return self.session.user(arg)

    def cccp_PASS(self, arg: str | None) -> Any:
        name = self.session.begin_password()
        self.hold("login")                       # nothing more is read until the answer
        anonymous = self.session.is_anonymous(name)
        now = self.factory.reactor.seconds()
        verdict = self.factory.logins.check(name, self.peer_host or "", now) if not anonymous else None
        if verdict is not None and verdict.locked:
            # Locked out: refused whatever the password, so guessing now learns nothing.
            self.log.warn("{peer}: login for {name} refused: {what} is locked out for {s:.0f} more s",
                          peer=self.peer_host, name=name, what=verdict.locked, s=verdict.seconds)
            return self._refuseLogin(
                f"Login refused: {verdict.locked} is locked out after too many failed logins; "
                f"try again in {verdict.seconds:.0f} s", self.factory.login_delay)
        if anonymous:
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
        self.session.login_succeeded()
        self._failed_logins = 0
        if not avatar.anonymous:
            self.factory.logins.succeeded(name)
        self.factory.authenticated(self)
        self.log.info("{peer} logged in as {name}", peer=self.peer_host, name=avatar.name)
        self.unhold("login")
        if avatar.anonymous:
            return 230, "Guest login ok, access restrictions apply"
        return 230, f"User {name} logged in"

    def _loginFailed(self, failure: Failure, name: str) -> defer.Deferred[Any]:
        failure.trap(cred_error.UnauthorizedLogin, cred_error.UnhandledCredentials)
        self._failed_logins += 1
        self.factory.metrics.logins_failed.inc()
        delay, verdict = self.factory.logins.failed(name, self.peer_host or "", self.factory.reactor.seconds())
        self.log.warn("{peer}: login failed for {name} ({n} of {max} on this connection); answered in {d:g} s",
                      peer=self.peer_host, name=name, n=self._failed_logins, max=self.factory.max_login_attempts,
                      d=delay)
        if verdict.locked:
            self.factory.metrics.lockouts.inc()
            self.log.warn("{what} locked out for {s:.0f} s after too many failed logins (last from {peer})",
                          what=verdict.locked, s=verdict.seconds, peer=self.peer_host)
        return self._refuseLogin("Login incorrect", delay)

    def _refuseLogin(self, text: str, delay: float) -> defer.Deferred[Any]:
        """Answer 530 after *delay* (nothing is read meanwhile); the connection's last
        allowed failure also closes it."""
        d: defer.Deferred[Any] = defer.Deferred()

        def answer() -> None:
            self.session.login_failed()
            if self._failed_logins >= self.factory.max_login_attempts:
                self.reply(530, text)
                self.reply(421, "Too many failed logins; closing control connection")
                self.close()
                d.callback(None)
                return
            d.callback((530, text))
            self.unhold("login")
        self.factory.reactor.callLater(delay, answer)
        return d

    def _logoutUser(self) -> None:
        if self._logout is not None:
            self._logout()
        self.user, self._logout = None, None
        self.factory.unauthenticated(self)

    def cccp_ACCT(self, arg: str | None) -> tuple[int, str]:
        if not arg:
            raise SyntaxErrorInArguments("ACCT needs an account")
        return 202, "ACCT not needed: superfluous at this site"

    def cccp_REIN(self, arg: str | None) -> tuple[int, str]:
        # RFC 959: flush the user; a transfer in progress completes.
        self._logoutUser()
        self.session.reinitialize()
        self.transfers.forgetPorts()
        return 220, "Service ready for new user"

    def cccp_QUIT(self, arg: str | None) -> None:
        self.reply(221, "Goodbye")
        self.close()
        return None

    # -- navigation ---------------------------------------------------------------------
    def cccp_PWD(self, arg: str | None) -> tuple[int, str]:
        return 257, '"' + self.session.cwd.replace('"', '""') + '" is the current directory'

    def cccp_CWD(self, arg: str | None) -> tuple[int, str]:
        if not arg:
            raise SyntaxErrorInArguments("CWD needs a path")
        path = self.session.resolve(arg)
        if not self._store().isdir(path):
            raise FileUnavailable(f"{arg}: no such directory")
        self.session.change_directory(path)
        return 250, f'Directory changed to "{path}"'

    def cccp_CDUP(self, arg: str | None) -> tuple[int, str]:
        return 200, f'Directory changed to "{self.session.up()}"'

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
        return 214, help_lines()

    # -- status ---------------------------------------------------------------------------
    def cccp_STAT(self, arg: str | None) -> tuple[int, str | list[str]]:
        if arg:
            path = self.session.resolve(arg)
            store = self._store()
            entries = store.listdir(path)
            code = 212 if store.isdir(path) else 213
            return code, [f"Status of {path}:"] + [list_line(e) for e in entries] + ["End of status"]
        s = self.session
        lines = ["CCCP server status:", f"Connected from {self.peer_host}"]
        lines.append(f"Logged in as {self.user.name}" if self.user else "Not logged in")
        lines.append(f"TYPE: {s.type.describe()}; MODE: {s.mode.describe()}")
        lines.append("QoS: recorded only; transfers are best effort (the QoS format is undetermined)")
        lines.append(self.transfers.status())
        return 211, lines + ["End of status"]

    # -- TYPE / MODE and data ports ----------------------------------------------------------
    def cccp_TYPE(self, arg: str | None) -> tuple[int, str]:
        return 200, f"Type set to {self.session.set_type(arg).describe()}"

    def cccp_MODE(self, arg: str | None) -> tuple[int, str]:
        if self.session.set_mode(arg):
            self.transfers.forgetPorts()
        return 200, f"Mode set to {self.session.mode.describe()}"

    def cccp_PORT(self, arg: str | None) -> tuple[int, str]:
        host, port = parse_host_port(arg)
        return self.transfers.port(host, port, self.session.udp)

    def cccp_PASV(self, arg: str | None) -> tuple[int, str]:
        return self.transfers.passive(self.session.udp)

    # -- transfers ---------------------------------------------------------------------------
    def cccp_LIST(self, arg: str | None) -> defer.Deferred[Any]:
        return self._listing("LIST", arg, list_line)

    def cccp_NLST(self, arg: str | None) -> defer.Deferred[Any]:
        return self._listing("NLST", arg, lambda e: escape_text(e.name))

    def _listing(self, verb: str, arg: str | None, fmt: Callable[[Any], str]) -> defer.Deferred[Any]:
        self.session.listing(verb)
        if arg and arg.startswith("-"):          # "LIST -la" from ls-style clients
            arg = arg.split(" ", 1)[1] if " " in arg else None
        path = self.session.resolve(arg)
        entries = self._store().listdir(path)
        return self.transfers.listing(verb, path, [fmt(e) for e in entries])

    def _openSource(self, path: str, plan: TransferPlan) -> IMediaSource:
        """The store's source for *path* in the first payload type it can send."""
        store = self._store()
        if plan.payload_type == RTP_MP2T:
            return cast(IMediaSource, store.open(path, payload_type=RTP_MP2T))
        for pt in plan.payload_types:
            try:
                return cast(IMediaSource, store.open(path, payload_type=pt))
            except ParameterNotImplemented:
                continue
        raise ParameterNotImplemented(
            f"{path} cannot be sent as RTP payload types {','.join(map(str, plan.payload_types))}")

    def cccp_RETR(self, arg: str | None) -> defer.Deferred[Any]:
        if not arg:
            raise SyntaxErrorInArguments("RETR needs a path")
        path = self.session.resolve(arg)
        plan = self.session.plan("RETR", text=path == EVENTS_PATH)
        if path == EVENTS_PATH:
            if plan.framing is not Framing.RAW:
                raise ParameterNotImplemented("the status feed is text: RETR /events in TYPE A (or TYPE I) "
                                              "over TCP (MODE S)")
            user = self.user
            events = EventsSource(self.factory.events, user.deck if user else None, user.camera if user else None)
            return self.transfers.retrieve(path, events, plan)
        source = self._openSource(path, plan)
        if plan.framing is not Framing.RAW and isinstance(source, FileMediaSource) and not source.offset:
            # a stored clip sent as media is a tape its session's tape commands move
            indexes = getattr(self._store(), "indexes", None) or self.factory.indexes
            source = ClipTapeSource(self.factory.reactor, source.path, indexes)
        return self.transfers.retrieve(path, source, plan)

    def cccp_STOR(self, arg: str | None) -> defer.Deferred[Any]:
        if not arg:
            raise SyntaxErrorInArguments("STOR needs a path")
        plan = self.session.plan("STOR")
        if not self.user or not self.user.may_store:
            raise RemoteProtocolError("Permission denied: this user may not store", 550)
        path = self.session.resolve(arg)
        return self.transfers.store(path, self._store().receive(path), plan)

    def cccp_ABOR(self, arg: str | None) -> Any:
        return self.transfers.abort()

    # -- tape (draft section 4) ----------------------------------------------------------
    def _tapeMedia(self) -> Any:
        """The tape this session is RETRieving (``/tape`` or a stored clip), if any."""
        t = self.transfers.current
        source = getattr(t, "source", None) if t is not None else None
        return source if ITapeMedia.providedBy(source) else None

    def _tapeTarget(self) -> defer.Deferred[tuple[ITapeDeck, Any]]:
        """The deck the session's tape commands move, and the medium it is sending: the
        clip being RETRieved as a tape, else the user's tape deck."""
        media = self._tapeMedia()
        if media is not None:
            d = defer.maybeDeferred(media.tapeDeck)
            if not d.called:
                # (a clip being indexed: what comes next waits, so replies keep their order)
                self.hold("tape")

                def resume(result: Any) -> Any:
                    self.unhold("tape")
                    return result
                d.addBoth(resume)
            return d.addCallback(lambda deck: (deck, media))
        return defer.succeed((self._deck(), None))

    def _tapeArgs(self, verb: str, arg: str | None, deck: ITapeDeck) -> tuple[Decimal | None, Decimal | None]:
        words = arg.split(" ") if arg else []
        if len(words) > 2 or any(w == "" for w in words):
            raise SyntaxErrorInArguments(f"{verb} takes [stop-position [speed]] separated by single spaces")
        stop = speed = None
        if words:
            n = parse_number(words[0], allow_step=False)
            stop = n.apply(deck.state()[1], Decimal(0))
        if len(words) == 2:
            speed = parse_number(words[1], allow_step=False).value
        return stop, speed

    def _tape(self, verb: str, arg: str | None, method: str) -> Any:
        def move(target: tuple[ITapeDeck, Any]) -> Any:
            deck = target[0]
            if verb not in deck.commands():
                raise NotImplementedHere(f"{verb} is not supported by this tape device")
            stop, speed = self._tapeArgs(verb, arg, deck)
            d = defer.maybeDeferred(getattr(deck, method), stop, speed)
            return d.addCallback(lambda used: self._tapeReply(deck, verb, speed, used))
        return self._tapeTarget().addCallback(move)

    def _tapeReply(self, deck: ITapeDeck, verb: str, asked: Decimal | None = None,
                   used: Any = None) -> tuple[int, str]:
        """200 with the state reached, and the speed when the tape moves: the draft leaves
        precision and range to the device, so a speed it clamped is named as such."""
        op, pos = deck.state()
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

        def pause(target: tuple[ITapeDeck, Any]) -> Any:
            deck = target[0]
            if "PAUS" not in deck.commands():
                raise NotImplementedHere("PAUS is not supported by this tape device")
            return defer.maybeDeferred(deck.pause).addCallback(lambda _: self._tapeReply(deck, "PAUS"))
        return self._tapeTarget().addCallback(pause)

    def cccp_TSTA(self, arg: str | None) -> Any:
        # "TAPE STATUS command is always supported", also by devices without a tape.
        media = self._tapeMedia()
        if media is None and (self.user is None or self.user.deck is None):
            return 200, tsta_lines(TapeStatus("PAUS", Decimal(0)))
        if media is not None and getattr(media, "deck", True) is None:
            # a stored clip not moved yet: it plays from its start (TSTA does not index it)
            position = media.tapePosition() or Decimal(0)
            return 200, tsta_lines(TapeStatus("PLAY", position, {"PLAY": None, "PAUS": None, "FF": None}))

        def status(target: tuple[ITapeDeck, Any]) -> tuple[int, list[str]]:
            deck, media = target
            op, pos = deck.state()
            # While the tape is being sent: the position of the picture going out.
            shown = media.tapePosition() if media is not None else None
            return 200, tsta_lines(TapeStatus(op, shown if shown is not None else pos, dict(deck.commands())))
        return self._tapeTarget().addCallback(status)

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


@implementer(IPushProducer)
class _ReplyWatch:
    """Registered on the control transport: when replies pile up (the peer sends commands
    and never reads), commands are no longer read, and after ``stall_timeout`` seconds
    the connection is closed, so memory stays bounded."""

    def __init__(self, proto: CCCPServerProtocol) -> None:
        self.proto = proto

    def pauseProducing(self) -> None:
        p = self.proto
        p.hold("output")
        if p.factory.stall_timeout and p._stall is None:
            p._stall = p.factory.reactor.callLater(p.factory.stall_timeout, p._outputStalled)

    def resumeProducing(self) -> None:
        p = self.proto
        if p._stall is not None and p._stall.active():
            p._stall.cancel()
        p._stall = None
        p.unhold("output")

    def stopProducing(self) -> None:
        pass


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
    :param login_delay: seconds before a first failed login is answered; it doubles with
        each failure of the account or the address within *login_window* (up to 16 s).
    :param login_window: seconds failed logins are remembered, across connections.
    :param lockout_failures: failures of one account (five times as many of one address)
        within the window that lock it out for *lockout* seconds; during a lock-out even
        the right password is refused.
    :param login_timeout: seconds a connection may take to log in (NOOP does not extend it).
    :param max_unauthenticated: connections not logged in at once (default: three quarters
        of *max_connections*, so logged-in users keep room), and from one address
        (*max_unauthenticated_per_address*, default half of *max_per_address*, at least 2).
    :param stall_timeout: seconds a peer may leave our replies unread before it is closed;
        meanwhile its commands are not read.
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
                 reactor: Any = None, login_window: float = 600.0, lockout_failures: int = 5,
                 lockout: float = 300.0, login_timeout: float = 30.0, max_unauthenticated: int | None = None,
                 max_unauthenticated_per_address: int | None = None, stall_timeout: float = 60.0) -> None:
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
        #: Indexes of the stored clips played as tapes (built in a thread, kept).
        self.indexes = IndexCache(reactor)
        #: The status feed (``RETR /events``): device and transfer changes, as lines.
        self.events = EventHub(reactor)
        from .metrics import CCCPMetrics
        #: Counters and gauges for Prometheus (served with ``--metrics``).
        self.metrics = CCCPMetrics(self)
        self.login_timeout = login_timeout
        self.stall_timeout = stall_timeout
        self.max_unauthenticated = (max_unauthenticated if max_unauthenticated is not None
                                    else max(1, max_connections - max(1, max_connections // 4)))
        self.max_unauthenticated_per_address = (max_unauthenticated_per_address
                                                if max_unauthenticated_per_address is not None
                                                else max(2, max_per_address // 2))
        #: Failed logins across connections (per account and per address).
        self.logins = LoginGuard(window=login_window, per_account=lockout_failures,
                                 per_address=5 * lockout_failures, lockout=lockout, base_delay=login_delay)
        self.connections: set[CCCPServerProtocol] = set()
        #: The multicast groups and ports a RETR is sending to now (one stream each).
        self.multicast_sending: set[tuple[str, int]] = set()
        self._per_address: dict[str, int] = {}
        self._unauthenticated: dict[str, int] = {}

    def admit(self, proto: CCCPServerProtocol) -> str | None:
        """None to serve *proto*, or the text of the 421 that refuses it."""
        host = proto.peer_host or ""
        if len(self.connections) >= self.max_connections:
            return f"Too many connections ({self.max_connections}); try again later"
        if self._per_address.get(host, 0) >= self.max_per_address:
            return f"Too many connections from {host} ({self.max_per_address}); try again later"
        if sum(self._unauthenticated.values()) >= self.max_unauthenticated:
            return f"Too many connections waiting to log in ({self.max_unauthenticated}); try again later"
        if self._unauthenticated.get(host, 0) >= self.max_unauthenticated_per_address:
            return (f"Too many connections from {host} waiting to log in "
                    f"({self.max_unauthenticated_per_address}); try again later")
        self.connections.add(proto)
        self._per_address[host] = self._per_address.get(host, 0) + 1
        self._count(self._unauthenticated, host, +1)
        return None

    @staticmethod
    def _count(table: dict[str, int], host: str, n: int) -> None:
        table[host] = table.get(host, 0) + n
        if table[host] <= 0:
            del table[host]

    def authenticated(self, proto: CCCPServerProtocol) -> None:
        """*proto* logged in: it no longer counts among those waiting to."""
        if proto in self.connections and not proto.authenticated:
            proto.authenticated = True
            self._count(self._unauthenticated, proto.peer_host or "", -1)

    def unauthenticated(self, proto: CCCPServerProtocol) -> None:
        """*proto* logged out (REIN, or USER again)."""
        if proto in self.connections and proto.authenticated:
            proto.authenticated = False
            self._count(self._unauthenticated, proto.peer_host or "", +1)

    def release(self, proto: CCCPServerProtocol) -> None:
        if proto in self.connections:
            self.connections.discard(proto)
            host = proto.peer_host or ""
            self._count(self._per_address, host, -1)
            if not proto.authenticated:
                self._count(self._unauthenticated, host, -1)
