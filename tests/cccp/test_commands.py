"""The CCCP codec: command lines, RFC 959 replies, draft numbers, TYPE/MODE, TSTA/CSTA."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cccp.commands import (
    CameraStatus,
    Number,
    ReplyParser,
    TapeStatus,
    csta_lines,
    format_host_port,
    format_number,
    format_reply,
    parse_command,
    parse_csta,
    parse_host_port,
    parse_mode,
    parse_number,
    parse_tsta,
    parse_type,
    tsta_lines,
)
from cccp.errors import ParameterNotImplemented, RemoteProtocolError, SyntaxErrorInArguments


@pytest.mark.parametrize("line,verb,arg", [
    (b"USER bob", "USER", "bob"), (b"user bob", "USER", "bob"), (b"Pwd", "PWD", None),
    (b"REC 10 2", "RECO", "10 2"), (b"CWD my dir", "CWD", "my dir"), (b"STOR ", "STOR", ""),
    (b"zoom +", "ZOOM", "+"), (b"LIST\r", "LIST", None),
])
def test_command_lines(line, verb, arg):
    """Verbs are case-insensitive; REC is RECO; the argument is the rest of the line."""
    c = parse_command(line)
    assert (c.verb, c.arg) == (verb, arg)


@pytest.mark.parametrize("line", [b"", b"   ", b"\xff\xfe", b"NOOP\x00x"])
def test_bad_command_lines_are_500(line):
    with pytest.raises(RemoteProtocolError) as e:
        parse_command(line)
    assert e.value.code == 500


def test_single_and_multi_line_replies():
    assert format_reply(200, "NOOP ok") == b"200 NOOP ok\r\n"
    assert format_reply(211, ["a", "b", "c"]) == b"211-a\r\nb\r\n211 c\r\n"
    # An inner line that looks like a terminator is indented (RFC 959 4.2).
    assert format_reply(211, ["a", "211 x", "c"]) == b"211-a\r\n 211 x\r\n211 c\r\n"


def test_reply_parser_round_trip():
    p = ReplyParser()
    raw = format_reply(211, ["first", "211 tricky", "middle", "last"]).decode()
    out = [p.line(line) for line in raw.split("\r\n")[:-1]]
    assert out[:-1] == [None, None, None] and out[-1].code == 211
    assert out[-1].lines == ["first", "211 tricky", "middle", "last"]


@pytest.mark.parametrize("text,kind,value", [
    ("10", "absolute", "10"), ("0.5", "absolute", "0.5"), ("+5", "relative", "5"), ("-2.25", "relative", "-2.25"),
    ("+", "step", "1"), ("-", "step", "-1"), ("2147483647", "absolute", "2147483647"),
    ("-2147483648", "relative", "-2147483648"), ("-2147483648.9", "relative", "-2147483648.9"),
])
def test_draft_numbers(text, kind, value):
    """Decimal with optional fraction; a sign means relative; a bare sign a small step."""
    n = parse_number(text)
    assert n.kind == kind and n.value == Decimal(value)


@pytest.mark.parametrize("text", ["", "1e5", ".5", "5.", "1,5", "++1", "2147483648", "-2147483649", "ten",
                                  " 1", "0x10", "+-"])
def test_bad_numbers_are_501(text):
    with pytest.raises(SyntaxErrorInArguments):
        parse_number(text)


def test_bare_sign_not_allowed_for_positions():
    with pytest.raises(SyntaxErrorInArguments):
        parse_number("+", allow_step=False)


def test_number_apply():
    assert Number("absolute", Decimal(3)).apply(Decimal(10), Decimal(1)) == 3
    assert Number("relative", Decimal(-3)).apply(Decimal(10), Decimal(1)) == 7
    assert Number("step", Decimal(1)).apply(Decimal(10), Decimal("0.5")) == Decimal("10.5")


@pytest.mark.parametrize("value,text", [(Decimal("1.500"), "1.5"), (Decimal(0), "0"), (Decimal("-0.0"), "0"),
                                        (Decimal("3600"), "3600"), (Decimal("0.1"), "0.1")])
def test_format_number(value, text):
    assert format_number(value) == text


def test_host_port():
    assert parse_host_port("127,0,0,1,19,137") == ("127.0.0.1", 19 * 256 + 137)
    assert format_host_port("127.0.0.1", 5001) == "127,0,0,1,19,137"
    for bad in ("1,2,3,4,5", "1,2,3,4,5,256", "a,b,c,d,e,f", "", None):
        with pytest.raises(SyntaxErrorInArguments):
            parse_host_port(bad)


@pytest.mark.parametrize("arg,desc", [
    ("A", "ASCII"), ("a n", "ASCII"), ("I", "BINARY"), ("I M", "MPEG2-TS"), ("I M MP@ML", "MPEG2-TS MP@ML"),
    ("I M sp@ml", "MPEG2-TS SP@ML"), ("I R 33", "RTP payload types 33"), ("I R 14,32", "RTP payload types 14,32"),
])
def test_types(arg, desc):
    assert parse_type(arg).describe() == desc


@pytest.mark.parametrize("arg,error", [
    ("A T", ParameterNotImplemented), ("E", ParameterNotImplemented), ("L 8", ParameterNotImplemented),
    ("I M HP@HL", ParameterNotImplemented), ("I X", ParameterNotImplemented), ("I R", SyntaxErrorInArguments),
    ("I R 1,x", SyntaxErrorInArguments), ("I R 200", SyntaxErrorInArguments), ("Q", SyntaxErrorInArguments),
    (None, SyntaxErrorInArguments), ("A N X", SyntaxErrorInArguments),
])
def test_bad_types(arg, error):
    with pytest.raises(error):
        parse_type(arg)


def test_modes():
    assert parse_mode("S").describe() == "STREAM (TCP), best effort"
    assert parse_mode("s guaranteed 2M").qos == "guaranteed 2M"
    m = parse_mode("P 7 cl=1")
    assert (m.code, m.per_packet, m.qos) == ("P", 7, "cl=1")
    for bad, err in (("P", SyntaxErrorInArguments), ("P 0", SyntaxErrorInArguments), ("B", ParameterNotImplemented),
                     ("X", SyntaxErrorInArguments)):
        with pytest.raises(err):
            parse_mode(bad)


def test_tsta_body_round_trip():
    status = TapeStatus("PLAY", Decimal("12.5"), {"PLAY": (Decimal(0), Decimal(3600)), "PAUS": None})
    lines = tsta_lines(status)
    assert lines == ["PLAY 12.5", "PLAY 0,3600", "PAUS", "End of status"]
    assert parse_tsta(lines) == status


def test_csta_body_round_trip():
    status = CameraStatus("OK", {"ZOOM": (Decimal(1), Decimal("2.5"), Decimal(20)),
                                 "PAN": (Decimal(-170), Decimal(0), Decimal(170))})
    lines = csta_lines(status)
    assert lines == ["OK", "ZOOM 1,2.5,20", "PAN -170,0,170", "End of status"]
    assert parse_csta(lines) == status


@settings(deadline=None)
@given(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(0, 999), st.sampled_from(["", "+", "-"]))
def test_number_round_trip(whole, frac, sign):
    if whole < 0:
        sign = "-"
    elif sign == "-" or whole > (1 << 31) - 1:
        sign = "+"
    text = f"{sign}{abs(whole)}.{frac:03d}"
    n = parse_number(text)
    assert format_number(n.value) == format_number(Decimal(text))


@pytest.mark.parametrize("raw,verb", [
    (b"\xff\xf4\xff\xf2ABOR", "ABOR"),            # IAC IP IAC DM ABOR, as classic clients abort
    (b"\xff\xfb\x01NOOP", "NOOP"),                # IAC WILL ECHO
    (b"CWD a\xff\xffb", "CWD"),                   # IAC IAC is a literal 0xFF (then not UTF-8: 500)
])
def test_telnet_commands_are_stripped(raw, verb):
    if verb == "CWD":
        with pytest.raises(RemoteProtocolError):
            parse_command(raw)
    else:
        assert parse_command(raw).verb == verb


def test_malformed_status_bodies_are_protocol_errors():
    """Found by fuzzing: a TSTA position that is no number raised a bare decimal error."""
    with pytest.raises(RemoteProtocolError):
        parse_tsta(["PLAY 1.2.3"])
    with pytest.raises(RemoteProtocolError):
        parse_csta(["OK", "ZOOM a,b,c"])


def test_blank_type_argument_is_501():
    """Found by fuzzing: 'TYPE   ' raised IndexError (the server answered 451, not 501)."""
    with pytest.raises(SyntaxErrorInArguments):
        parse_type("   ")


@pytest.mark.parametrize("call", [lambda: parse_mode("P ²"), lambda: parse_number("٣"),
                                  lambda: parse_host_port("1,2,3,4,5,٦"), lambda: parse_type("I R ³"),
                                  lambda: parse_host_port("127,0,0,1,8\x1e,1")])
def test_only_ascii_digits_are_numbers(call):
    """Found by fuzzing: Unicode digits reached int() (a ValueError, or a silent accept)."""
    with pytest.raises(SyntaxErrorInArguments):
        call()


def test_bare_reply_code_line():
    """Found by fuzzing: a reply line of just three digits crashed the parser."""
    assert ReplyParser().line("200").code == 200
    with pytest.raises(RemoteProtocolError):
        ReplyParser().line("2x0 nope")
