"""The state of one CCCP control connection, without I/O.

:class:`Session` holds what RFC 959 and the draft make stateful: the login phase,
the working directory, TYPE and MODE with the rules that join them, which verbs
may be used now, and the :class:`TransferPlan` a RETR or STOR runs with (framing,
RTP payload types, TCP or UDP). The server feeds it parsed commands and turns its
answers and :class:`~cccp.wire.errors.RemoteProtocolError` values into replies.

:class:`LineBuffer` cuts a byte stream into lines with a bound on their length,
for the server's commands and the client's replies alike.
"""

from __future__ import annotations

import enum
import posixpath
from dataclasses import dataclass
from typing import Final

from .commands import (
    ALL_COMMANDS,
    FTP_ONLY,
    MAX_LINE,
    Command,
    TransferMode,
    TransferType,
    parse_mode,
    parse_type,
)
from .errors import NotImplementedHere, ParameterNotImplemented, RemoteProtocolError, SyntaxErrorInArguments
from .media import RTP_MP2T

__all__ = [
    "ANONYMOUS_NAMES",
    "PRE_LOGIN",
    "TOO_LONG",
    "Framing",
    "LineBuffer",
    "LoginPhase",
    "Session",
    "TransferPlan",
]

#: User names that mean anonymous access (RFC 1635).
ANONYMOUS_NAMES: Final = ("anonymous", "ftp")
#: What may be used before logging in.
PRE_LOGIN: Final = frozenset({"USER", "PASS", "QUIT", "HELP", "NOOP", "SYST"})


# -- lines --------------------------------------------------------------------------

class _TooLong:
    def __repr__(self) -> str:
        return "TOO_LONG"


#: Returned by :meth:`LineBuffer.next_line` once for a line longer than the limit
#: (what follows up to its end of line is discarded).
TOO_LONG: Final = _TooLong()


class LineBuffer:
    """Lines ended by LF (a CR before it is removed), at most *max_line* bytes each.

    Bytes are appended and an offset advances through them, so a flood of short
    lines costs linear time; what is buffered never exceeds *max_line* plus the
    last chunk received, because an overlong line is discarded as it arrives.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._pos = 0
        self._discarding = False
        self._reported = False

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a returned line."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next_line(self) -> bytes | _TooLong | None:
        """The next complete line (without its end of line), :data:`TOO_LONG`, or None
        when more bytes are needed."""
        while True:
            nl = self._buf.find(b"\n", self._pos)
            if nl < 0:
                if len(self._buf) - self._pos > self.max_line:
                    # Overlong and still going: drop it now, say so once.
                    self._buf.clear()
                    self._pos = 0
                    first = not self._discarding
                    self._discarding = True
                    if first:
                        return TOO_LONG
                if self._pos >= 1 << 16:
                    del self._buf[:self._pos]
                    self._pos = 0
                return None
            start, self._pos = self._pos, nl + 1
            if self._discarding:
                self._discarding = False          # the end of the line we dropped
                continue
            end = nl - 1 if nl > start and self._buf[nl - 1] == 0x0D else nl
            if nl - start > self.max_line:
                return TOO_LONG
            return bytes(self._buf[start:end])


# -- transfers ------------------------------------------------------------------------

class Framing(enum.Enum):
    """How a transfer's bytes are framed on its data port."""

    RAW = "raw"          # the bytes as they are (TYPE I over TCP, FTP-compatible)
    TS = "ts"            # whole 188-byte MPEG2-TS packets, paced by the PCR
    RTP = "rtp"          # RTP packets (RFC 4571 length framing over TCP)


@dataclass(frozen=True)
class TransferPlan:
    """What a RETR or STOR runs with, decided from TYPE and MODE."""

    framing: Framing
    #: RTP payload types acceptable, in the order asked (TS: MP2T only).
    payload_types: tuple[int, ...]
    #: True in MODE P: datagrams on a UDP port.
    udp: bool
    #: TS packets per UDP datagram (MODE P n).
    per_datagram: int

    @property
    def payload_type(self) -> int:
        return self.payload_types[0]

    @property
    def kind(self) -> str:
        """How the 150 reply names it."""
        return {Framing.RAW: "BINARY", Framing.TS: "MPEG2-TS", Framing.RTP: "RTP"}[self.framing]


# -- the session ----------------------------------------------------------------------

class LoginPhase(enum.Enum):
    NEED_USER = "need-user"
    NEED_PASS = "need-pass"
    CHECKING = "checking"          # PASS is with the checker: nothing else is read meanwhile
    LOGGED_IN = "logged-in"


