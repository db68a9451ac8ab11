"""The responder's data phases over a narrow channel: data-out delivered to the
device as it arrives, data-in framed as Data packets, and the write watchdog.

These know nothing of sessions or devices. A *channel* is what they need of the
command connection: ``hold(why)`` / ``release(why)`` to stop and restart reading,
and its transport. Framing headers and byte counts come from the connection's
:class:`~ptpip.wire.transaction.Transactions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer, IDelayedCall, IProducer, IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from . import sendfile
from .interfaces import IDataSource, IIncomingData
from .streams import BytesConsumer, FileSource
from .wire.constants import ResponseCode
from .wire.errors import RemoteProtocolError, TransactionCancelled
from .wire.transaction import Transactions

__all__ = ["Channel", "DataIn", "DataInStopped", "DataInWriter", "IncomingData", "WriteWatch"]


class Channel(Protocol):
    """What the data phases need of a command connection."""

    transport: Any

    def hold(self, why: str) -> None: ...

    def release(self, why: str) -> None: ...


@implementer(IPushProducer)
class WriteWatch:
    """The producer a channel's transport pauses when the peer stops reading.

    It passes pause/resume on to the current data-in producer (:attr:`inner`), tells
    the channel (*on_pause*, *on_resume*: it stops reading requests while its answers
    cannot go out, so a peer that pipelines and never reads is not answered without
    limit) and calls *on_stall* when the peer has not read for *stall_timeout*
    seconds, so write buffers stay bounded.
    """

    def __init__(self, reactor: Any, stall_timeout: float, on_stall: Callable[[], Any],
                 on_pause: Callable[[], Any] | None = None, on_resume: Callable[[], Any] | None = None) -> None:
        self.reactor = reactor
        self.stall_timeout = stall_timeout
        self.on_stall = on_stall
        self.on_pause = on_pause
        self.on_resume = on_resume
        self.inner: IPushProducer | None = None
        self.paused = False
        self._timer: IDelayedCall | None = None

    def setInner(self, producer: IPushProducer | None) -> None:
        self.inner = producer
        if producer is not None and self.paused:
            producer.pauseProducing()

    def pauseProducing(self) -> None:
        self.paused = True
        if self.inner is not None:
            self.inner.pauseProducing()
        if self.on_pause is not None:
            self.on_pause()
        if self.stall_timeout and self._timer is None:
            self._timer = self.reactor.callLater(self.stall_timeout, self._expired)

    def resumeProducing(self) -> None:
        self.paused = False
        self.stop()
        if self.on_resume is not None:
            self.on_resume()
        if self.inner is not None:
            self.inner.resumeProducing()

    def stopProducing(self) -> None:
        self.stop()
        if self.inner is not None:
            self.inner.stopProducing()

    def stop(self) -> None:
        """Disarm the watchdog."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expired(self) -> None:
        self._timer = None
        self.on_stall()


@implementer(IIncomingData, IPushProducer)
class IncomingData:
    """The data-out phase of one transaction, delivered to the device as it arrives.

    The session feeds it the machine's data events; the channel does not read
    data until the device has chosen a consumer (:meth:`deliverTo`), and stops
    reading while that consumer is paused.
    """

    def __init__(self, channel: Channel, transaction_id: int, length: int | None) -> None:
        self._channel = channel
        self.transaction_id = transaction_id
        self.length = length
        self.received = 0
        self.consumer: IConsumer | None = None
        self.done = False
        self._result: defer.Deferred[int] = defer.Deferred()
        self._error: Exception | None = None
        channel.hold("await-consumer")

    # -- IIncomingData --------------------------------------------------------------
    def deliverTo(self, consumer: IConsumer) -> defer.Deferred[int]:
        if self.consumer is not None:
            raise RuntimeError("data-out can be delivered only once")
        self.consumer = consumer
        consumer.registerProducer(self, True)
        if not self.done:
            self._channel.release("await-consumer")
        return self._result

    def readAll(self, limit: int = 1 << 20) -> defer.Deferred[bytes]:
        if self.length is not None and self.length > limit:
            return defer.fail(RemoteProtocolError(
                f"a {self.length}-byte dataset is over the {limit}-byte limit",
                fail_reason=None, response_code=ResponseCode.GeneralError))
        sink = _LimitedBytes(limit, self)
        return self.deliverTo(sink).addCallback(lambda _: sink.value())

    # -- IPushProducer (the consumer's backpressure) ----------------------------------
    def pauseProducing(self) -> None:
        if not self.done:
            self._channel.hold("consumer-paused")

    def resumeProducing(self) -> None:
        self._channel.release("consumer-paused")

    def stopProducing(self) -> None:
        self.fail(TransactionCancelled("the consumer stopped the data-out phase"))

    # -- fed by the session -------------------------------------------------------------
    def feed(self, payload: bytes) -> None:
        if self.done:
            return
        self.received += len(payload)
        assert self.consumer is not None
        try:
            self.consumer.write(payload)
        except Exception as e:          # the store refused (full, I/O error): stop here
            if getattr(e, "response_code", None) is None:
                e = RemoteProtocolError(f"writing the data-out failed: {e}", fail_reason=None,
                                        response_code=ResponseCode.GeneralError)
            self.fail(e)

    def finish(self, complete: bool) -> None:
        """End Data arrived; *complete* when the byte count agrees with Start Data."""
        if self.done:
            return
        if not complete:
            self.fail(RemoteProtocolError(
                f"data-out carried {self.received} of the announced {self.length} bytes",
                fail_reason=None, response_code=ResponseCode.IncompleteTransfer))
            return
        self._settle()
        self._result.callback(self.received)

    def fail(self, error: Exception) -> None:
        if self.done:
            return
        self._error = error
        self._settle()
        self._result.errback(error)

    @property
    def error(self) -> Exception | None:
        return self._error

    def _settle(self) -> None:
        self.done = True
        if self.consumer is not None:
            self.consumer.unregisterProducer()
        self._channel.release("consumer-paused")
        self._channel.release("await-consumer")


