"""Socket options and TCP health for PTP-IP connections (Linux where it matters)."""

from __future__ import annotations

import socket
import struct
from typing import Any

__all__ = ["tcp_trouble", "tune"]

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
