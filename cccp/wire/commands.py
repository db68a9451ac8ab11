"""The CCCP control-channel codec: command lines, replies, numeric arguments,
PORT/PASV addresses, TYPE and MODE, the TSTA/CSTA status bodies, the HELP text and
the LIST line format.

Pure: text in, values out. Replies follow RFC 959 (``NNN text`` or a
multi-line ``NNN-first`` … ``NNN last``); commands are TELNET-style lines,
verbs case-insensitive.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Protocol

from .errors import ParameterNotImplemented, RemoteProtocolError, SyntaxErrorInArguments

#: The draft leaves the port "to be assigned by IANA"; we use this one by default.
DEFAULT_PORT = 5021

#: Longest command line accepted (RFC 959 leaves it open; pyftpdlib uses 2048).
MAX_LINE = 2048

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

#: Commands the draft keeps from FTP ("exactly the same semantics").
FTP_COMMANDS = ("USER", "PASS", "ACCT", "CWD", "CDUP", "SMNT", "REIN", "QUIT", "PWD", "LIST", "NLST",
                "SYST", "STAT", "HELP", "NOOP")
#: Commands the draft modifies (section 3).
MODIFIED_COMMANDS = ("PORT", "PASV", "TYPE", "MODE", "RETR", "STOR", "ABOR")
#: Tape control (section 4); REC is the name section 4 itself uses for RECO.
TAPE_COMMANDS = ("PLAY", "PAUS", "RECO", "FF", "TSTA")
#: Camera control (section 5), in CSTA order: optics, then rotations, then translations.
CAMERA_COMMANDS = ("IRIS", "SENS", "ZOOM", "FOCU", "PAN", "TILT", "ROLL", "HORI", "VERT", "DEPT", "CSTA")
CAMERA_CONTROLS = tuple(c for c in CAMERA_COMMANDS if c != "CSTA")
ALL_COMMANDS = FTP_COMMANDS + MODIFIED_COMMANDS + TAPE_COMMANDS + CAMERA_COMMANDS
ALIASES = {"REC": "RECO"}

#: FTP verbs that CCCP does not have ("do not exist in CCCP"): answered 502.
FTP_ONLY = frozenset({
    "STRU", "ALLO", "REST", "RNFR", "RNTO", "DELE", "RMD", "MKD", "XMKD", "XRMD", "XPWD", "XCWD", "XCUP",
    "SITE", "APPE", "STOU", "SIZE", "MDTM", "FEAT", "OPTS", "EPSV", "EPRT", "LPSV", "LPRT", "AUTH",
    "PBSZ", "PROT", "CCC", "ADAT", "MIC", "CONF", "ENC", "LANG", "MLSD", "MLST", "HOST", "CLNT",
})


@dataclass(frozen=True)
class Command:
    verb: str                 # upper case, aliases resolved
    arg: str | None           # everything after the first space, or None
    raw_verb: str = ""


IAC = 0xFF


def strip_telnet(line: bytes) -> bytes:
    """Remove TELNET commands (IAC IP, IAC DM before ABOR, option negotiation);
    IAC IAC stands for a literal 0xFF (RFC 854)."""
    if IAC not in line:
        return line
    out = bytearray()
    i = 0
    while i < len(line):
        b = line[i]
        if b != IAC:
            out.append(b)
            i += 1
        elif i + 1 < len(line) and line[i + 1] == IAC:
            out.append(IAC)
            i += 2
        elif i + 1 < len(line) and 251 <= line[i + 1] <= 254:     # WILL WONT DO DONT <option>
            i += 3
        else:
            i += 2
    return bytes(out)


def parse_command(line: bytes) -> Command:
    """One command line (without CR LF). Raises 500 for an empty or non-text line."""
    line = strip_telnet(line)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("Command line is not UTF-8 text", 500) from None
    text = text.rstrip("\r")
    if not text.strip():
        raise RemoteProtocolError("Empty command line", 500)
    if any(ord(c) < 32 and c != "\t" for c in text):
        raise RemoteProtocolError("Control characters in command line", 500)
    verb, sep, arg = text.lstrip().partition(" ")
    upper = verb.upper()
    return Command(ALIASES.get(upper, upper), arg if sep else None, verb)


_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")


def escape_text(text: str) -> str:
    """*text* with every control character (CR and LF among them) as ``\\xNN``, so that a
    file name can never end a reply line or start a forged one; a backslash is doubled."""
    if "\\" not in text and not _CONTROL_CHARS.search(text):
        return text
    return _CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", text.replace("\\", "\\\\"))


def format_reply(code: int, text: str | Iterable[str]) -> bytes:
    """An RFC 959 reply: one line, or a first line ``NNN-text``, continuation lines and a
    last line ``NNN text`` when *text* has several lines. A string is cut into lines at
    LF; within a line, control characters are escaped (:func:`escape_text`), so that
    what came from a peer or a file name cannot break the framing."""
    lines = text.split("\n") if isinstance(text, str) else list(text)
    lines = [_CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", line) for line in lines]
    if not lines:
        lines = [""]
    if len(lines) == 1:
        return f"{code} {lines[0]}\r\n".encode()
    out = [f"{code}-{lines[0]}"]
    for line in lines[1:-1]:
        # An inner line that looks like a reply terminator is indented (RFC 959 4.2).
        out.append(" " + line if re.match(r"\d{3}[ -]", line) else line)
    out.append(f"{code} {lines[-1]}")
    return ("\r\n".join(out) + "\r\n").encode()


@dataclass
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def preliminary(self) -> bool:
        return 100 <= self.code < 200

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400


class ReplyParser:
    """Joins reply lines into :class:`Reply` values (client side)."""

    def __init__(self) -> None:
        self._code: str | None = None
        self._lines: list[str] = []

    def line(self, raw: str) -> Reply | None:
        raw = raw.rstrip("\r")
        if self._code is None:
            m = re.match(r"^([0-9]{3})(?:([ -])(.*))?$", raw, re.S)
            if not m:
                raise RemoteProtocolError(f"not a reply line: {raw[:80]!r}")
            code, sep, text = m.group(1), m.group(2) or " ", m.group(3) or ""
            if sep == "-":
                self._code, self._lines = code, [text]
                return None
            return Reply(int(code), [text])
        if raw.startswith(self._code + " ") or raw == self._code:
            lines = self._lines + [raw[4:]]
            code = int(self._code)
            self._code, self._lines = None, []
            return Reply(code, lines)
        self._lines.append(raw[1:] if re.match(r"^ \d{3}[ -]", raw) else raw)
        return None


# -- numbers (draft sections 4 and 5) ------------------------------------------------

_NUMBER = re.compile(r"^([+-])?([0-9]+)(?:\.([0-9]+))?$")


@dataclass(frozen=True)
class Number:
    """A numeric argument: absolute, relative (leading sign) or a small step (bare sign)."""

    kind: str            # "absolute", "relative" or "step"
    value: Decimal       # the number (for a step: +1 or -1, the direction)

    @property
    def relative(self) -> bool:
        return self.kind != "absolute"

    def apply(self, current: Decimal, step: Decimal) -> Decimal:
        """The target value given the current one and the device's small step."""
        if self.kind == "absolute":
            return self.value
        if self.kind == "relative":
            return current + self.value
        return current + step * self.value


