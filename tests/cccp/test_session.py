"""The control connection's state (``cccp.wire.session``), driven without a socket:
the login phases, verb gating, paths, the TYPE/MODE rules and the transfer plan, and
the bounded line buffer both the server and the client read with."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cccp.wire.commands import parse_command
from cccp.wire.errors import RemoteProtocolError
from cccp.wire.media import RTP_MP2T
from cccp.wire.session import TOO_LONG, Framing, LineBuffer, LoginPhase, Session, TransferPlan


def answer(session: Session, line: str) -> tuple[int, str]:
    """What the server would reply to a TYPE or MODE line, from the session alone."""
    command = parse_command(line.encode())
    try:
        session.check(command)
        if command.verb == "TYPE":
            return 200, f"Type set to {session.set_type(command.arg).describe()}"
        session.set_mode(command.arg)
        return 200, f"Mode set to {session.mode.describe()}"
    except RemoteProtocolError as e:
        return e.code, str(e)


def logged_in() -> Session:
    s = Session()
    s.user("anonymous")
    s.begin_password()
    s.login_succeeded()
    return s


# -- TYPE and MODE ------------------------------------------------------------------

@pytest.mark.parametrize("line,code,text", [
    ("TYPE A", 200, "Type set to ASCII"), ("TYPE A N", 200, "Type set to ASCII"),
    ("TYPE I", 200, "Type set to BINARY"), ("TYPE I M MP@ML", 200, "Type set to MPEG2-TS MP@ML"),
    ("TYPE I R 33", 200, "Type set to RTP payload types 33"),
    ("TYPE E", 504, "TYPE E is not supported in CCCP: A or I"),
    ("TYPE A T", 504, "TYPE A T is not supported: only format N"),
    ("TYPE", 501, "TYPE needs an argument: A [N] or I [M profile | R pt,...]"),
    ("MODE S", 200, "Mode set to STREAM (TCP), best effort"),
    ("MODE S rsvp-tspec", 200, "Mode set to STREAM (TCP), QoS 'rsvp-tspec' recorded (best effort)"),
    ("MODE B", 504, "MODE B is not supported in CCCP: S or P"),
    ("MODE P 7", 200, "Mode set to PACKET (UDP, 7 per datagram), best effort"),
    ("MODE P 100", 504, "MODE P 100: at most 64 TS packets fit in a datagram"),
    ("MODE", 501, "MODE needs an argument: S [qos] or P n [qos]"),
])
def test_type_and_mode_table(line, code, text):
    assert answer(logged_in(), line) == (code, text)


def test_rtp_needs_one_packet_per_datagram_whichever_comes_first():
    s = logged_in()
    assert answer(s, "MODE P 7")[0] == 200
    assert answer(s, "TYPE I R 33") == (
        501, "RTP carries one RTP packet per datagram: MODE P 7 must be MODE P 1 first")
    assert answer(s, "MODE P 1")[0] == 200 and answer(s, "TYPE I R 33")[0] == 200
    assert answer(s, "MODE P 7") == (501, "MODE P n with TYPE I R: n must be 1 (one RTP packet per datagram)")
    assert s.mode.per_packet == 1                     # a refused MODE changes nothing


def test_a_mode_change_between_tcp_and_udp_drops_the_data_port():
    s = logged_in()
    assert s.set_mode("S x") is False
    assert s.set_mode("P 7") is True
    assert s.set_mode("P 3") is False
    assert s.set_mode("S") is True


@pytest.mark.parametrize("type_,mode,plan", [
    ("I", "S", TransferPlan(Framing.RAW, (RTP_MP2T,), False, 7)),
    ("I", "P 7", TransferPlan(Framing.TS, (RTP_MP2T,), True, 7)),
    ("I M", "S", TransferPlan(Framing.TS, (RTP_MP2T,), False, 7)),
    ("I M SP@ML", "P 3", TransferPlan(Framing.TS, (RTP_MP2T,), True, 3)),
    ("I R 26,33", "S", TransferPlan(Framing.RTP, (26, 33), False, 7)),
    ("I R 33", "P 1", TransferPlan(Framing.RTP, (33,), True, 1)),
])
def test_the_transfer_plan_follows_type_and_mode(type_, mode, plan):
    s = logged_in()
    s.set_mode(mode)
    s.set_type(type_)
    assert s.plan("RETR") == plan
    assert plan.kind == {Framing.RAW: "BINARY", Framing.TS: "MPEG2-TS", Framing.RTP: "RTP"}[plan.framing]


def test_transfers_and_listings_refused_where_impossible():
    s = logged_in()
    with pytest.raises(RemoteProtocolError, match="RETR needs TYPE I") as e:
        s.plan("RETR")                                 # TYPE A is for listings only
    assert e.value.code == 504
    s.set_mode("P 7")
    with pytest.raises(RemoteProtocolError, match="LIST needs MODE S") as e:
        s.listing("LIST")
    assert e.value.code == 504


# -- login and verbs ----------------------------------------------------------------------

@pytest.mark.parametrize("line,code", [("SIZE x", 502), ("feat", 502), ("XYZZY", 500), ("CWD /", 530),
                                       ("RETR x", 530), ("ZOOM +", 530)])
def test_verbs_are_gated_before_login(line, code):
    with pytest.raises(RemoteProtocolError) as e:
        Session().check(parse_command(line.encode()))
    assert e.value.code == code
    for ok in ("USER x", "PASS y", "NOOP", "HELP", "SYST", "QUIT"):
        Session().check(parse_command(ok.encode()))


def test_the_login_phases():
    s = Session(allow_anonymous=False)
    with pytest.raises(RemoteProtocolError, match="Login with USER first") as e:
        s.begin_password()
    assert e.value.code == 503
    assert s.user("anonymous") == (331, "Password required for anonymous")    # no guest access here
    assert s.login is LoginPhase.NEED_PASS
    assert s.begin_password() == "anonymous" and s.login is LoginPhase.CHECKING
    s.login_failed()
    assert s.login is LoginPhase.NEED_USER and not s.logged_in
    s.user("alice")
    s.begin_password()
    s.login_succeeded()
    assert s.logged_in
    with pytest.raises(RemoteProtocolError) as e:
        s.begin_password()
    assert e.value.code == 230
    s.set_type("I")
    s.change_directory("/clips")
    s.reinitialize()
    assert (s.login, s.cwd, s.type.code, s.mode.code) == (LoginPhase.NEED_USER, "/", "A", "S")


def test_guests_are_told_to_send_their_address():
    assert Session().user("FTP") == (331, "Guest login ok, send your e-mail address as password")


def test_paths_resolve_against_the_working_directory():
    s = logged_in()
    assert s.resolve(None) == "/" and s.resolve("a/b/../c") == "/a/c"
    s.change_directory("/clips/deep")
    assert s.resolve("x.ts") == "/clips/deep/x.ts" and s.resolve("/y") == "/y" and s.resolve("..") == "/clips"
    assert s.up() == "/clips" and s.up() == "/" and s.up() == "/"


# -- lines ---------------------------------------------------------------------------------

def lines_of(buf: LineBuffer) -> list[object]:
    out = []
    while (line := buf.next_line()) is not None:
        out.append(line)
    return out


def test_lines_end_with_lf_or_crlf_and_wait_for_their_end():
    buf = LineBuffer(16)
    buf.feed(b"NOOP\r\nSYST\nPW")
    assert lines_of(buf) == [b"NOOP", b"SYST"]
    buf.feed(b"D\r")
    assert lines_of(buf) == []
    buf.feed(b"\n")
    assert lines_of(buf) == [b"PWD"] and buf.pending == 0


def test_an_overlong_line_is_reported_once_and_the_next_line_is_read():
    buf = LineBuffer(16)
    buf.feed(b"NOOP " + b"x" * 40)
    assert lines_of(buf) == [TOO_LONG]
    buf.feed(b"y" * 40)                          # still the same line: nothing more to say
    assert lines_of(buf) == [] and buf.pending <= 16 + 40
    buf.feed(b"\r\nNOOP\r\n" + b"z" * 20 + b"\n")
    assert lines_of(buf) == [b"NOOP", TOO_LONG]


def test_what_is_held_stays_bounded_by_the_line_limit():
    buf = LineBuffer(2048)
    for _ in range(1000):
        buf.feed(b"a" * 4096)
        lines_of(buf)
        assert buf.pending <= 2048 + 4096


@settings(deadline=None, max_examples=200)
@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20), st.data())
def test_splitting_the_stream_anywhere_gives_the_same_lines(lines, data):
    raw = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    buf = LineBuffer(64)
    got: list[object] = []
    start = 0
    for cut in [*cuts, len(raw)]:
        buf.feed(raw[start:cut])
        start = cut
        got += lines_of(buf)
    assert got == [line[:-1] if line.endswith(b"\r") else line for line in lines]
