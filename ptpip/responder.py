"""The PTP-IP responder (the camera side): one port, both channels, many sessions.

:class:`ResponderFactory` listens on one port (default 15740) and admits
initiators. Each TCP connection is a :class:`ResponderProtocol` whose first
packet says what it is: an Init Command Request opens a command/data channel, an
Init Event Request joins the event channel to it by connection number (spec
2.2.3.1). Once both are there, a :class:`ResponderSession` drives the
connection's :class:`~ptpip.wire.transaction.Transactions` machine with the
packets that arrive and answers with an
:class:`~ptpip.interfaces.IResponderSession` obtained from the device. The data
phases themselves are :mod:`ptpip.dataphase` and :mod:`ptpip.sendfile`.
"""

from __future__ import annotations

import enum
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from . import sockets
from .admission import Admission, Decision
from .dataphase import WriteWatch
from .interfaces import (
    IInitiatorInfo,
    IInitiatorPolicy,
    IResponderDevice,
    Response,
)
from .session import ResponderSession
from .wire.constants import (
    DEFAULT_PORT,
    PROTOCOL_VERSION,
    FailReason,
    version_major,
)
from .wire.errors import (
    FramingError,
    OperationError,
    ProtocolError,
    UnexpectedPacket,
)
from .wire.framing import DEFAULT_MAX_PACKET_SIZE, NEED_DATA, PacketParser
from .wire.packets import (
    InitCommandAck,
    InitCommandRequest,
    InitEventAck,
    InitEventRequest,
    InitFail,
    Packet,
)

__all__ = [
    "DEFAULT_PORT",
    "InitiatorInfo",
    "OperationError",
    "ResponderFactory",
    "ResponderProtocol",
    "ResponderSession",
    "Response",
]

#: Largest Data packet we send; larger writes are split.
DATA_PACKET_SIZE = 1 << 20


@implementer(IInitiatorInfo)
@dataclass
class InitiatorInfo:
    guid: bytes
    friendly_name: str
    version: int
    address: IAddress | None
    connection_number: int = 0


class _Role(enum.Enum):
    NEW = "new"
    COMMAND = "command"       # Init Command Ack sent, waiting for the event channel
    EVENT = "event"
    CLOSED = "closed"