def parse_number(text: str, allow_step: bool = True) -> Number:
    """Parse a draft number; 501 for bad syntax or an integral part outside int32."""
    if allow_step and text in ("+", "-"):
        return Number("step", Decimal(1 if text == "+" else -1))
    m = _NUMBER.match(text)
    if not m:
        raise SyntaxErrorInArguments(f"Bad number {text!r}: expected [+|-]digits[.digits]")
    sign, integral, _fraction = m.groups()
    whole = int(integral) * (-1 if sign == "-" else 1)
    if not INT32_MIN <= whole <= INT32_MAX:
        raise SyntaxErrorInArguments(f"Number {text!r} is outside the 32-bit signed range")
    value = Decimal(text)
    return Number("relative" if sign else "absolute", value)


def format_number(value: Decimal | int | float) -> str:
    """Decimal notation without exponent and without needless trailing zeros."""
    d = Decimal(value) if not isinstance(value, Decimal) else value
    try:
        d = d.quantize(Decimal("0.001")).normalize()
    except InvalidOperation:
        pass
    text = format(d, "f")
    return "0" if text in ("-0", "") else text


# -- PORT / PASV -------------------------------------------------------------------

def parse_host_port(arg: str | None) -> tuple[str, int]:
    """``h1,h2,h3,h4,p1,p2`` → (dotted host, port); 501 when malformed."""
    if not arg:
        raise SyntaxErrorInArguments("PORT needs h1,h2,h3,h4,p1,p2")
    parts = [p.strip(" ") for p in arg.strip(" ").strip("()").split(",")]
    if not all(re.fullmatch(r"[0-9]{1,3}", p) for p in parts):
        raise SyntaxErrorInArguments(f"Bad address {arg!r}")
    nums = [int(p) for p in parts]
    if len(nums) != 6 or not all(0 <= n <= 255 for n in nums):
        raise SyntaxErrorInArguments(f"Bad address {arg!r}: six numbers 0-255 expected")
    return ".".join(map(str, nums[:4])), nums[4] * 256 + nums[5]


