"""The responder's admission counts (``ptpip.admission``), pure."""

from __future__ import annotations

from ptpip.admission import Admission, Decision


def test_handshakes_are_limited_in_total_and_per_address():
    a = Admission(max_sessions=100, max_per_address=100, max_pending=3, max_pending_per_address=2)
    assert a.command("h1") is Decision.OK
    a.pending.add("h1")
    a.pending.add("h1")
    assert a.command("h1") is Decision.PENDING_FULL          # the address's share
    assert a.command("h2") is Decision.OK
    a.pending.add("h2")
    assert a.command("h3") is Decision.PENDING_FULL          # the total
    a.pending.remove("h1")
    a.sessions.add("h1")
    assert a.command("h3") is Decision.OK


def test_sessions_and_handshakes_count_against_the_limits_together():
    a = Admission(max_sessions=2, max_per_address=2, max_pending=10)
    a.sessions.add("h1")
    a.pending.add("h1")
    assert a.command("h1") is Decision.ADDRESS_FULL
    assert a.command("h2") is Decision.SESSIONS_FULL
    assert a.describe(Decision.SESSIONS_FULL, "h2") == "1 sessions already (--max-sessions 2)"


def test_a_full_address_makes_room_by_dropping_its_oldest_silent_connection():
    a = Admission(max_unidentified_per_address=2)
    assert a.connected("h1", "a") == [] and a.connected("h1", "b") == []
    assert a.connected("h2", "x") == []                      # other addresses unaffected
    assert a.connected("h1", "c") == ["a"]
    a.identified("b")                                        # b spoke
    assert a.connected("h1", "d") == []
    assert a.unidentified == 3                               # c, d and x


def test_the_total_of_silent_connections_is_bounded_too():
    a = Admission(max_unidentified_per_address=100, max_unidentified=3)
    for i, host in enumerate(["h1", "h2", "h3"]):
        assert a.connected(host, i) == []
    assert a.connected("h4", 3) == [0]


def test_counts_never_go_below_zero():
    a = Admission()
    a.pending.remove("nobody")
    a.identified("unknown")
    assert a.pending.total == 0 and a.unidentified == 0
