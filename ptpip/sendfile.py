"""The one ``os.sendfile`` writer: a region of a file to a Twisted TCP transport.

The kernel copies the file from the page cache to the socket; Python only frames
it. Both protocols use it: PTP-IP data-in (a Data/End Data header before each
packet) and CCCP ``TYPE I`` RETR (the region as it is). This is the only module
that touches ``tcp.Connection`` internals (its socket, its write buffer and its
producer flags), to keep bytes in order with what Twisted still buffers and to
wait for writability the way Twisted's own producers do; :func:`supported` says
where that is possible (not for TLS, UNIX or in-memory transports: the caller then
streams the file through ``transport.write``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IWriteDescriptor
from zope.interface import implementer

__all__ = ["SendfileStopped", "SendfileWriter", "supported"]

_TCP_INTERNALS = ("socket", "dataBuffer", "offset", "_tempDataLen", "startWriting", "producerPaused")


def supported(transport: Any) -> bool:
    """Whether *transport* is a plain TCP connection that :class:`SendfileWriter` can drive."""
    if not hasattr(os, "sendfile") or not all(hasattr(transport, a) for a in _TCP_INTERNALS):
        return False
    return not (getattr(transport, "TLS", False) or hasattr(transport, "getPeerCertificate"))


class SendfileStopped(Exception):
    """The writer was stopped (the transfer was cancelled or the connection went away)."""


@implementer(IPushProducer, IWriteDescriptor)
class SendfileWriter:
    """Sends *length* bytes of file descriptor *fd* from *offset* to *transport*.

    :param reactor: the reactor the transport runs on (``IReactorFDSet``, ``IReactorTime``).
    :param header: when given, the region is cut into packets of *packet_size*
        bytes and ``header(n, last)`` is written before each (PTP-IP framing);
        a writer stopped in the middle of a packet completes it (with the file's
        bytes, zero-padded if unreadable) so the framing stays intact.
    :param stall_timeout: seconds the socket may stay unwritable before
        *on_stall* is called (0: never).
    :param own_wakeups: the transport does not read (a data connection that only
        sends): the writer then watches the socket for writability itself instead
        of through the transport's write buffer. Never for a transport that reads:
        the reactor keeps one selectable per file descriptor.

    The caller delivers the transport's backpressure to it (it is an
    ``IPushProducer``: register it, or forward to it). :meth:`start` returns a
    Deferred that fires with the byte count, or fails with the ``OSError`` that
    stopped it, or with :class:`SendfileStopped` after :meth:`stopProducing`.
    """

    #: Bytes per sendfile call: small enough that what the kernel copies into the socket
    #: is still in the cache when the receiver on the other core reads it (1 MiB calls
    #: ran a loopback CCCP RETR at ~3.0 GB/s here, 128 KiB at ~3.9 GB/s).
    CHUNK = 128 << 10

    def __init__(self, reactor: Any, transport: Any, fd: int, offset: int, length: int, *,
                 header: Callable[[int, bool], bytes] | None = None, packet_size: int = 1 << 20,
                 stall_timeout: float = 0, on_stall: Callable[[], Any] | None = None,
                 own_wakeups: bool = False) -> None:
        self.reactor = reactor
        self.transport = transport
        self.fd = fd
        self.offset = offset
        self.left = length
        self.sent = 0
        self.header = header
        self.packet_size = packet_size
        self.stall_timeout = stall_timeout
        self.on_stall = on_stall
        self.own_wakeups = own_wakeups
        self.paused = False
        self.stopped = False
        self.done: defer.Deferred[int] = defer.Deferred()
        self._in_packet = 0             # payload bytes still due in the current packet
        self._framed_once = False
        self._watching = False
        self._stall: IDelayedCall | None = None

    def start(self) -> defer.Deferred[int]:
        if not self.paused:
            self._pump()
        return self.done

    # -- IPushProducer -------------------------------------------------------------------
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._cancelStall()
        self._pump()

    def stopProducing(self) -> None:
        self._end(SendfileStopped("stopped"))

    # -- IWriteDescriptor: while the transport neither reads nor writes we watch its socket
    # ourselves, one wake-up and one sendfile per round, as a sendfile server in C does.
    def fileno(self) -> int:
        return int(self.transport.socket.fileno())

    def logPrefix(self) -> str:
        return "SendfileWriter"

    def doWrite(self) -> None:
        self._pump()

    def connectionLost(self, reason: Any) -> None:
        self._end(SendfileStopped("the connection went away"))

    # -- the pump -------------------------------------------------------------------------
    def _pump(self) -> None:
        t = self.transport
        try:
            while not self.paused and not self.stopped:
                if len(t.dataBuffer) - t.offset or t._tempDataLen:
                    self._waitForTwisted()           # Twisted still holds bytes: they go first
                    return
                if self.header is not None and self._in_packet == 0:
                    if self.left == 0 and self._framed_once:
                        break
                    n = min(self.packet_size, self.left)
                    head = self.header(n, n == self.left)
                    self._framed_once = True
                    try:
                        k = t.socket.send(head)
                    except BlockingIOError:
                        k = 0
                    if k < len(head):
                        t.write(head[k:])        # ordered before our next sendfile
                    self._in_packet = n
                    if n == 0:
                        continue
                    if k < len(head):
                        self._waitForTwisted()
                        return
                elif self.header is None and self.left == 0:
                    break
                want = self._in_packet if self.header is not None else min(self.left, self.CHUNK)
                try:
                    k = os.sendfile(t.socket.fileno(), self.fd, self.offset, min(want, self.CHUNK))
                except BlockingIOError:
                    self._waitForSocket()
                    return
                if k == 0:
                    raise OSError(f"the file ended with {self.left} bytes still to send")
                self.offset += k
                self.left -= k
                self.sent += k
                if self.header is not None:
                    self._in_packet -= k
        except OSError as e:
            self._end(e)
            return
        if not self.stopped and self.left == 0:
            self._end(None)

    def _waitForTwisted(self) -> None:
        """Let the transport write what it holds; it resumes its producer (us, or whoever
        forwards to us) once its buffer is empty."""
        self._watch(False)
        self.transport.producerPaused = True
        self.transport.startWriting()
        self._armStall()

    def _waitForSocket(self) -> None:
        # When the transport has emptied its buffer it has stopped writing (and only then
        # do we send), so with own_wakeups the socket is ours to watch.
        if self.own_wakeups:
            self._watch(True)
            self._armStall()
        else:
            self._waitForTwisted()

    def _watch(self, on: bool) -> None:
        if on and not self._watching:
            self.reactor.addWriter(self)
        elif not on and self._watching:
            self.reactor.removeWriter(self)
        self._watching = on

    def _armStall(self) -> None:
        if self.stall_timeout and self.on_stall is not None and self._stall is None:
            self._stall = self.reactor.callLater(self.stall_timeout, self._stalled)

    def _stalled(self) -> None:
        self._stall = None
        if not self.stopped and self.on_stall is not None:
            self.on_stall()

    def _cancelStall(self) -> None:
        if self._stall is not None and self._stall.active():
            self._stall.cancel()
        self._stall = None

    def _completePacket(self) -> None:
        """Stopping mid-packet would break the framing: queue the rest of the packet (at
        most one) through Twisted's buffer, zero-padded if unreadable."""
        if self.header is None or not self._in_packet:
            return
        try:
            rest = os.pread(self.fd, self._in_packet, self.offset)
        except OSError:
            rest = b""
        if not getattr(self.transport, "disconnected", False):
            self.transport.write(rest + bytes(self._in_packet - len(rest)))
        self._in_packet = 0

    def _end(self, error: Exception | None) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._watch(False)
        self._cancelStall()
        if error is not None:
            self._completePacket()
        if getattr(self.transport, "producer", None) is self:
            self.transport.unregisterProducer()
        if error is None:
            self.done.callback(self.sent)
        else:
            self.done.errback(error)
