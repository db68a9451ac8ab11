"""Failed logins across connections (``cccp.wire.logins``), with the time passed in."""

from __future__ import annotations

from cccp.wire.logins import LoginGuard, Verdict


def test_each_failure_in_the_window_doubles_the_delay_up_to_a_cap():
    g = LoginGuard(base_delay=1, max_delay=8, per_account=100, per_address=100)
    delays = [g.failed("alice", "10.0.0.1", now=t)[0] for t in range(6)]
    assert delays == [1, 2, 4, 8, 8, 8]


def test_failures_leave_the_window():
    g = LoginGuard(window=60, base_delay=1, per_account=100, per_address=100)
    g.failed("alice", "10.0.0.1", now=0)
    g.failed("alice", "10.0.0.1", now=1)
    assert g.failed("alice", "10.0.0.1", now=100)[0] == 1


def test_an_account_is_locked_out_whatever_the_address_and_the_password():
    g = LoginGuard(per_account=3, per_address=100, lockout=300)
    for i in range(2):
        assert g.failed("alice", f"10.0.0.{i}", now=i)[1] == Verdict()
    _, verdict = g.failed("alice", "10.0.0.9", now=2)
    assert verdict.locked == "account alice" and verdict.seconds == 300
    assert g.check("alice", "10.0.0.77", now=100).locked == "account alice"    # reconnecting elsewhere
    assert g.check("bob", "10.0.0.77", now=100) == Verdict()                     # others are not
    assert g.check("alice", "10.0.0.77", now=303) == Verdict()                    # it ends


def test_an_address_is_locked_out_for_every_account():
    g = LoginGuard(per_account=100, per_address=4, lockout=60)
    for i, name in enumerate(["a", "b", "c", "d"]):
        g.failed(name, "192.0.2.7", now=i)
    v = g.check("zed", "192.0.2.7", now=10)
    assert v.locked == "address 192.0.2.7" and 49 < v.seconds <= 57
    assert g.check("zed", "192.0.2.8", now=10) == Verdict()


def test_a_good_login_forgives_the_account_not_the_address():
    g = LoginGuard(base_delay=1, per_account=100, per_address=100)
    g.failed("alice", "10.0.0.1", now=0)
    g.failed("alice", "10.0.0.1", now=1)
    g.succeeded("alice")
    assert g.failed("alice", "10.0.0.2", now=2)[0] == 1          # the account starts over
    assert g.failed("bob", "10.0.0.1", now=3)[0] == 4            # the address still counts 3


def test_memory_stays_bounded():
    g = LoginGuard(max_keys=100, per_account=100, per_address=1000)
    for i in range(10_000):
        g.failed(f"user{i}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", now=i)
    assert len(g._tallies) <= 100
