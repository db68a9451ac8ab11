"""The data side of one CCCP control connection: its data port and its transfer.

:class:`Transfers` opens data ports (PASV listeners, PORT connections, UDP ports
and multicast groups in MODE P, with the bounce and foreign-address checks) and
runs the LIST/NLST, RETR, STOR and ABOR lifecycles over them. It runs at most one
transfer at a time, and a transfer never outlives its control connection:
:meth:`Transfers.close` ends every transfer and listener it started.

Each transfer is run by a Deferred that fires with its final reply (226, 426,
451, ...) or None when ABOR answers for it; the control connection sends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.python.failure import Failure

from ptpip import sendfile

from .data import CountingConsumer, DataProtocol, PassiveFactory, connect_active, listen_passive
from .devices import FileMediaSource
from .events import EVENTS_PATH
from .interfaces import IMediaSource, IRecording
from .stream import (
    MediaReceiver,
    MediaSender,
    RTCPReader,
    StreamStopped,
    UDPEndpoint,
    is_multicast,
    listen_udp,
    multicast_receiver,
    multicast_sender,
)
from .wire.commands import format_host_port
from .wire.errors import ParameterNotImplemented, RemoteProtocolError, SyntaxErrorInArguments
from .wire.events import transfer_ended, transfer_started
from .wire.media import MediaFramingError
from .wire.session import Framing, TransferPlan
from .wire.ts import TSError

__all__ = ["Transfer", "Transfers"]

Reply = tuple[int, str]


def _code(f: Failure) -> int:
    """The reply that ends a transfer the device refused: its own code (452 for a full
    disk) where it names one, else 451."""
    code = getattr(f.value, "code", None)
    return code if isinstance(code, int) and 400 <= code < 600 else 451



#: The kernel's send buffer for a live stream on TCP (Linux doubles it): a viewer this far
#: behind (under a second at a few Mbit/s) misses pictures rather than getting them late.
LIVE_SEND_BUFFER = 128 << 10


def _live_send_buffer(transport: Any) -> None:
    import socket
    try:
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LIVE_SEND_BUFFER)
    except (AttributeError, OSError):
        pass                                   # not a socket (a test transport, TLS...)

class Control(Protocol):
    """What the transfers need of their control connection."""

    factory: Any
    transport: Any
    peer_host: str | None

    def reply(self, code: int, text: str | list[str]) -> None: ...

    def transferEnded(self) -> None: ...


@dataclass
class Transfer:
    """One LIST, NLST, RETR or STOR in progress."""

    verb: str
    path: str
    data: Any                       # a DataProtocol (TCP) or a UDPEndpoint
    started: float
    udp: bool = False
    counter: CountingConsumer | None = None
    pump: sendfile.SendfileWriter | None = None
    source: Any = None
    recording: Any = None
    sender: MediaSender | None = None
    receiver: MediaReceiver | None = None
    aborted: bool = False
    failure: Failure | None = None  # why the source failed, if it did
    finished: defer.Deferred[Any] | None = None   # a UDP recording: fires when ABOR ends it
    counted: bool = False           # in the metrics already

    @property
    def transferred(self) -> int:
        if self.pump is not None:
            return self.pump.sent
        if self.sender is not None:
            return self.sender.sent
        if self.receiver is not None:
            return self.receiver.bytes
        if self.counter is not None:
            return self.counter.count
        return int(self.data.received)

    def close_data(self, abort: bool = False) -> None:
        if not self.udp and abort:
            self.data.abort()
        else:
            self.data.close()


class Transfers:
    """The data port and the transfer of one control connection."""

    log = Logger()

    def __init__(self, control: Control) -> None:
        self.control = control
        self.current: Transfer | None = None
        self._passive: PassiveFactory | UDPEndpoint | None = None
        self._active: tuple[str, int] | None = None
        #: A transfer waiting for its data connection: (the Deferred of that connection,
        #: what undoes it if it never starts).
        self._opening: tuple[defer.Deferred[Any], Callable[[], None]] | None = None
        self.closed = False

    @property
    def _factory(self) -> Any:
        return self.control.factory

    # -- data ports -----------------------------------------------------------------
    def forgetPorts(self) -> None:
        """Drop a PASV listener (and a connection it accepted) and a PORT address that
        no transfer used."""
        self._active = None
        passive, self._passive = self._passive, None
        if passive is None:
            return
        if isinstance(passive, UDPEndpoint):
            passive.close()
            return
        passive.stop()
        passive.accepted.addCallback(lambda p: p.abort())
        passive.accepted.addErrback(lambda f: None)

    def port(self, host: str, port: int, udp: bool) -> Reply:
        """PORT: only to the control connection's own address and to ports ≥ 1024
        (no bounce), or to a multicast group in MODE P where allowed."""
        peer = self.control.peer_host
        if udp and is_multicast(host):
            if not self._factory.multicast_ok:
                raise SyntaxErrorInArguments(f"Multicast group {host} refused: multicast is not enabled here")
        elif host != peer and not self._factory.allow_foreign_port:
            self.log.warn("{peer}: refused PORT to foreign address {host}:{port}", peer=peer, host=host, port=port)
            raise SyntaxErrorInArguments(f"Rejected data connection to foreign address {host}:{port}")
        if port < 1024:
            raise SyntaxErrorInArguments(f"Rejected data connection to privileged port {port}")
        self.forgetPorts()
        self._active = (host, port)
        return 200, f"PORT command successful{' (UDP)' if udp else ''}"

    def passive(self, udp: bool) -> Reply:
        """PASV: listen (TCP, or UDP in MODE P) for the control connection's peer only."""
        self.forgetPorts()
        local = self.control.transport.getHost()
        reactor, peer, ports = self._factory.reactor, self.control.peer_host, self._factory.passive_ports
        try:
            if udp:
                self._passive = listen_udp(reactor, local.host, peer, ports)
            else:
                self._passive = listen_passive(reactor, local.host, peer, ports)
        except error.CannotListenError:
            return 425, "Can't open passive connection: no free port in the passive range"
        shown = self._factory.masquerade or local.host
        return 227, f"Entering Passive Mode ({format_host_port(shown, self._passive.port.getHost().port)})"

    def _openData(self) -> defer.Deferred[DataProtocol]:
        """The TCP data connection of MODE S (PASV accepted or PORT connected)."""
        factory = self._factory
        if isinstance(self._passive, PassiveFactory):
            passive, self._passive = self._passive, None
            d = passive.accepted
            d.addTimeout(factory.data_timeout, factory.reactor)

            def stop(result: Any) -> Any:
                passive.stop()
                return result
            return d.addBoth(stop)
        if self._active is not None:
            host, port = self._active
            self._active = None
            return connect_active(factory.reactor, host, port, factory.data_timeout,
                                  bind=self.control.transport.getHost().host)
        return defer.fail(RemoteProtocolError("Use PORT or PASV first", 425))

    def _openUDP(self, sending: bool) -> defer.Deferred[UDPEndpoint]:
        """The UDP data port of MODE P. Sending: to the PORT address, or to whoever sends
        the first datagram to our PASV port. Receiving: on the PASV port, or on a multicast
        group named by PORT."""
        factory = self._factory
        reactor = factory.reactor
        if isinstance(self._passive, UDPEndpoint):
            ep, self._passive = self._passive, None
            if not sending:
                return defer.succeed(ep)
            d = ep.first_datagram
            d.addTimeout(factory.data_timeout, reactor)

            def learned(addr: tuple[str, int]) -> UDPEndpoint:
                ep.peer = addr
                return ep

            def never(f: Failure) -> Failure:
                ep.close()
                return f
            return d.addCallbacks(learned, never)
        if self._active is not None:
            host, port = self._active
            self._active = None
            if is_multicast(host):
                if sending:
                    # One stream per group and port: a second one would interleave with it
                    # (the same live source's twice: the same SSRC and sequence numbers).
                    busy = factory.multicast_sending
                    if (host, port) in busy:
                        return defer.fail(RemoteProtocolError(
                            f"Can't open data connection: another transfer is sending to {host} port {port}; "
                            "its receivers get that one", 425))
                    ep = multicast_sender(reactor, host, port, ttl=factory.multicast_ttl,
                                          interface=factory.multicast_interface)
                    busy.add((host, port))
                    ep.on_close = lambda: busy.discard((host, port))
                    return defer.succeed(ep)
                return defer.succeed(multicast_receiver(reactor, host, port, factory.multicast_interface or "0.0.0.0"))
            if not sending:
                return defer.fail(ParameterNotImplemented(
                    "STOR in MODE P needs PASV (or PORT with a multicast group to record)"))
            ep = listen_udp(reactor, self.control.transport.getHost().host)
            ep.peer = (host, port)
            return defer.succeed(ep)
        return defer.fail(RemoteProtocolError("Use PORT or PASV first", 425))

    # -- the lifecycle ------------------------------------------------------------------
    def _start(self, verb: str, path: str, kind: str, run: Callable[[Transfer], defer.Deferred[Any]],
               udp: bool = False, sending: bool = True, size: int | None = None,
               undo: Callable[[], None] = lambda: None) -> defer.Deferred[Any]:
        """Open the data port, answer 150, run the transfer; fires with the final reply.

        With *size* the 150 reply ends in ``(N bytes)``, as FTP servers say it and as
        curl and our client read it for progress. *undo* throws away what was prepared
        (a recording) when the transfer never starts.
        """
        if self.current is not None:
            raise RemoteProtocolError(f"Bad sequence: {self.current.verb} is still in progress", 503)
        if self._opening is not None:
            raise RemoteProtocolError("Can't open data connection: another transfer is waiting for its own", 425)
        if self.closed:
            raise RemoteProtocolError("the control connection is closing", 421)

        def failed(f: Failure) -> Any:
            self._opening = None
            undo()
            if f.check(defer.CancelledError):
                return None                  # the control connection went away
            if f.check(RemoteProtocolError):
                return f
            return 425, f"Can't open data connection: {f.getErrorMessage()}"

        def opened(data: Any) -> defer.Deferred[Any]:
            self._opening = None
            if self.closed:
                data.close() if udp else data.abort()
                undo()
                return defer.succeed(None)
            t = self.current = Transfer(verb, path, data, time.monotonic(), udp=udp)
            self._publish(t, None)
            where = f" to {data.peer[0]}:{data.peer[1]} (UDP)" if udp and data.peer else (" (UDP)" if udp else "")
            count = f" ({size} bytes)" if size is not None else ""
            self.control.reply(150, f"Opening {kind} mode data connection for {path}{where}{count}")

            def broken(f: Failure) -> Failure:
                self._finish(t, None)
                t.close_data(abort=True)
                return f
            return run(t).addErrback(broken)

        d = self._openUDP(sending) if udp else self._openData()
        if not d.called:
            self._opening = (d, undo)
        return d.addCallbacks(opened, failed)

    def listing(self, verb: str, path: str, lines: list[str]) -> defer.Deferred[Any]:
        """LIST or NLST: *lines* over a TCP data connection in ASCII."""
        text = "".join(line + "\r\n" for line in lines).encode()

        def run(t: Transfer) -> defer.Deferred[Any]:
            t.counter = CountingConsumer(t.data.transport)
            t.counter.write(text)
            t.data.close()
            return t.data.closed_d.addCallback(self._ended, t)
        return self._start(verb, path, "ASCII", run)

    def retrieve(self, path: str, source: IMediaSource, plan: TransferPlan) -> defer.Deferred[Any]:
        """RETR of *source*: as it is (TYPE I of a stored file; the kernel sends it where
        it can), or framed and paced as TS or RTP."""
        live = bool(source.live) or source.length is None
        # as it is: a stored file in TYPE I, and text (the status feed) in any TYPE
        raw = plan.framing is Framing.RAW and (not live or bool(getattr(source, "text", False)))
        udp = plan.udp

        def run(t: Transfer) -> defer.Deferred[Any]:
            t.source = source
            if raw:
                done = self._sendRaw(t, source)
            else:
                output = t.data if udp else t.data.transport
                sender = t.sender = MediaSender(
                    self._factory.reactor, output, udp=udp, framing="rtp" if plan.framing is Framing.RTP else "ts",
                    per_datagram=plan.per_datagram, paced=not source.live, rtp_input=source.rtp_input)
                if not udp:
                    if live:
                        _live_send_buffer(t.data.transport)
                    t.data.transport.registerProducer(sender, True)
                here = t.data.transport.getHost() if getattr(t.data, "transport", None) is not None else None
                sender.start_rtcp(f"cccp@{getattr(here, 'host', 'localhost')}")
                if not udp and plan.framing is Framing.RTP:
                    # receiver reports come back muxed in the same framing (RFC 4571, 5761)
                    t.data.receiveInto(RTCPReader(sender))
                started = defer.maybeDeferred(source.startProducing, sender)
                started.addBoth(sender.sourceDone)
                sender._schedule()
                done = sender.done

            def sent(result: Any) -> Any:
                if isinstance(result, Failure) and not t.aborted and not result.check(
                        StreamStopped, sendfile.SendfileStopped):
                    self.log.failure("RETR {path} failed", result, path=path)
                    t.failure = result
                if udp:
                    t.close_data()
                    return None
                if t.sender is not None:
                    t.data.transport.unregisterProducer()
                t.data.close()
                return t.data.closed_d
            done.addBoth(sent)
            return done.addCallback(self._ended, t)

        kind = "BINARY" if raw else plan.kind
        size = source.length if raw and not udp else None
        try:
            return self._start("RETR", path, kind, run, udp=udp, sending=True, size=size,
                               undo=source.stopProducing)
        except BaseException:
            source.stopProducing()
            raise

    def _sendRaw(self, t: Transfer, source: IMediaSource) -> defer.Deferred[Any]:
        transport = t.data.transport
        if isinstance(source, FileMediaSource) and source.sendfile_ok() and sendfile.supported(transport) \
                and transport.producer is None:
            # A stored file on a plain TCP data connection: the kernel copies it (sendfile).
            fd, offset, length = source.take_file()
            pump = t.pump = sendfile.SendfileWriter(self._factory.reactor, transport, fd, offset, length,
                                                    own_wakeups=True)
            transport.registerProducer(pump, True)

            def closed(result: Any) -> Any:
                source.close()
                return result
            return pump.start().addBoth(closed)
        t.counter = CountingConsumer(transport)
        return defer.maybeDeferred(source.startProducing, t.counter)

    def store(self, path: str, recording: IRecording, plan: TransferPlan) -> defer.Deferred[Any]:
        """STOR into *recording*: it lands on a clean end (whole TS or RTP packets in a
        media TYPE), and is thrown away otherwise."""
        udp = plan.udp
        framing = plan.framing

        def run(t: Transfer) -> defer.Deferred[Any]:
            t.recording = recording
            if framing is Framing.RAW:
                t.data.receiveInto(recording)
            else:
                t.receiver = MediaReceiver(recording, framing=framing.value, udp=udp,
                                           payload_types=plan.payload_types, strict=True)
                if udp:
                    t.data.on_datagram = t.receiver.datagram
                    t.finished = defer.Deferred()
                    return t.finished        # a UDP recording ends with ABOR
                t.data.receiveInto(t.receiver)
            return t.data.closed_d.addCallback(self._stored, t)

        def never_started(f: Failure) -> Failure:
            recording.abort()
            return f
        try:
            d = self._start("STOR", path, plan.kind, run, udp=udp, sending=False, undo=recording.abort)
        except BaseException:
            recording.abort()                  # refused before it started: nothing is left
            raise
        return d.addErrback(never_started)

    def _media_error(self) -> None:
        """A STOR refused because what came is not the media its TYPE says (metrics)."""
        metrics = getattr(self._factory, "metrics", None)
        if metrics is not None:
            metrics.media_errors.inc()

    def _stored(self, reason: BaseException, t: Transfer) -> Any:
        clean = isinstance(reason, error.ConnectionDone) and t.data.failure is None
        if t.data.failure is not None and t.data.failure.check(MediaFramingError, TSError):
            self._media_error()
        if t.aborted or not clean:
            t.recording.abort()
            return self._ended(reason, t)
        return self._commit(t)

    def _commit(self, t: Transfer) -> defer.Deferred[Reply | None]:
        """Land the recording (a store may take its time, e.g. an upload to a camera).

        In a media TYPE the data must have been whole TS (or RTP) packets, at least
        one: otherwise the recording is thrown away with 451 and a file of that name
        stays as it was. TYPE I stores any bytes, none included, as FTP does.
        """
        if t.receiver is not None:
            try:
                t.receiver.finish()
            except Exception as e:
                t.recording.abort()
                self.log.info("STOR {path} refused: {e}", path=t.path, e=e)
                self._media_error()
                return defer.succeed(self._finish(t, (451, f"Requested action aborted: {e}")))

        def failed(f: Failure) -> Reply | None:
            t.recording.abort()
            if t.receiver is not None and (f.check(TSError, MediaFramingError) or _code(f) == 451):
                self._media_error()          # e.g. a recording of another programme onto the tape
            if f.check(RemoteProtocolError):
                self.log.warn("STOR {path} refused: {e}", path=t.path, e=f.value)
            else:
                self.log.failure("STOR {path}: commit failed", f, path=t.path)
            return self._finish(t, (_code(f), f"Requested action aborted: {f.getErrorMessage()}"))

        def landed(_: Any) -> Reply | None:
            extra = ""
            if t.receiver is not None and (t.receiver.depacketizer.lost or t.receiver.bad_datagrams):
                extra = (f" ({t.receiver.depacketizer.lost} RTP packets lost, "
                         f"{t.receiver.bad_datagrams} bad datagrams dropped)")
            return self._finish(t, (226, f"Transfer complete: {t.transferred} bytes stored in {t.path}{extra}"))
        return defer.maybeDeferred(t.recording.commit).addCallbacks(landed, failed)

    def _ended(self, reason: Any, t: Transfer) -> Reply | None:
        if t.aborted:
            return self._finish(t, None)          # ABOR answers for it
        data_failure = None if t.udp else t.data.failure
        if data_failure is not None:
            return self._finish(t, (_code(data_failure), f"Requested action aborted: {data_failure.getErrorMessage()}"))
        if t.failure is not None:
            return self._finish(t, (451, f"Requested action aborted: {t.failure.getErrorMessage()}"))
        if isinstance(reason, BaseException) and not isinstance(reason, error.ConnectionDone):
            return self._finish(t, (426, f"Connection closed; transfer aborted: {reason}"))
        if t.verb == "RETR" and t.sender is None and t.source is not None and t.source.length is not None \
                and t.transferred != t.source.length:
            return self._finish(t, (426, f"Transfer aborted after {t.transferred} of {t.source.length} bytes"))
        return self._finish(t, (226, f"Transfer complete ({t.transferred} bytes)"))

    def _publish(self, t: Transfer, result: Any, ended: bool = False) -> None:
        """Tell the status feed (not about its own transfers)."""
        hub = getattr(self._factory, "events", None)
        if hub is None or t.path == EVENTS_PATH or not hub.readers:
            return
        if not ended:
            hub.publish(transfer_started(t.verb, t.path))
            return
        code = result[0] if isinstance(result, tuple) else None
        hub.publish(transfer_ended(t.verb, t.path, t.transferred, time.monotonic() - t.started, code))

    def _finish(self, t: Transfer, result: Reply | None) -> Reply | None:
        if self.current is t:
            self.current = None
            self._publish(t, result, ended=True)
            self._count(t, result)
        self.control.transferEnded()
        return result

    def abort(self) -> Any:
        """ABOR: 225 with nothing to abort; a UDP recording ends (and lands) with its 226
        first; anything else is aborted (426 for it, then 226)."""
        t = self.current
        if t is None:
            self.forgetPorts()
            return 225, "No transfer to abort"
        if t.udp and t.verb == "STOR":
            # A UDP recording runs until ABOR: that is its normal end, so it is kept.
            t.data.close()
            finished = t.finished

            def answer(reply: Any) -> Reply:
                if finished is not None and not finished.called:
                    finished.callback(reply)          # the STOR's own 226 goes first
                return 226, "ABOR command successful"
            return self._commit(t).addCallback(answer)
        self._abort()
        self.control.reply(426, f"Connection closed; {t.verb} {t.path} aborted after {t.transferred} bytes")
        return 226, "ABOR command successful"

    def _count(self, t: Transfer, result: Reply | None) -> None:
        """Count an ended transfer once (metrics): *result* None for an aborted one."""
        metrics = getattr(self._factory, "metrics", None)
        if metrics is not None and not t.counted:
            t.counted = True
            metrics.transfer_ended(t.verb, t.transferred, result)

    def _abort(self) -> None:
        t = self.current
        if t is None:
            return
        t.aborted = True
        self._count(t, None)
        if t.sender is not None:
            t.sender.stop()
        elif t.pump is not None:
            t.pump.stopProducing()
        elif t.source is not None:
            t.source.stopProducing()
        if t.recording is not None:
            t.recording.abort()
        finished = t.finished
        if finished is not None and not finished.called:
            finished.callback(None)
        t.close_data(abort=True)
        self.current = None

    def status(self) -> str:
        """The STAT line about the transfer."""
        t = self.current
        if t is None:
            return "No data transfer in progress"
        line = f"{t.verb} {t.path} in progress: {t.transferred} bytes in {time.monotonic() - t.started:.1f} s"
        gate = getattr(t.source, "gate", None)
        if gate is not None and gate.dropped:
            line += f"; {gate.dropped} packets missed in {gate.gaps} gaps (the data connection could not keep up)"
        if t.sender is not None and t.sender.rtcp is not None:
            line += "; " + t.sender.rtcp.summary()
        return line

    def close(self) -> None:
        """The control connection is gone: the transfer ends with it, one waiting for its
        data connection never starts (nothing lands), and the data ports are free at once."""
        self.closed = True
        self._abort()
        if self._opening is not None:
            d, _undo = self._opening
            d.cancel()
        self.forgetPorts()