class ResponderProtocol(protocol.Protocol):
    """One TCP connection of a PTP-IP responder: command/data or event channel."""

    # Set by makeConnection: a tcp.Connection (ITCPTransport, IConsumer, IPushProducer).
    transport: Any

    log = Logger()
    factory: ResponderFactory

    #: Reasons to stop dispatching that leave the socket read (so that a peer who goes
    #: away is noticed at once); a peer that sends this much meanwhile is paused.
    _READING_HOLDS = frozenset({"establishing"})
    _HELD_BYTES = 1 << 16

    def __init__(self) -> None:
        self.role = _Role.NEW
        self.session: ResponderSession | None = None
        self.connection_number: int | None = None
        self.initiator: InitiatorInfo | None = None
        self.host = ""
        self.pending = False              # counted as a handshake in flight
        self._parser: PacketParser | None = None
        self._holds: set[str] = set()
        self._paused = False
        self._draining = False
        self._timer: IDelayedCall | None = None
        self._stall: IDelayedCall | None = None
        self._closer: IDelayedCall | None = None

    # -- Twisted ---------------------------------------------------------
    def connectionMade(self) -> None:
        f = self.factory
        self._parser = PacketParser(f.max_packet_size)
        sockets.tune(self.transport)
        self.watch = WriteWatch(f.reactor, f.stall_timeout,
                                lambda: self._stalled("stopped reading (our send buffer stayed full)"),
                                on_pause=lambda: self.hold("output-full"),
                                on_resume=lambda: self.release("output-full"))
        self.transport.registerProducer(self.watch, True)
        f.connections.add(self)
        f.metrics.connections.labels(f.friendly_name).inc()
        self.host = getattr(self.transport.getPeer(), "host", "") or ""
        for old in f.admission.connected(self.host, self):
            cast(ResponderProtocol, old).refuse(FailReason.BUSY, f"a newer connection from {self.host} needed its place "
                                        f"(more than {f.admission.max_unidentified_per_address} silent ones)")
        self._timer = f.reactor.callLater(f.identify_timeout, self._establishmentTimedOut, "sent nothing")

    def dataReceived(self, data: bytes) -> None:
        assert self._parser is not None
        self._parser.receive_data(data)
        if self.session is not None:
            self.session.activity()
        if self._holds and not self._paused and self._parser.pending > self._HELD_BYTES:
            self._pause()                     # held but still sending: stop reading too
        self._drain()
        self._watchStall()

    # -- stalls: a peer that stops sending mid-packet or mid-phase, or stops reading ----
    def _watchStall(self) -> None:
        """(Re)arm the receive-stall timer while the peer owes us bytes (a reset, not a
        new timer, per chunk of a long data phase)."""
        owed = self._parser is not None and self._parser.in_packet
        if self.session is not None and self.role is _Role.COMMAND:
            owed = owed or self.session.awaitingData()
        armed = self._stall is not None and self._stall.active()
        if owed and not self._holds and self.role is not _Role.CLOSED and self.factory.stall_timeout:
            if armed:
                self._stall.reset(self.factory.stall_timeout)  # type: ignore[union-attr]
            else:
                self._stall = self.factory.reactor.callLater(
                    self.factory.stall_timeout, self._stalled,
                    "stopped sending in the middle of a packet or data phase")
        elif armed:
            self._stall.cancel()  # type: ignore[union-attr]
            self._stall = None

    def _stalled(self, why: str) -> None:
        self._stall = None
        if self.role is _Role.CLOSED:
            return
        self.log.warn("closing {role} connection from {peer}: {why} for {t} s",
                      role=self.role.value, peer=self.transport.getPeer(), why=why,
                      t=self.factory.stall_timeout)
        self.close(abort=True)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        f = self.factory
        f.connections.discard(self)
        previous, self.role = self.role, _Role.CLOSED
        for timer in (self._timer, self._stall, self._closer):
            if timer is not None and timer.active():
                timer.cancel()
        self._timer = None
        self.watch.stop()
        f.admission.identified(self)
        if self.pending:
            self.pending = False
            f.admission.pending.remove(self.host)
        if previous is _Role.COMMAND and self.session is None:
            f._pending.pop(self.connection_number, None)
        if self.session is not None:
            self.session.close(reason)

    # -- flow control -----------------------------------------------------
    def hold(self, why: str) -> None:
        """Stop dispatching packets (and, but for establishing, reading) until :meth:`release` of *why*."""
        self._holds.add(why)
        if why not in self._READING_HOLDS and not self._paused:
            self._pause()

    def _pause(self) -> None:
        if self.transport is not None:
            self._paused = True
            self.transport.pauseProducing()

    def release(self, why: str) -> None:
        if why not in self._holds:
            return
        self._holds.discard(why)
        if self.role is _Role.CLOSED:
            return
        if self._paused and self._holds <= self._READING_HOLDS:
            self._paused = False
            self.transport.resumeProducing()
        if not self._holds:
            self._drain()
            self._watchStall()

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while not self._holds and self.role is not _Role.CLOSED:
                try:
                    event = self._parser.next_event()  # type: ignore[union-attr]
                except FramingError as e:
                    self.protocolError(e)
                    return
                if event is NEED_DATA:
                    return
                try:
                    self.packetReceived(event)  # type: ignore[arg-type]
                except ProtocolError as e:
                    self.protocolError(e)
                    return
        finally:
            self._draining = False

    # -- packets ----------------------------------------------------------
    def packetReceived(self, packet: Packet) -> None:
        if self.role is _Role.NEW:
            self.factory.admission.identified(self)
            if isinstance(packet, InitCommandRequest):
                self._restartTimer(self.factory.establishment_timeout, "has no event channel")
                self.factory.initCommand(self, packet)
            elif isinstance(packet, InitEventRequest):
                self.factory.initEvent(self, packet)
            else:
                raise UnexpectedPacket(
                    f"{type(packet).__name__} before Init Command/Event Request",
                    fail_reason=FailReason.UNSPECIFIED)
        elif self.session is None:
            raise UnexpectedPacket(f"{type(packet).__name__} before the connection is established")
        elif self.role is _Role.EVENT:
            self.session.eventPacket(packet)
        else:
            self.session.commandPacket(packet)

    def sendPacket(self, packet: Packet) -> None:
        if self.role is not _Role.CLOSED:
            self.transport.write(packet.encode())

    def sendNow(self, chunks: list[bytes]) -> None:
        """Send a transaction's last bytes (its answer) at once: see :func:`sockets.write_now`."""
        if self.role is not _Role.CLOSED:
            sockets.write_now(self.transport, chunks)

    def protocolError(self, error: ProtocolError) -> None:
        """The peer broke the protocol: answer Init Fail if still establishing, then close."""
        peer = self.transport.getPeer() if self.transport else None
        self.log.warn("closing {role} connection from {peer}: {error}",
                      role=self.role.value, peer=peer, error=error)
        if self.role is _Role.NEW:
            reason = getattr(error, "fail_reason", None) or FailReason.UNSPECIFIED
            self.sendPacket(InitFail(reason))
            self.factory.metrics.init_fail(self.factory.friendly_name, reason)
        self.close()

    def refuse(self, reason: FailReason, why: str) -> None:
        """Answer Init Fail with *reason* and close (establishment only)."""
        self.log.warn("refusing {peer}: Init Fail {reason}: {why}",
                      peer=self.transport.getPeer(), reason=reason.name, why=why)
        self.sendPacket(InitFail(reason))
        self.factory.metrics.init_fail(self.factory.friendly_name, reason)
        self.close()

    def close(self, abort: bool = False) -> None:
        """Close after what is buffered, within ``close_grace`` seconds whatever the
        peer reads; *abort* drops it at once (for a peer that stopped reading)."""
        if self.role is _Role.CLOSED or self.transport is None:
            return
        self._holds.add("closing")
        if abort:
            self.transport.abortConnection()
            return
        # A registered producer that is paused would keep loseConnection waiting for it
        # for ever: the connection is ending, there is nothing more to produce.
        if getattr(self.transport, "producer", None) is not None:
            self.transport.unregisterProducer()
        self.transport.loseConnection()
        if self._closer is None:
            self._closer = self.factory.reactor.callLater(self.factory.close_grace, self.abort)

    def abort(self) -> None:
        if self.transport is not None and self.role is not _Role.CLOSED:
            self.transport.abortConnection()

    # -- establishment ----------------------------------------------------
    def established(self) -> None:
        self._cancelTimer()

    def _restartTimer(self, seconds: float, why: str) -> None:
        self._cancelTimer()
        self._timer = self.factory.reactor.callLater(seconds, self._establishmentTimedOut, why)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _establishmentTimedOut(self, why: str) -> None:
        self._timer = None
        if self.session is None and self.role is not _Role.CLOSED:
            self.log.warn("{role} connection from {peer} {why}; closing",
                          role=self.role.value, peer=self.transport.getPeer(), why=why)
            self.close()