@implementer(IConsumer)
class _LimitedBytes(BytesConsumer):
    def __init__(self, limit: int, incoming: IncomingData) -> None:
        super().__init__()
        self._limit = limit
        self._incoming = incoming

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self._limit:
            self._incoming.fail(RemoteProtocolError(
                f"dataset over the {self._limit}-byte limit",
                fail_reason=None, response_code=ResponseCode.GeneralError))
            return
        super().write(data)


@implementer(IConsumer)
class DataInWriter:
    """The consumer an :class:`~ptpip.interfaces.IDataSource` writes into: frames its
    bytes as Data packets of at most *packet_size* bytes.

    The latest piece is held back so the phase ends with an End Data that carries
    it. A source that writes more than it announced is cut off (:attr:`over`).
    """

    def __init__(self, transport: Any, transactions: Transactions, watch: WriteWatch,
                 length: int | None, packet_size: int) -> None:
        self._transport = transport
        self._tx = transactions
        self._watch = watch
        self.length = length
        self.packet_size = packet_size
        self.written = 0
        self.over = False
        self.stopped = False
        self._held: bytes | None = None

    @property
    def short(self) -> bool:
        """True when the source wrote less than it announced."""
        return self.length is not None and self.written != self.length

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self._watch.setInner(cast(IPushProducer, producer))

    def unregisterProducer(self) -> None:
        self._watch.setInner(None)

    def write(self, data: bytes) -> None:
        if self.over or self.stopped:
            return
        if self.length is not None and self.written + len(data) > self.length:
            self.over = True
            return
        self.written += len(data)
        data = bytes(data) if not isinstance(data, bytes) else data
        step = self.packet_size
        # Slicing copies, so only an oversized write is cut into packets.
        pieces = [data] if len(data) <= step else [data[i:i + step] for i in range(0, len(data), step)]
        for piece in pieces:
            if self._held is not None:
                self._transport.writeSequence([self._tx.data_header(len(self._held)), self._held])
            self._held = piece

    def finish(self) -> None:
        """The End Data packet, with the piece held back."""
        held = self._held if self._held is not None else b""
        self._held = None
        self._transport.writeSequence([self._tx.data_header(len(held), last=True), held])


class DataInStopped(Exception):
    """The data-in phase was stopped (cancelled, or the connection closed)."""


class DataIn:
    """One data-in phase: an :class:`~ptpip.interfaces.IDataSource` sent as Data
    packets and a final End Data (Start Data is already out).

    A plain file on a plain TCP transport goes out with ``os.sendfile``
    (:mod:`ptpip.sendfile`), anything else through a :class:`DataInWriter`.
    :meth:`start` fires when End Data has been written; it fails with the reason
    when the phase ended early (the source failed, or wrote other than it
    announced: no End Data was sent, 5.6.2 case 2), and with
    :class:`DataInStopped` after :meth:`stop`.
    """

    def __init__(self, reactor: Any, channel: Channel, transactions: Transactions, watch: WriteWatch,
                 source: IDataSource, packet_size: int, stall_timeout: float,
                 on_stall: Callable[[], Any]) -> None:
        self._reactor = reactor
        self._channel = channel
        self._tx = transactions
        self._watch = watch
        self._source = source
        self._packet_size = packet_size
        self._stall_timeout = stall_timeout
        self._on_stall = on_stall
        self._pump: sendfile.SendfileWriter | None = None
        self._writer: DataInWriter | None = None
        self.stopped = False

    def start(self) -> defer.Deferred[None]:
        source, transport = self._source, self._channel.transport
        if isinstance(source, FileSource) and source.sendfile_ok() and sendfile.supported(transport):
            fd, offset, length = source.take_file()
            pump = self._pump = sendfile.SendfileWriter(
                self._reactor, transport, fd, offset, length, header=self._tx.data_header,
                packet_size=self._packet_size, stall_timeout=self._stall_timeout, on_stall=self._on_stall)
            self._watch.setInner(pump)

            def sent(result: Any) -> Any:
                source.close()
                self._watch.setInner(None)
                if isinstance(result, Failure) and result.check(sendfile.SendfileStopped):
                    return Failure(DataInStopped("stopped"))
                return None if not isinstance(result, Failure) else result
            return pump.start().addBoth(sent)
        writer = self._writer = DataInWriter(transport, self._tx, self._watch, source.length, self._packet_size)
        writer.registerProducer(source, True)

        def produced(result: Any) -> Any:
            writer.unregisterProducer()
            if self.stopped:
                return Failure(DataInStopped("stopped"))
            if isinstance(result, Failure):
                return result
            if writer.over or writer.short:
                return Failure(OSError(f"the data source wrote {writer.written} bytes, "
                                       f"{writer.length} announced"))
            writer.finish()
            return None
        return defer.maybeDeferred(source.startProducing, writer).addBoth(produced)

    def stop(self) -> None:
        """Stop sending (a packet in the middle of being sent is completed first)."""
        if self.stopped:
            return
        self.stopped = True
        if self._writer is not None:
            self._writer.stopped = True
        producer: IPushProducer = self._pump if self._pump is not None else self._source
        producer.stopProducing()
