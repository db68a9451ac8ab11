"""Who may start a PTP-IP connection now: the responder's admission counts, pure.

Three kinds of connection are counted, in total and per address, in constant time:

- *unidentified*: connected, first packet not yet arrived. Each address may hold
  a few at once; one more from a full address evicts the oldest of that address
  (a silent socket), so silent sockets from one address never cost another
  address anything and a real handshake is not refused half-way;
- *pending*: a command channel between its Init Command Request and its event
  channel (a handshake in flight). Beyond ``max_pending`` in total, or
  ``max_pending_per_address`` from one address, Init Command Requests are
  answered BUSY. An event channel for a known connection number is always taken;
- *sessions*: both channels up. ``max_sessions`` counts sessions and pending
  handshakes together; ``max_per_address`` the same from one address.

The factory asks before acknowledging and tells it what happened; the tokens are
whatever the caller uses for a connection.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["Admission", "Decision"]


class Decision(enum.Enum):
    OK = "ok"
    ADDRESS_FULL = "address-full"        # sessions and handshakes from this address at the limit
    PENDING_FULL = "pending-full"        # too many handshakes in flight (in total or from the address)
    SESSIONS_FULL = "sessions-full"      # max_sessions reached: idle sessions may be reclaimed


class _Counter:
    __slots__ = ("by_address", "total")

    def __init__(self) -> None:
        self.total = 0
        self.by_address: dict[str, int] = {}

    def add(self, host: str) -> None:
        self.total += 1
        self.by_address[host] = self.by_address.get(host, 0) + 1

    def remove(self, host: str) -> None:
        n = self.by_address.get(host, 0)
        if n <= 0:
            return
        self.total -= 1
        if n == 1:
            del self.by_address[host]
        else:
            self.by_address[host] = n - 1

    def of(self, host: str) -> int:
        return self.by_address.get(host, 0)


class Admission:
    """The counts of one responder, and its decisions.

    :param max_unidentified_per_address: connections from one address that have not
        sent their first packet (default: twice ``max_pending_per_address``, so that
        that many initiators connecting at once, both channels each, fit; at least 32).
    """

    def __init__(self, *, max_sessions: int = 16, max_per_address: int = 8, max_pending: int = 64,
                 max_pending_per_address: int | None = None, max_unidentified_per_address: int | None = None,
                 max_unidentified: int | None = None) -> None:
        self.max_sessions = max_sessions
        self.max_per_address = max_per_address
        self.max_pending = max_pending
        #: Handshakes in flight from one address (default: what max_pending and
        #: max_per_address allow; lower it to keep one address from taking them all).
        self.max_pending_per_address = (max_pending_per_address if max_pending_per_address is not None
                                        else min(max_pending, max_per_address))
        self.max_unidentified_per_address = (max_unidentified_per_address if max_unidentified_per_address
                                             is not None else max(32, 2 * self.max_pending_per_address))
        self.max_unidentified = (max_unidentified if max_unidentified is not None else
                                 max(256, 4 * max_pending, 2 * self.max_unidentified_per_address))
        self.pending = _Counter()
        self.sessions = _Counter()
        self._unidentified: dict[str, OrderedDict[Hashable, None]] = {}
        self._unidentified_order: OrderedDict[Hashable, str] = OrderedDict()

    # -- unidentified connections ------------------------------------------------------
    @property
    def unidentified(self) -> int:
        return len(self._unidentified_order)

    def connected(self, host: str, token: Hashable) -> list[Hashable]:
        """A new connection; returns the connections to drop to make room for it (the
        oldest silent one of the same address, or of all, when at the limit)."""
        evict: list[Hashable] = []
        mine = self._unidentified.setdefault(host, OrderedDict())
        if len(mine) >= self.max_unidentified_per_address:
            evict.append(next(iter(mine)))
        elif len(self._unidentified_order) >= self.max_unidentified:
            evict.append(next(iter(self._unidentified_order)))
        for old in evict:
            self.identified(old)
        mine = self._unidentified.setdefault(host, OrderedDict())
        mine[token] = None
        self._unidentified_order[token] = host
        return evict

    def identified(self, token: Hashable) -> None:
        """The connection's first packet arrived (or it went away before it)."""
        host = self._unidentified_order.pop(token, None)
        if host is None:
            return
        mine = self._unidentified.get(host)
        if mine is not None:
            mine.pop(token, None)
            if not mine:
                del self._unidentified[host]

    # -- handshakes and sessions ------------------------------------------------------------
    def command(self, host: str) -> Decision:
        """May an Init Command Request from *host* start a handshake now?"""
        if self.sessions.of(host) + self.pending.of(host) >= self.max_per_address:
            return Decision.ADDRESS_FULL
        if self.pending.total >= self.max_pending or self.pending.of(host) >= self.max_pending_per_address:
            return Decision.PENDING_FULL
        if self.sessions.total + self.pending.total >= self.max_sessions:
            return Decision.SESSIONS_FULL
        return Decision.OK

    def describe(self, decision: Decision, host: str) -> str:
        """Why *decision* was taken, for the log."""
        if decision is Decision.ADDRESS_FULL:
            return (f"{self.sessions.of(host)} sessions and {self.pending.of(host)} handshakes from {host} "
                    f"already (--max-per-address {self.max_per_address})")
        if decision is Decision.PENDING_FULL:
            return (f"{self.pending.total} handshakes in flight, {self.pending.of(host)} from {host} "
                    f"(--max-pending {self.max_pending}, {self.max_pending_per_address} per address)")
        if decision is Decision.SESSIONS_FULL:
            return f"{self.sessions.total} sessions already (--max-sessions {self.max_sessions})"
        return "admitted"
