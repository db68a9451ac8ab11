"""CCCP data connections over TCP: passive (PASV) listeners that accept only the
control connection's peer, active (PORT) connections to that peer, and a consumer
that counts what it passes on. (Stored files go out with :mod:`ptpip.sendfile`.)"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer


class DataProtocol(protocol.Protocol):
    """One TCP data connection. Incoming bytes go to ``sink`` (STOR, client RETR);
    outgoing bytes are written by a producer registered with the transport.

    Reading is paused until a sink is attached, so nothing is lost or buffered
    without bound while the control channel is still deciding.
    """

    # Set by makeConnection: a tcp.Connection, which is an ITCPTransport, IConsumer and
    # IPushProducer at once (and whose internals the sendfile paths use).
    transport: Any

    log = Logger()

    def __init__(self) -> None:
        self.connected_d: defer.Deferred[DataProtocol] = defer.Deferred()
        #: Fires (never fails) with the exception that ended the connection,
        #: ``ConnectionDone`` for a clean close.
        self.closed_d: defer.Deferred[BaseException | None] = defer.Deferred()
        self.sink: Any = None
        self.received = 0
        self.closed = False

    def connectionMade(self) -> None:
        try:
            self.transport.setTcpNoDelay(False)
        except (AttributeError, OSError):
            pass
        self.transport.pauseProducing()
        self.connected_d.callback(self)

    def receiveInto(self, sink: Any) -> None:
        """Start delivering incoming bytes to *sink* (an ``IConsumer``-like ``write``)."""
        self.sink = sink
        if hasattr(sink, "registerProducer"):
            sink.registerProducer(_ReadPauser(self), True)
        if not self.closed:
            self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.sink is not None:
            try:
                self.sink.write(data)
            except Exception as e:          # the store refused (a full disk...): end the transfer
                if getattr(e, "code", None) is None:
                    self.log.failure("data sink failed", Failure(e))
                else:
                    self.log.warn("data sink refused: {e}", e=e)
                self.failure = Failure(e)
                self.transport.abortConnection()

    failure: Failure | None = None

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        if not self.connected_d.called:
            self.connected_d.errback(reason)
        self.closed_d.callback((self.failure or reason).value)

    def close(self) -> None:
        if not self.closed:
            self.transport.loseConnection()

    def abort(self) -> None:
        if not self.closed:
            self.transport.abortConnection()


@implementer(IPushProducer)
class _ReadPauser:
    """Lets the sink pause the socket it reads from (backpressure for STOR)."""

    def __init__(self, proto: DataProtocol) -> None:
        self.proto = proto

    def pauseProducing(self) -> None:
        if not self.proto.closed:
            self.proto.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if not self.proto.closed:
            self.proto.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.proto.abort()


class PassiveFactory(protocol.ServerFactory):
    """Accepts the first data connection from *allowed_host*; refuses any other."""

    log = Logger()
    protocol = DataProtocol

    def __init__(self, allowed_host: str | None) -> None:
        self.allowed_host = allowed_host
        self.accepted: defer.Deferred[DataProtocol] = defer.Deferred()
        self.port: Any = None
        self.refused = 0

    def buildProtocol(self, addr: Any) -> DataProtocol | None:
        if self.accepted.called:
            return None
        if self.allowed_host is not None and getattr(addr, "host", None) != self.allowed_host:
            self.refused += 1
            self.log.warn("refused a data connection from {addr}: only {host} may connect",
                          addr=addr, host=self.allowed_host)
            return None            # Twisted closes the connection at once
        p = DataProtocol()
        p.factory = self
        p.connected_d.addCallback(self._accepted)
        return p

    def _accepted(self, p: DataProtocol) -> DataProtocol:
        if not self.accepted.called:
            self.accepted.callback(p)
        if self.port is not None:
            self.port.stopListening()
            self.port = None
        return p

    def stop(self) -> None:
        if self.port is not None:
            self.port.stopListening()
            self.port = None


def listen_passive(reactor: Any, interface: str, allowed_host: str | None,
                   ports: tuple[int, int] | None = None) -> PassiveFactory:
    """Listen on a port from *ports* (inclusive range; None = any free port)."""
    factory = PassiveFactory(allowed_host)
    candidates = range(ports[0], ports[1] + 1) if ports else [0]
    last: Exception | None = None
    for port in candidates:
        try:
            factory.port = reactor.listenTCP(port, factory, interface=interface)
            return factory
        except error.CannotListenError as e:
            last = e
    raise error.CannotListenError(interface, ports, last)


class ActiveFactory(protocol.ClientFactory):
    protocol = DataProtocol

    def __init__(self) -> None:
        self.connector: Any = None
        self.result: defer.Deferred[DataProtocol] = defer.Deferred(self._cancel)

    def _cancel(self, _: Any) -> None:
        if self.connector is not None:
            try:
                self.connector.stopConnecting()
            except error.NotConnectingError:
                pass

    def buildProtocol(self, addr: Any) -> DataProtocol:
        p = DataProtocol()
        p.factory = self

        def connected(proto: DataProtocol) -> DataProtocol:
            if not self.result.called:
                self.result.callback(proto)
            else:
                proto.abort()              # nobody waits for it any more (cancelled)
            return proto
        p.connected_d.addCallback(connected)
        return p

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.result.called:
            self.result.errback(reason)


def connect_active(reactor: Any, host: str, port: int, timeout: float = 30.0,
                   bind: str | None = None) -> defer.Deferred[DataProtocol]:
    factory = ActiveFactory()
    factory.connector = reactor.connectTCP(host, port, factory, timeout=timeout,
                                           bindAddress=(bind, 0) if bind else None)
    return factory.result


@implementer(IConsumer)
class CountingConsumer:
    """Passes writes to a transport and counts them (for STAT during a transfer)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.count = 0

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def write(self, data: bytes) -> None:
        self.count += len(data)
        self.transport.write(data)