class Session:
    """One control connection's state.

    :param allow_anonymous: USER anonymous/ftp logs in without a password check.
    """

    def __init__(self, allow_anonymous: bool = True) -> None:
        self.allow_anonymous = allow_anonymous
        self.login = LoginPhase.NEED_USER
        self.pending_user: str | None = None
        self.cwd = "/"
        self.type = TransferType("A")
        self.mode = TransferMode("S")

    # -- verbs --------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        return self.login is LoginPhase.LOGGED_IN

    def check(self, command: Command) -> None:
        """Whether *command* may be used now: 502 for FTP verbs CCCP left out, 500 for
        unknown verbs, 530 before login."""
        if command.verb in FTP_ONLY:
            raise NotImplementedHere(f"{command.raw_verb.upper()} does not exist in CCCP")
        if command.verb not in ALL_COMMANDS:
            raise RemoteProtocolError(f"Syntax error, command unrecognized: {command.raw_verb[:20]}", 500)
        if not self.logged_in and command.verb not in PRE_LOGIN:
            raise RemoteProtocolError("Please login with USER and PASS", 530)

    # -- login (RFC 959) --------------------------------------------------------------
    def is_anonymous(self, name: str) -> bool:
        return name.lower() in ANONYMOUS_NAMES and self.allow_anonymous

    def user(self, name: str | None) -> tuple[int, str]:
        """USER: the 331 that asks for the password. Logs out a logged-in user first
        (the caller ends its avatar)."""
        if not name:
            raise SyntaxErrorInArguments("USER needs a user name")
        self.login, self.pending_user = LoginPhase.NEED_PASS, name
        if self.is_anonymous(name):
            return 331, "Guest login ok, send your e-mail address as password"
        return 331, f"Password required for {name}"

    def begin_password(self) -> str:
        """PASS: the user name to check (the phase is CHECKING until the answer)."""
        if self.login is LoginPhase.LOGGED_IN:
            raise RemoteProtocolError("Already logged in", 230)
        if self.pending_user is None:
            raise RemoteProtocolError("Login with USER first", 503)
        name, self.pending_user = self.pending_user, None
        self.login = LoginPhase.CHECKING
        return name

    def login_succeeded(self) -> None:
        self.login = LoginPhase.LOGGED_IN
        self.cwd = "/"

    def login_failed(self) -> None:
        self.login = LoginPhase.NEED_USER

    def reinitialize(self) -> None:
        """REIN: flush the user and everything set since login (RFC 959)."""
        self.login = LoginPhase.NEED_USER
        self.pending_user = None
        self.cwd = "/"
        self.type, self.mode = TransferType("A"), TransferMode("S")

    # -- paths ------------------------------------------------------------------------
    def resolve(self, arg: str | None) -> str:
        """The absolute virtual path *arg* names (the working directory when empty)."""
        if not arg:
            return self.cwd
        return posixpath.normpath(arg if arg.startswith("/") else posixpath.join(self.cwd, arg))

    def change_directory(self, path: str) -> None:
        self.cwd = path

    def up(self) -> str:
        """CDUP: the parent of the working directory, which becomes the new one."""
        self.cwd = posixpath.dirname(self.cwd.rstrip("/")) or "/"
        return self.cwd

    # -- TYPE and MODE (draft section 3) --------------------------------------------------
    def set_type(self, arg: str | None) -> TransferType:
        t = parse_type(arg)
        if t.format == "R" and self.mode.code == "P" and self.mode.per_packet != 1:
            raise SyntaxErrorInArguments(
                f"RTP carries one RTP packet per datagram: MODE P {self.mode.per_packet} must be MODE P 1 first")
        self.type = t
        return t

    def set_mode(self, arg: str | None) -> bool:
        """MODE; True when the data port kind changed (TCP ↔ UDP): a PASV or PORT
        given before no longer applies."""
        m = parse_mode(arg)
        if m.code == "P" and self.type.format == "R" and m.per_packet != 1:
            raise SyntaxErrorInArguments("MODE P n with TYPE I R: n must be 1 (one RTP packet per datagram)")
        if m.code == "P" and m.per_packet > 64:
            raise ParameterNotImplemented(f"MODE P {m.per_packet}: at most 64 TS packets fit in a datagram")
        changed = m.code != self.mode.code
        self.mode = m
        return changed

    @property
    def udp(self) -> bool:
        return self.mode.code == "P"

    def listing(self, verb: str) -> None:
        """LIST and NLST go over TCP only."""
        if self.udp:
            raise ParameterNotImplemented(f"{verb} needs MODE S: listings are not sent over UDP")

    def plan(self, verb: str, text: bool = False) -> TransferPlan:
        """The plan of a RETR or STOR under the current TYPE and MODE; 504 where impossible.
        *text*: a RETR of text (the status feed), which TYPE A sends over TCP as it is."""
        if self.type.code == "A":
            if text and not self.udp:
                return TransferPlan(Framing.RAW, (RTP_MP2T,), False, 7)
            raise ParameterNotImplemented(f"{verb} needs TYPE I: TYPE A is for LIST, NLST and /events only")
        per = self.mode.per_packet or 7
        if self.type.format == "R":
            if self.udp and self.mode.per_packet != 1:
                raise ParameterNotImplemented("RTP over UDP carries one RTP packet per datagram: use MODE P 1")
            return TransferPlan(Framing.RTP, self.type.payload_types, self.udp, per)
        if self.type.format == "M" or self.udp:
            return TransferPlan(Framing.TS, (RTP_MP2T,), self.udp, per)
        return TransferPlan(Framing.RAW, (RTP_MP2T,), False, per)