def format_host_port(host: str, port: int) -> str:
    return ",".join(host.split(".") + [str(port >> 8), str(port & 0xFF)])


# -- TYPE and MODE (draft section 3) -------------------------------------------------

MPEG_PROFILES = ("MP@ML", "SP@ML")


@dataclass(frozen=True)
class TransferType:
    """``A`` (listings) or ``I`` (audio/visual): format M (MPEG2-TS) or R (RTP)."""

    code: str                         # "A" or "I"
    format: str | None = None         # None, "N" for A; None, "M" or "R" for I
    profile: str | None = None        # MPEG profile
    payload_types: tuple[int, ...] = ()

    def describe(self) -> str:
        if self.code == "A":
            return "ASCII"
        if self.format == "M":
            return f"MPEG2-TS{' ' + self.profile if self.profile else ''}"
        if self.format == "R":
            return f"RTP payload types {','.join(map(str, self.payload_types))}"
        return "BINARY"


def parse_type(arg: str | None) -> TransferType:
    if not arg:
        raise SyntaxErrorInArguments("TYPE needs an argument: A [N] or I [M profile | R pt,...]")
    words = arg.split()
    if not words:
        raise SyntaxErrorInArguments("TYPE needs an argument: A [N] or I [M profile | R pt,...]")
    code = words[0].upper()
    rest = words[1:]
    if code == "A":
        if not rest or (len(rest) == 1 and rest[0].upper() == "N"):
            return TransferType("A", "N" if rest else None)
        if len(rest) == 1 and rest[0].upper() in ("T", "C"):
            raise ParameterNotImplemented(f"TYPE A {rest[0].upper()} is not supported: only format N")
        raise SyntaxErrorInArguments(f"Bad TYPE A argument {' '.join(rest)!r}")
    if code == "I":
        if not rest:
            return TransferType("I")
        fmt = rest[0].upper()
        if fmt == "M":
            if len(rest) == 1:
                return TransferType("I", "M")
            if len(rest) == 2 and rest[1].upper() in MPEG_PROFILES:
                return TransferType("I", "M", rest[1].upper())
            if len(rest) == 2:
                raise ParameterNotImplemented(f"MPEG2 profile {rest[1]!r} is not supported: MP@ML or SP@ML")
        elif fmt == "R":
            if len(rest) == 2:
                if not re.fullmatch(r"[0-9]{1,3}(,[0-9]{1,3})*", rest[1]):
                    raise SyntaxErrorInArguments(f"Bad RTP payload type list {rest[1]!r}")
                pts = tuple(int(p) for p in rest[1].split(","))
                if not all(0 <= p <= 127 for p in pts):
                    raise SyntaxErrorInArguments("RTP payload types are 0-127")
                return TransferType("I", "R", None, pts)
            raise SyntaxErrorInArguments("TYPE I R needs a comma separated list of payload types")
        else:
            raise ParameterNotImplemented(f"TYPE I format {fmt!r} is not supported: M or R")
        raise SyntaxErrorInArguments(f"Bad TYPE argument {arg!r}")
    if code in ("E", "L"):
        raise ParameterNotImplemented(f"TYPE {code} is not supported in CCCP: A or I")
    raise SyntaxErrorInArguments(f"Unknown TYPE {code!r}")


@dataclass(frozen=True)
class TransferMode:
    """``S`` (TCP stream) or ``P`` (UDP packets, *per_packet* payloads each)."""

    code: str
    per_packet: int = 0
    qos: str | None = None

    def describe(self) -> str:
        base = "STREAM (TCP)" if self.code == "S" else f"PACKET (UDP, {self.per_packet} per datagram)"
        return base + (f", QoS {self.qos!r} recorded (best effort)" if self.qos else ", best effort")


