"""Failed logins counted across connections: a growing delay and a lock-out.

Cutting a connection off after a few failed passwords (RFC 959 leaves it to the
server; pyftpdlib, vsftpd and ProFTPD all do it) does nothing against a peer that
simply reconnects. :class:`LoginGuard` keeps the failures per account and per
address over a sliding window, shared by every connection of a server: each
failure is answered after a delay that doubles with the failures in the window,
and past a limit the account, or the address, is locked out for a while. A
locked-out login is refused whatever the password, so guessing during a lock-out
learns nothing. Pure: the caller passes the time.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = ["LoginGuard", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """Whether a login may be checked now: *locked* names what is locked out
    ("account alice", "address 192.0.2.7") and *seconds* how long it still is."""

    locked: str | None = None
    seconds: float = 0.0


class _Tally:
    __slots__ = ("failures", "locked_until")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.locked_until = 0.0


class LoginGuard:
    """Failed logins of one server.

    :param window: seconds a failure is remembered.
    :param per_account: failures of one account within the window that lock it out.
    :param per_address: failures from one address within the window that lock it out
        (higher: many users may share an address behind NAT).
    :param lockout: seconds a lock-out lasts.
    :param base_delay: the delay of a first failure; it doubles with each failure in
        the window, up to *max_delay*.
    :param max_keys: accounts and addresses remembered at most (the oldest are forgotten).
    """

    def __init__(self, *, window: float = 600.0, per_account: int = 5, per_address: int = 20,
                 lockout: float = 300.0, base_delay: float = 1.0, max_delay: float = 16.0,
                 max_keys: int = 10_000) -> None:
        self.window = window
        self.per_account = per_account
        self.per_address = per_address
        self.lockout = lockout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_keys = max_keys
        self._tallies: OrderedDict[tuple[str, str], _Tally] = OrderedDict()

    def _tally(self, kind: str, key: str, now: float, create: bool) -> _Tally | None:
        t = self._tallies.get((kind, key))
        if t is None:
            if not create:
                return None
            t = self._tallies[(kind, key)] = _Tally()
            while len(self._tallies) > self.max_keys:
                self._tallies.popitem(last=False)
        else:
            self._tallies.move_to_end((kind, key))
        while t.failures and t.failures[0] <= now - self.window:
            t.failures.popleft()
        return t

    def check(self, account: str, address: str, now: float) -> Verdict:
        """Before checking a password: refused while the account or the address is locked out."""
        for kind, key in (("account", account), ("address", address)):
            t = self._tally(kind, key, now, create=False)
            if t is not None and t.locked_until > now:
                return Verdict(f"{kind} {key}", t.locked_until - now)
        return Verdict()

    def failed(self, account: str, address: str, now: float) -> tuple[float, Verdict]:
        """A password was wrong: the delay to answer after, and a lock-out if this
        failure started one."""
        verdict = Verdict()
        worst = 0
        for kind, key, limit in (("account", account, self.per_account),
                                 ("address", address, self.per_address)):
            t = self._tally(kind, key, now, create=True)
            assert t is not None
            t.failures.append(now)
            worst = max(worst, len(t.failures))
            if len(t.failures) >= limit and t.locked_until <= now:
                t.locked_until = now + self.lockout
                t.failures.clear()
                verdict = Verdict(f"{kind} {key}", self.lockout)
        delay = min(self.max_delay, self.base_delay * 2 ** max(0, worst - 1))
        return delay, verdict

    def succeeded(self, account: str) -> None:
        """A good password outside a lock-out: the account's failures are forgiven (the
        address's are not: one account that works says nothing of the others)."""
        self._tallies.pop(("account", account), None)
