"""Socket options and TCP health for PTP-IP connections (Linux where it matters)."""

from __future__ import annotations

import socket
import struct
from typing import Any

__all__ = ["tcp_trouble", "tune", "write_now"]

_TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
               6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def tune(transport: Any) -> None:
    """TCP_NODELAY (a transaction costs ~1 ms, not ~44 with Nagle and delayed ACK) and
    SO_KEEPALIVE with a one-minute idle time (spec 2.2.3.2 asks for keep-alive)."""
    try:
        transport.setTcpNoDelay(True)
        transport.setTcpKeepAlive(True)
    except (AttributeError, OSError, NotImplementedError):
        pass
    sock = getattr(transport, "socket", None)
    if sock is not None and hasattr(socket, "TCP_KEEPIDLE"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
        except OSError:
            pass


def write_now(transport: Any, chunks: list[bytes]) -> None:
    """Write *chunks* to a TCP transport, sending them at once when nothing is queued
    before them (one ``sendmsg`` of them all) instead of on the reactor's next turn:
    a PTP transaction is a request and an answer, so sending on the next turn costs a
    whole reactor iteration (and two ``epoll_ctl``) per transaction on each side. Whatever
    the socket does not take is queued as :meth:`writeSequence` would. Any other
    transport (TLS, a wrapping protocol's, a test's), one that is closing or aborting, or
    one with bytes queued gets a plain :meth:`writeSequence`."""
    if (not _SENDMSG or not isinstance(transport, _TCP) or getattr(type(transport), "writeSomeData", None) is not _TCP_WRITE
            or getattr(transport, "TLS", False) or getattr(transport, "_aborting", False)
            or transport.dataBuffer or transport._tempDataBuffer or not transport.connected
            or transport.disconnecting or transport._writeDisconnected):
        transport.writeSequence(chunks)
        return
    try:
        sent = transport.socket.sendmsg(chunks)      # gathered: the parts are not joined first
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        sent = 0                           # the reactor's own write notices the error
    if sent < sum(map(len, chunks)):
        transport.write(b"".join(chunks)[sent:])


def _tcp() -> Any:
    from twisted.internet import tcp
    return tcp.Connection


_TCP = _tcp()
_SENDMSG = hasattr(socket.socket, "sendmsg")
_TCP_WRITE = _TCP.writeSomeData


def tcp_trouble(sock: Any) -> str | None:
    """Why the TCP connection of *sock* is dead or dying, from the kernel's TCP_INFO
    (its state, and retransmissions or keep-alive probes going unanswered), or None
    when it looks alive or the platform cannot tell."""
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError as e:
        return f"its socket fails ({e.strerror})"
    state, _ca, retransmits, probes, backoff = struct.unpack_from("5B", info)
    if state != 1:
        return f"its TCP connection is {_TCP_STATES.get(state, state)}"
    if probes >= 2:
        return f"{probes} keep-alive probes went unanswered"
    if retransmits >= 3 or backoff >= 3:
        return f"{max(retransmits, backoff)} retransmissions went unanswered"
    return None