def _random_guid() -> bytes:
    return uuid.uuid4().bytes


class ResponderFactory(protocol.Factory):
    """Serves PTP-IP on one port: both channels, every session.

    :param device: the :class:`~ptpip.interfaces.IResponderDevice` behind it.
    :param guid: the responder's 16-byte GUID (random if omitted).
    :param friendly_name: shown by initiators (at most 39 UTF-16 units).
    :param policy: an :class:`~ptpip.interfaces.IInitiatorPolicy` (default: accept all).
    :param max_sessions: sessions (and handshakes in flight) beyond which Init Fail BUSY is answered.
    :param establishment_timeout: seconds for the event channel to follow the command channel (spec: 30).
    :param identify_timeout: seconds a new connection may stay silent before its first packet.
    :param reactor: an ``IReactorTime`` (inject a ``task.Clock`` in tests).
    :param max_pending: handshakes in flight at once (Init Command Request answered, no event
        channel yet); more get Init Fail BUSY. An event channel for a known connection is always taken.
    :param max_pending_per_address: handshakes in flight from one address (default: what
        *max_pending* and *max_per_address* allow).
    :param max_per_address: sessions (and handshakes) from one address; more get BUSY.
    :param stall_timeout: seconds a peer may stop sending mid-packet or mid-data-phase, or
        stop reading what we send, before its connection is closed (0: never).
    :param idle_timeout: seconds without any packet before an idle session is closed (None: never).
    :param probe_timeout: seconds to wait for a Probe Response (spec: 10).
    :param probe_idle: when the session limit is reached, sessions idle this long are probed.
    :param reclaim_idle: a probed session that does not answer is reclaimed (closed, its place
        given to the newcomer) only when it has also been idle this long, or when its TCP
        connection is dead: libgphoto2 never answers probes, so a live gphoto2 session that
        merely paused is kept.
    :param strict_version: refuse an initiator whose protocol version has another major number
        (spec 5.5); by default it is accepted with a warning and answered with our version.
    :param close_grace: seconds a closing connection may take to flush what is buffered.
    """

    # See CCCPFactory.protocol: our protocol names its own factory class.
    protocol = ResponderProtocol  # type: ignore[assignment]
    log = Logger()

    def __init__(self, device: IResponderDevice, guid: bytes | None = None,
                 friendly_name: str = "ptpip responder", policy: IInitiatorPolicy | None = None,
                 max_sessions: int = 16, establishment_timeout: float = 30.0,
                 reactor: IReactorTime | None = None,
                 max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
                 data_packet_size: int = DATA_PACKET_SIZE,
                 version: int = PROTOCOL_VERSION, max_pending: int = 64, max_per_address: int = 8,
                 stall_timeout: float = 60.0, idle_timeout: float | None = None,
                 probe_timeout: float = 10.0, probe_idle: float = 10.0, *,
                 max_pending_per_address: int | None = None, identify_timeout: float = 10.0,
                 reclaim_idle: float = 300.0, strict_version: bool = False,
                 close_grace: float = 1.0, metrics: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.device = IResponderDevice(device)
        self.guid = guid if guid is not None else _random_guid()
        InitCommandAck(1, self.guid, friendly_name)      # validates the GUID and the name now
        self.friendly_name = friendly_name
        from .devices.policy import AcceptAllPolicy
        self.policy = IInitiatorPolicy(policy) if policy is not None else AcceptAllPolicy()
        self.establishment_timeout = establishment_timeout
        self.identify_timeout = min(identify_timeout, establishment_timeout)
        self.reactor: Any = reactor
        self.max_packet_size = max_packet_size
        self.data_packet_size = data_packet_size
        self.version = version
        self.stall_timeout = stall_timeout
        self.idle_timeout = idle_timeout
        self.probe_timeout = probe_timeout
        self.probe_idle = probe_idle
        self.reclaim_idle = reclaim_idle
        self.strict_version = strict_version
        self.close_grace = close_grace
        self.admission = Admission(max_sessions=max_sessions, max_per_address=max_per_address,
                                   max_pending=max_pending, max_pending_per_address=max_pending_per_address)
        self.connections: set[ResponderProtocol] = set()
        self.sessions: set[ResponderSession] = set()
        self._pending: dict[int | None, ResponderProtocol] = {}
        from .metrics import PTPIPMetrics
        #: Counters and gauges for Prometheus (served with ``--metrics``; several cameras
        #: of one process share one).
        self.metrics = metrics if metrics is not None else PTPIPMetrics()
        self.metrics.add(self)

    @property
    def max_sessions(self) -> int:
        return self.admission.max_sessions

    # -- establishment (spec 2.2.3.1) -------------------------------------------
    def initCommand(self, proto: ResponderProtocol, request: InitCommandRequest) -> None:
        info = InitiatorInfo(request.guid, request.friendly_name, request.version, proto.transport.getPeer())
        proto.initiator = info
        proto.role = _Role.COMMAND        # no further Init packets on this connection
        proto.hold("establishing")
        if version_major(request.version) != version_major(self.version):
            if self.strict_version:
                proto.refuse(FailReason.UNSPECIFIED,
                             f"protocol version 0x{request.version:08X} has another major number")
                return
            self.log.warn("{peer} ({name!r}) speaks protocol version 0x{v:08X}, another major number; "
                          "answering with ours, 0x{ours:08X} (--strict-version refuses it)",
                          peer=info.address, name=info.friendly_name, v=request.version, ours=self.version)
            info.version = self.version
        decision = self.admission.command(proto.host)
        if decision in (Decision.ADDRESS_FULL, Decision.PENDING_FULL):
            proto.refuse(FailReason.BUSY, self.admission.describe(decision, proto.host))
            return
        proto.pending = True                  # a handshake in flight, while the policy decides too
        self.admission.pending.add(proto.host)
        d = defer.maybeDeferred(self.policy.accept, info)
        d.addCallbacks(self._policyDecided, self._policyFailed,
                       callbackArgs=(proto, info), errbackArgs=(proto,))

    def _policyFailed(self, failure: Failure, proto: ResponderProtocol) -> None:
        self.log.failure("initiator policy failed", failure)
        proto.refuse(FailReason.UNSPECIFIED, "initiator policy failed")

    def _full(self) -> bool:
        a = self.admission
        return a.sessions.total + a.pending.total > a.max_sessions   # the newcomer counts as pending

    def _policyDecided(self, accepted: bool, proto: ResponderProtocol, info: InitiatorInfo) -> None:
        if proto.role is _Role.CLOSED:
            return
        if not accepted:
            proto.refuse(FailReason.REJECTED_INITIATOR,
                         f"initiator {info.guid.hex()} ({info.friendly_name!r}) is not allowed")
            return
        if self._full():
            self._reclaim().addCallback(self._afterReclaim, proto, info)
            return
        self._ack(proto, info)

    def _reclaim(self) -> defer.Deferred[Any]:
        """At the session limit: sessions whose TCP connection is dead are closed; those
        idle for ``probe_idle`` seconds are probed, and one that does not answer is closed
        if it has also been idle for ``reclaim_idle`` seconds (spec 2.3.13)."""
        now = self.reactor.seconds()
        probes = []
        for s in list(self.sessions):
            trouble = s.tcpTrouble()
            if trouble is not None:
                s.reclaim(f"{trouble}")
            elif not s.busy and now - s.last_activity >= self.probe_idle:
                probes.append(s.probe(self.probe_timeout).addCallback(self._probed, s))
        return defer.DeferredList(probes)

    def _probed(self, answered: bool, session: ResponderSession) -> None:
        if answered or session.closed:
            return
        idle = self.reactor.seconds() - session.last_activity
        if idle >= self.reclaim_idle:
            session.reclaim(f"no answer to a probe within {self.probe_timeout:g} s and idle for {idle:.0f} s")
        else:
            self.log.info("session {number} with {name!r} did not answer a probe but was active {idle:.0f} s "
                          "ago (under --reclaim-idle {limit:g} s): kept (libgphoto2 never answers probes)",
                          number=session.initiator.connection_number, name=session.initiator.friendly_name,
                          idle=idle, limit=self.reclaim_idle)

    def _afterReclaim(self, _: Any, proto: ResponderProtocol, info: InitiatorInfo) -> None:
        if proto.role is _Role.CLOSED:
            return
        if self._full():
            proto.refuse(FailReason.BUSY, self.admission.describe(Decision.SESSIONS_FULL, proto.host))
            return
        self._ack(proto, info)

    def _ack(self, proto: ResponderProtocol, info: InitiatorInfo) -> None:
        number = self._newConnectionNumber()
        info.connection_number = number
        info.version = min(info.version, self.version)
        proto.connection_number = number
        self._pending[number] = proto
        proto.sendPacket(InitCommandAck(number, self.guid, self.friendly_name, info.version))
        self.log.info("command channel {number} from {peer} ({name!r}, GUID {guid})",
                      number=number, peer=info.address, name=info.friendly_name, guid=info.guid.hex())

    def _newConnectionNumber(self) -> int:
        while True:
            number = secrets.randbits(32)
            if number and number not in self._pending:
                return number

    def initEvent(self, proto: ResponderProtocol, request: InitEventRequest) -> None:
        proto.role = _Role.EVENT
        command = self._pending.get(request.connection_number)
        if command is None:
            proto.refuse(FailReason.UNSPECIFIED, f"unknown connection number {request.connection_number}"
                         " (an initiator on a port other than 15740 must name it twice, e.g. gphoto2's "
                         "ptpip:HOST:PORT:PORT)")
            return
        if proto.host != command.host:
            proto.refuse(FailReason.UNSPECIFIED,
                         f"event channel from {proto.host}, command channel from {command.host}")
            return
        del self._pending[request.connection_number]
        assert command.initiator is not None
        command.pending = False
        self.admission.pending.remove(command.host)
        session = ResponderSession(self, command, proto, command.initiator)
        command.session = proto.session = session
        proto.connection_number = request.connection_number
        self.sessions.add(session)
        self.admission.sessions.add(command.host)
        self.metrics.sessions_opened.labels(self.friendly_name).inc()
        proto.sendPacket(InitEventAck())
        command.established()
        proto.established()
        try:
            session.start()
        except Exception:
            self.log.failure("device refused the session")
            session.close()
            return
        command.release("establishing")
