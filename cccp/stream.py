"""Moving audio/video on CCCP data ports: paced senders, framing receivers and
UDP (unicast and multicast) endpoints. The Twisted glue over :mod:`cccp.wire.media`.

A :class:`MediaSender` is the consumer an :class:`~cccp.interfaces.IMediaSource`
writes MPEG2-TS into. It checks the framing, paces the packets by the stream's
PCR (a stored file played in real time; UDP has no backpressure so UDP is always
paced), frames them as raw TS or RTP (RFC 2250 / RFC 4571), and hands them to
an output: a TCP transport or a UDP socket. A :class:`MediaReceiver` does the
reverse for STOR and for the client's RETR.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .wire import rtcp
from .wire.media import (
    RTP_MP2T,
    TS_PACKET,
    TS_PER_RTP,
    Depacketizer,
    MediaFramingError,
    Pacer,
    RFC4571Framer,
    TSFramer,
    TSPacketizer,
    aligned,
    frame_rfc4571,
)

#: How far ahead of real time a paced sender reads its source.
READ_AHEAD = 0.5


def is_multicast(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_multicast
    except ValueError:
        return False


class StreamStopped(Exception):
    """The stream was stopped before its end (ABOR, the data connection went away)."""


class UDPEndpoint(protocol.DatagramProtocol):
    """One UDP data port: sends datagrams to a peer, or receives them.

    :param allowed_host: datagrams from any other host are ignored (and counted).
    """

    # Set when the port starts listening: a udp.Port (IUDPTransport, IMulticastTransport).
    transport: Any

    log = Logger()

    def __init__(self, allowed_host: str | None = None) -> None:
        self.allowed_host = allowed_host
        self.peer: tuple[str, int] | None = None
        self.first_datagram: defer.Deferred[tuple[str, int]] = defer.Deferred()
        self.on_datagram: Callable[[bytes, tuple[str, int]], Any] | None = None
        self.refused = 0
        self.received = 0
        self.sent = 0
        self.port: Any = None
        #: Called once when the endpoint closes.
        self.on_close: Callable[[], None] | None = None

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.allowed_host is not None and addr[0] != self.allowed_host:
            self.refused += 1
            return
        if not self.first_datagram.called:
            self.first_datagram.callback(addr)
        self.received += len(data)
        if self.on_datagram is not None:
            self.on_datagram(data, addr)

    def send(self, datagram: bytes) -> None:
        if self.transport is not None and self.peer is not None:
            try:
                self.transport.write(datagram, self.peer)
                self.sent += len(datagram)
            except OSError as e:       # e.g. ECONNREFUSED from an earlier ICMP: keep streaming
                self.log.debug("UDP send to {peer} failed: {e}", peer=self.peer, e=e)

    def close(self) -> None:
        if self.port is not None:
            self.port.stopListening()
            self.port = None
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()


def listen_udp(reactor: Any, interface: str, allowed_host: str | None = None,
               ports: tuple[int, int] | None = None) -> UDPEndpoint:
    """A UDP endpoint on a port from *ports* (None: any free port)."""
    from twisted.internet import error
    ep = UDPEndpoint(allowed_host)
    last: Exception | None = None
    for port in (range(ports[0], ports[1] + 1) if ports else [0]):
        try:
            ep.port = reactor.listenUDP(port, ep, interface=interface, maxPacketSize=65535)
            return ep
        except error.CannotListenError as e:
            last = e
    raise error.CannotListenError(interface, ports, last)


def multicast_sender(reactor: Any, group: str, port: int, ttl: int = 1,
                     interface: str | None = None, loopback: bool = True) -> UDPEndpoint:
    """A UDP endpoint that sends to a multicast *group* with *ttl* (default 1: this link only)."""
    ep = UDPEndpoint()
    ep.port = reactor.listenMulticast(0, ep, listenMultiple=True)
    ep.transport.setTTL(ttl)
    ep.transport.setLoopbackMode(loopback)
    if interface:
        ep.transport.setOutgoingInterface(interface)
    ep.peer = (group, port)
    return ep


def multicast_receiver(reactor: Any, group: str, port: int, interface: str = "0.0.0.0") -> UDPEndpoint:
    """A UDP endpoint that joins *group* and receives on *port*."""
    ep = UDPEndpoint()
    ep.port = reactor.listenMulticast(port, ep, listenMultiple=True)
    ep.transport.joinGroup(group, interface)
    return ep


class RTCPSession(protocol.DatagramProtocol):
    """RTCP for one RTP transfer (RFC 3550): a sender report and the CNAME every
    :attr:`INTERVAL` seconds (the first with the first RTP packet), BYE at the end, and the
    receivers' reports kept (:attr:`reports`, by reporter SSRC). Over UDP it sends from the
    data port + 1 to the receiver's port + 1 (an ephemeral port when + 1 is taken) and reads
    reports there; over TCP its packets go in the same RFC 4571 framing as the RTP packets
    (``a=rtcp-mux``, RFC 5761: RTCP is told from RTP by its payload type, 200-204)."""

    INTERVAL = 2.0
    #: Receivers whose last report is kept (the ones heard from most recently).
    MAX_REPORTERS = 4
    log = Logger()

    def __init__(self, reactor: Any, sender: MediaSender, cname: str) -> None:
        self.reactor = reactor
        self.sender = sender
        self.cname = cname
        self.reports: dict[int, rtcp.ReportBlock] = {}
        self.sent_reports = 0
        self.port: Any = None
        self.peer: tuple[str, int] | None = None
        self._loop: Any = None

    def start(self) -> None:
        s = self.sender
        if s.udp:
            out = s.output
            host = out.transport.getHost() if getattr(out, "transport", None) is not None else None
            if out.peer is None or host is None:
                return
            self.peer = (out.peer[0], out.peer[1] + 1)
            try:
                self.port = self.reactor.listenUDP(host.port + 1, self, interface=host.host)
            except Exception:
                self.port = self.reactor.listenUDP(0, self, interface=host.host)
        from twisted.internet import task
        self._loop = task.LoopingCall(self.report)
        self._loop.clock = self.reactor
        self._loop.start(self.INTERVAL, now=True)

    def _compound(self) -> bytes:
        s = self.sender
        ssrc, timestamp = s.rtp_clock()
        return (rtcp.sender_report(ssrc, time.time(), timestamp, s.rtp_packets, s.rtp_octets)
                + rtcp.source_description(ssrc, self.cname))

    def _send(self, data: bytes) -> None:
        s = self.sender
        if s.udp:
            if self.port is not None and self.peer is not None:
                try:
                    self.port.write(data, self.peer)
                except OSError as e:
                    self.log.debug("RTCP to {peer} failed: {e}", peer=self.peer, e=e)
        else:
            s._out(frame_rfc4571(data))
        self.sent_reports += 1

    def report(self) -> None:
        if not self.sender.stopped:
            self._send(self._compound())

    def bye(self, reason: str) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
            self._send(self._compound() + rtcp.bye(self.sender.rtp_clock()[0], reason))
        if self.port is not None:
            self.port.stopListening()
            self.port = None

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.peer is not None and addr[0] != self.peer[0]:
            return                                  # only the receiver reports
        self.received(data)

    def received(self, data: bytes) -> None:
        ssrc = self.sender.rtp_clock()[0]
        for block in rtcp.report_blocks(data):
            if block.ssrc == ssrc:
                self.reports.pop(block.reporter, None)
                self.reports[block.reporter] = block
                while len(self.reports) > self.MAX_REPORTERS:     # (SSRCs come from the peer)
                    del self.reports[next(iter(self.reports))]

    def summary(self) -> str:
        """What the receivers said last, for STAT."""
        if not self.reports:
            return f"RTCP: {self.sent_reports} sender reports, no receiver report"
        parts = [f"receiver {r:08X} lost {b.loss * 100:.1f} % ({b.cumulative_lost} packets), "
                 f"jitter {b.jitter / 90:.1f} ms" for r, b in self.reports.items()]
        return f"RTCP: {self.sent_reports} sender reports; " + "; ".join(parts)


class RTCPReader:
    """What the receiver of RTP over TCP sends back on the data connection: RFC 4571
    frames, of which the RTCP ones (receiver reports) go to the sender's RTCP session and
    anything else is dropped (nothing is kept but one frame in part, 64 KiB at most)."""

    def __init__(self, sender: MediaSender) -> None:
        self.sender = sender
        self.framer = RFC4571Framer(minimum=8)
        self.ignored = 0

    def write(self, data: bytes) -> None:
        try:
            frames = self.framer.feed(data)
        except MediaFramingError:
            self.framer = RFC4571Framer(minimum=8)     # not RFC 4571 framing: drop it all
            self.ignored += len(data)
            return
        for frame in frames:
            if rtcp.is_rtcp(frame) and self.sender.rtcp is not None:
                self.sender.rtcp.received(frame)
            else:
                self.ignored += len(frame)


@implementer(IConsumer, IPushProducer)
class MediaSender:
    """Sends TS written into it over TCP or UDP, as TS or RTP, paced or not.

    :param output: a TCP transport (``write``) or a :class:`UDPEndpoint`.
    :param framing: ``"ts"`` or ``"rtp"``. :param per_datagram: TS packets per UDP datagram.
    :param paced: send each packet when the PCR says (real time).
    :param rtp_input: the source already writes RTP packets (a live RTP encoder).
    """

    log = Logger()

    def __init__(self, reactor: Any, output: Any, *, udp: bool, framing: str = "ts",
                 per_datagram: int = 7, paced: bool = True, rtp_input: bool = False) -> None:
        self.reactor = reactor
        self.output = output
        self.udp = udp
        self.framing = framing
        self.per_datagram = per_datagram
        self.paced = paced
        self.rtp_input = rtp_input
        self.framer = TSFramer()
        self.pacer = Pacer()
        self.packetizer = TSPacketizer(TS_PER_RTP) if framing == "rtp" and not rtp_input else None
        self._queue: deque[tuple[float, bytes]] = deque()
        self._start: float | None = None
        self._timer: Any = None
        self._producer: Any = None
        self._streaming = False
        self._producer_done = False
        self._output_paused = False
        self._udp_pending = b""
        self._scheduling = False
        self.sent = 0
        #: Seconds the last paced chunk went out after it was due (metrics).
        self.lag = 0.0
        self.rtp_packets = 0
        self.rtp_octets = 0
        #: RTCP of an RTP transfer (started with its first packet; :meth:`start_rtcp`).
        self.rtcp: RTCPSession | None = None
        self._cname: str | None = None
        #: The SSRC and RTP timestamp of the last RTP packet the source made, and when.
        self._last_rtp: tuple[int, int, float] | None = None
        self.read_ahead = READ_AHEAD
        self.done: defer.Deferred[int] = defer.Deferred()
        self.error: BaseException | None = None
        self.stopped = False

    # -- IConsumer (the source writes into us) -----------------------------------
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._producer, self._streaming = producer, streaming
        # a source that must answer commands soon (a tape) asks to be read less far ahead
        self.read_ahead = getattr(producer, "read_ahead", READ_AHEAD)

    def unregisterProducer(self) -> None:
        self._producer = None

    def write(self, data: bytes) -> None:
        if self.stopped:
            return
        if self.rtp_input:
            self._emit(0.0, data)            # one RTP packet per write, already timed by the encoder
            return
        try:
            packets = self.framer.feed(data)
        except MediaFramingError as e:
            self.fail(e)
            return
        if not packets:
            return
        if self.paced:
            self._queue.extend(self.pacer.feed(packets))
            if not self._scheduling:
                self._schedule()
        else:
            self._emit(0.0, packets)

    def sourceDone(self, result: Any = None) -> None:
        """The source has written everything (call with a Failure if it failed)."""
        if isinstance(result, Failure) and not self.stopped:
            self.fail(result.value or Exception("the media source failed"))
            return
        self._producer_done = True
        if self.paced:
            for due, chunk in self.pacer.flush():
                self._queue.append((due, chunk))
        self._schedule()

    # -- IPushProducer (a TCP transport's backpressure) ---------------------------------
    def pauseProducing(self) -> None:
        self._output_paused = True
        if not self.paced and self._producer is not None and self._streaming:
            self._producer.pauseProducing()

    def resumeProducing(self) -> None:
        self._output_paused = False
        if not self.paced and self._producer is not None and self._streaming:
            self._producer.resumeProducing()
        self._schedule()

    def stopProducing(self) -> None:
        """The TCP transport went away."""
        self.stop()

    # -- pacing --------------------------------------------------------------------
    def _now(self) -> float:
        if self._start is None:
            self._start = self.reactor.seconds()
        return self.reactor.seconds() - self._start

    def _schedule(self) -> None:
        if self.stopped or self._scheduling:
            return
        self._scheduling = True
        try:
            self._scheduleOnce()
        finally:
            self._scheduling = False

    def _scheduleOnce(self) -> None:
        now = self._now()
        while self._queue and (not self.paced or self._queue[0][0] <= now + 0.002) and not self._output_paused:
            due, chunk = self._queue.popleft()
            if self.paced:
                self.lag = max(0.0, now - due)
            self._emit(due, chunk)
        self._pull(now)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._queue and not self._output_paused:
            delay = max(0.0, self._queue[0][0] - now) if self.paced else 0.0
            self._timer = self.reactor.callLater(delay, self._schedule)
        elif not self._queue and self._producer_done:
            self._finish()

    def _pull(self, now: float) -> None:
        """Ask the source for more while less than :attr:`read_ahead` seconds are queued."""
        if self._producer is None or self._producer_done or self._output_paused:
            return
        ahead = (self._queue[-1][0] - now) if self._queue else 0.0
        if self._streaming:
            if ahead > self.read_ahead:
                self._producer.pauseProducing()
            else:
                self._producer.resumeProducing()
            return
        guard = 0
        while ahead <= self.read_ahead and self._producer is not None and not self._producer_done and guard < 64:
            self._producer.resumeProducing()           # a pull producer writes one chunk
            guard += 1
            ahead = (self._queue[-1][0] - now) if self._queue else 0.0
            if not self.paced:
                break

    # -- output ------------------------------------------------------------------------
    def start_rtcp(self, cname: str) -> None:
        """Send RTCP (with this CNAME) once RTP goes out: of the RTP we packetise, or of
        the RTP packets the source makes (an encoder's, a camera's JPEGs)."""
        if self.framing == "rtp":
            self._cname = cname

    def rtp_clock(self) -> tuple[int, int]:
        """The SSRC of the RTP going out and its RTP timestamp now (90 kHz: every payload
        type sent here, RFC 3551)."""
        if self.packetizer is not None:
            return self.packetizer.ssrc, self.packetizer.timestamp(self._now())
        if self._last_rtp is None:
            return 0, 0
        ssrc, stamp, at = self._last_rtp
        return ssrc, (stamp + round((self.reactor.seconds() - at) * 90000)) & 0xFFFFFFFF

    def _emit(self, due: float, chunk: bytes) -> None:
        if self.framing == "rtp":
            if self.rtp_input:
                packets = [chunk]
                if len(chunk) >= 12:
                    self._last_rtp = (int.from_bytes(chunk[8:12], "big"), int.from_bytes(chunk[4:8], "big"),
                                      self.reactor.seconds())
            else:
                packets = self.packetizer.packetize(due, chunk)  # type: ignore[union-attr]
            for p in packets:
                self.rtp_packets += 1
                self.rtp_octets += len(p) - 12
                self._out(p if self.udp else frame_rfc4571(p))
            if packets and self._cname is not None and self.rtcp is None:
                self.rtcp = RTCPSession(self.reactor, self, self._cname)
                self.rtcp.start()
        elif self.udp:
            size = self.per_datagram * TS_PACKET
            data = self._udp_pending + chunk
            whole = len(data) // size * size
            for i in range(0, whole, size):
                self._out(data[i:i + size])
            self._udp_pending = data[whole:]
        else:
            self._out(chunk)

    def _out(self, data: bytes) -> None:
        self.sent += len(data)
        if self.udp:
            self.output.send(data)
        else:
            self.output.write(data)

    def _finish(self) -> None:
        if self.done.called:
            return
        if self.packetizer is not None:
            for p in self.packetizer.flush(self._now()):
                self._out(p if self.udp else frame_rfc4571(p))
        if self._udp_pending:
            self._out(self._udp_pending)
            self._udp_pending = b""
        if self.rtcp is not None:
            self.rtcp.bye("end of stream")
        self.stopped = True
        self.done.callback(self.sent)

    def fail(self, error: BaseException) -> None:
        self.error = error
        if not self.done.called:
            self.done.errback(error)
        self.stop()

    def stop(self) -> None:
        """Stop at once (ABOR, a lost connection): the source is stopped too, and
        :attr:`done` fails with :class:`StreamStopped` if the stream had not ended."""
        if self.stopped and self.done.called:
            return
        if self.rtcp is not None and not self.stopped:
            self.rtcp.bye("stopped")
        self.stopped = True
        if not self.done.called:
            self.done.errback(StreamStopped(f"stopped after {self.sent} bytes"))
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._queue.clear()
        if self._producer is not None:
            try:
                self._producer.stopProducing()
            except Exception:
                # a source that cannot stop cleanly must not break stopping the stream
                self.log.failure("stopping the media source failed")
            self._producer = None


@implementer(IConsumer)
class MediaReceiver:
    """Takes framed media from a data port and writes the payload to *sink*.

    ``framing`` is ``"ts"`` (validated and resynchronised TS), ``"rtp"`` (RTP in
    RFC 4571 framing on TCP, or one RTP packet per datagram on UDP: PT 33 is
    written as TS, other payload types as RFC 4571 frames) or ``"raw"``.

    A *strict* receiver (the server's STOR) takes no garbage on TCP: a byte where a
    TS packet should start and none does fails the transfer at once. Call
    :meth:`finish` at the end: it fails (:class:`MediaFramingError`) when what came
    is not a whole number of packets or holds no packet at all.
    """

    def __init__(self, sink: Any, *, framing: str, udp: bool, payload_types: tuple[int, ...] = (),
                 strict: bool = False) -> None:
        self.sink = sink
        self.framing = framing
        self.udp = udp
        self.framer = TSFramer(strict=strict)
        self.rtp_framer = RFC4571Framer()
        self.depacketizer = Depacketizer(payload_types)
        self.bad_datagrams = 0
        self.rtcp_packets = 0
        self.bytes = 0
        #: Why writing to the sink failed (a full disk...); datagrams after that are dropped.
        self.error: Exception | None = None
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        if hasattr(self.sink, "registerProducer"):
            self.sink.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        """Bytes from a TCP data connection."""
        if self.framing == "raw":
            self._sink(data)
        elif self.framing == "ts":
            self._sink(self.framer.feed(data))
        else:
            for raw in self.rtp_framer.feed(data):
                self._rtp(raw)

    def datagram(self, data: bytes, addr: Any = None) -> None:
        """One UDP datagram."""
        if self.error is not None:
            return
        try:
            if self.framing == "rtp":
                self._rtp(data)
            elif self.framing == "ts":
                if not aligned(data):
                    raise MediaFramingError(f"a datagram of {len(data)} bytes is not whole TS packets")
                self._sink(data)
            else:
                self._sink(data)
        except MediaFramingError:
            self.bad_datagrams += 1          # UDP: drop the bad datagram, keep the stream
        except Exception as e:               # the sink failed: the recording is lost
            self.error = e

    def finish(self) -> None:
        """The data has ended: raise :class:`MediaFramingError` unless it was whole
        packets, at least one of them (or the error that stopped the sink)."""
        if self.error is not None:
            raise self.error
        if self.framing == "raw":
            return
        if self.udp:
            if self.bytes == 0:
                what = "RTP" if self.framing == "rtp" else "MPEG2-TS"
                dropped = f" ({self.bad_datagrams} bad datagrams dropped)" if self.bad_datagrams else ""
                raise MediaFramingError(f"nothing to store: no {what} datagram arrived{dropped}")
            return
        if self.framing == "ts":
            left, whole = self.framer.pending, self.framer.packets
            if left and not whole:
                raise MediaFramingError(
                    f"not an MPEG2-TS stream: {left} bytes are less than one {TS_PACKET}-byte TS packet")
            if left:
                raise MediaFramingError(
                    f"not an MPEG2-TS stream: the last {left} bytes do not make a whole {TS_PACKET}-byte TS packet")
            if not whole:
                raise MediaFramingError("nothing to store: the upload held no MPEG2-TS packet")
        else:
            left, whole = self.rtp_framer.pending, self.rtp_framer.packets
            if left and not whole:
                raise MediaFramingError(f"not an RTP stream: {left} bytes do not make a whole RTP packet")
            if left:
                raise MediaFramingError(f"not an RTP stream: the last {left} bytes do not make a whole RTP packet")
            if not whole:
                raise MediaFramingError("nothing to store: the upload held no RTP packet")
            if not self.bytes:
                raise MediaFramingError("nothing to store: the upload's RTP packets carried no payload")

    def _rtp(self, raw: bytes) -> None:
        if rtcp.is_rtcp(raw):
            self.rtcp_packets += 1                  # RTCP muxed with the RTP (RFC 5761): not media
            return
        payload = self.depacketizer.payload(raw)
        if RTPPacketType(raw) == RTP_MP2T:
            self._sink(payload)
        else:
            self._sink(frame_rfc4571(raw))

    def _sink(self, data: bytes) -> None:
        if data:
            self.bytes += len(data)
            self.sink.write(data)


def RTPPacketType(raw: bytes) -> int:
    return raw[1] & 0x7F


__all__ = [
    "MediaReceiver",
    "MediaSender",
    "Pacer",
    "UDPEndpoint",
    "is_multicast",
    "listen_udp",
    "multicast_receiver",
    "multicast_sender",
]