def parse_mode(arg: str | None) -> TransferMode:
    if not arg:
        raise SyntaxErrorInArguments("MODE needs an argument: S [qos] or P n [qos]")
    words = arg.split(" ")
    code = words[0].upper()
    if code == "S":
        qos = " ".join(words[1:]) or None
        return TransferMode("S", 0, qos)
    if code == "P":
        if len(words) < 2 or not re.fullmatch(r"[0-9]{1,6}", words[1]):
            raise SyntaxErrorInArguments("MODE P needs the number of payloads per UDP packet")
        n = int(words[1])
        if n < 1:
            raise SyntaxErrorInArguments("MODE P needs at least one payload per packet")
        return TransferMode("P", n, " ".join(words[2:]) or None)
    if code in ("B", "C"):
        raise ParameterNotImplemented(f"MODE {code} is not supported in CCCP: S or P")
    raise SyntaxErrorInArguments(f"Unknown MODE {code!r}")


# -- TSTA / CSTA bodies ---------------------------------------------------------------

@dataclass
class TapeStatus:
    """TSTA: the command in operation, the position, and each supported command's range."""

    operation: str
    position: Decimal
    commands: dict[str, tuple[Decimal, Decimal] | None] = field(default_factory=dict)


@dataclass
class CameraStatus:
    """CSTA: each supported control with (minimum, current, maximum), in reply order."""

    first_line: str = "OK"
    controls: dict[str, tuple[Decimal, Decimal, Decimal]] = field(default_factory=dict)


END_OF_STATUS = "End of status"


def tsta_lines(status: TapeStatus) -> list[str]:
    lines = [f"{status.operation} {format_number(status.position)}"]
    for name, rng in status.commands.items():
        lines.append(name if rng is None else f"{name} {format_number(rng[0])},{format_number(rng[1])}")
    return lines + [END_OF_STATUS]


def csta_lines(status: CameraStatus) -> list[str]:
    lines = [status.first_line]
    for name, (lo, cur, hi) in status.controls.items():
        lines.append(f"{name} {format_number(lo)},{format_number(cur)},{format_number(hi)}")
    return lines + [END_OF_STATUS]


def _numbers(text: str) -> list[Decimal]:
    try:
        return [Decimal(x) for x in text.split(",")]
    except InvalidOperation:
        raise RemoteProtocolError(f"bad numbers {text!r}") from None


def _body(lines: list[str]) -> Iterator[str]:
    for line in lines[1:]:
        if line and line != END_OF_STATUS:
            yield line.strip()


def parse_tsta(lines: list[str]) -> TapeStatus:
    op, _, pos = lines[0].strip().partition(" ")
    status = TapeStatus(op.upper(), _numbers(pos)[0] if pos else Decimal(0))
    for line in _body(lines):
        name, _, rng = line.partition(" ")
        nums = _numbers(rng) if rng else None
        status.commands[name.upper()] = (nums[0], nums[1]) if nums and len(nums) >= 2 else None
    return status


def parse_csta(lines: list[str]) -> CameraStatus:
    status = CameraStatus(lines[0].strip())
    for line in _body(lines):
        name, _, nums = line.partition(" ")
        values = _numbers(nums)
        if len(values) == 3:
            status.controls[name.upper()] = (values[0], values[1], values[2])
    return status


# -- HELP and LIST ---------------------------------------------------------------------

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


def help_lines() -> list[str]:
    """The body of a bare HELP: every command, eight to a line."""
    names = list(ALL_COMMANDS)
    rows = [" ".join(f"{n:<5}" for n in names[i:i + 8]).rstrip() for i in range(0, len(names), 8)]
    return ["The following commands are recognized (REC is RECO):"] + rows + ["Help OK"]


class Listable(Protocol):
    """What a LIST line shows of a file or folder (a :class:`~cccp.devices.Entry`)."""

    @property
    def name(self) -> str: ...
    @property
    def is_dir(self) -> bool: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime(self) -> float: ...
    @property
    def mode(self) -> int: ...


def list_line(e: Listable, now: float | None = None) -> str:
    """One ``ls -l`` style line, as FTP clients (curl, lftp, ftplib) parse them."""
    perms = ("d" if e.is_dir else "-") + "".join(
        ("r" if e.mode & (4 << s) else "-") + ("w" if e.mode & (2 << s) else "-") + ("x" if e.mode & (1 << s) else "-")
        for s in (6, 3, 0))
    t = time.localtime(e.mtime)
    recent = (time.time() if now is None else now) - e.mtime < 180 * 86400
    when = time.strftime("%b %d %H:%M", t) if recent else time.strftime("%b %d  %Y", t)
    return f"{perms} 1 cccp cccp {e.size:>12} {when} {escape_text(e.name)}"
