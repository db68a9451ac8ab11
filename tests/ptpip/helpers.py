"""In-memory doubles for driving the responder without sockets."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from ptpip.constants import PROTOCOL_VERSION
from ptpip.framing import PacketParser
from ptpip.interfaces import IResponderDevice, IResponderSession
from ptpip.packets import Data, EndData, InitCommandRequest, InitEventRequest
from ptpip.responder import OperationError, ResponderFactory, Response
from ptpip.streams import BytesConsumer

GUID = bytes(range(16))

OP_DATA_IN = 0x9001      # data-in of params[0] bytes
OP_DATA_OUT = 0x9002     # data-out into memory; answers with the byte count
OP_SLOW = 0x9003         # answered when the test fires session.pending
OP_REFUSE = 0x9004       # refuses at once (responder-generated cancel of data-out)


@implementer(IResponderSession)
class ScriptedSession:
    def __init__(self, device: ScriptedDevice, initiator: Any, events: Any) -> None:
        self.device = device
        self.initiator = initiator
        self.events = events
        self.lost: list[Any] = []
        self.cancelled: list[int] = []
        self.received: list[bytes] = []
        self.pending: defer.Deferred[Response] | None = None
        self.consumer: BytesConsumer | None = None
        self.outcome: list[Any] = []

    def handleOperation(self, request: Any, incoming: Any) -> Any:
        code = request.code
        if code == OP_DATA_IN:
            n = request.params[0] if request.params else 0
            return Response(params=(n,), data=self.device.source(n))
        if code == OP_DATA_OUT:
            if incoming is None:
                raise OperationError(0x2007, "this operation needs a data-out phase")
            self.consumer = BytesConsumer()
            d = incoming.deliverTo(self.consumer)

            def done(n: int) -> Response:
                self.received.append(self.consumer.value())
                return Response(params=(n,))

            def failed(f: Any) -> Any:
                self.outcome.append(f.value)
                return f

            return d.addCallbacks(done, failed)
        if code == OP_SLOW:
            self.pending = defer.Deferred()
            return self.pending
        if code == OP_REFUSE:
            raise OperationError(0x200C, "store full")
        return Response()

    def cancelTransaction(self, transaction_id: int) -> None:
        self.cancelled.append(transaction_id)

    def connectionLost(self, reason: Any) -> None:
        self.lost.append(reason)


@implementer(IResponderDevice)
class ScriptedDevice:
    def __init__(self) -> None:
        self.sessions: list[ScriptedSession] = []
        self.source = lambda n: bytes(i % 251 for i in range(n))

    def newSession(self, initiator: Any, events: Any) -> ScriptedSession:
        s = ScriptedSession(self, initiator, events)
        self.sessions.append(s)
        return s


class Peer:
    """One in-memory TCP connection to the responder."""

    def __init__(self, factory: ResponderFactory, host: str = "127.0.0.1", port: int = 40000) -> None:
        self.proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 15740))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.proto.makeConnection(self.transport)
        self._parser = PacketParser(max_packet_size=1 << 20)
        self.received: list[Any] = []

    def send(self, *packets: Any) -> None:
        for p in packets:
            self.proto.dataReceived(p.encode())

    def sendRaw(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def read(self) -> list[Any]:
        """Packets the responder wrote since the last read (data pieces joined per packet)."""
        self._parser.receive_data(self.transport.value())
        self.transport.clear()
        out = list(self._parser.events())
        self.received += out
        return out

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.transport.disconnected

    def lose(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure
        self.proto.connectionLost(Failure(ConnectionDone()))


def make_factory(device: Any = None, **kwargs: Any) -> tuple[ResponderFactory, task.Clock]:
    clock = task.Clock()
    factory = ResponderFactory(device or ScriptedDevice(), guid=b"\xaa" * 16, friendly_name="resp",
                               reactor=clock, **kwargs)
    return factory, clock


def establish(factory: ResponderFactory, name: str = "tester", guid: bytes = GUID,
              version: int = PROTOCOL_VERSION) -> tuple[Peer, Peer]:
    cmd = Peer(factory)
    cmd.send(InitCommandRequest(guid, name, version))
    ack = cmd.read()[0]
    evt = Peer(factory, port=40001)
    evt.send(InitEventRequest(ack.connection_number))
    evt.read()
    return cmd, evt


def data_payload(packets: list[Any]) -> bytes:
    return b"".join(p.payload for p in packets if isinstance(p, (Data, EndData)))
