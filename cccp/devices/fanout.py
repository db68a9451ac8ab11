"""One capture for every viewer: a live source started with its first viewer, shared by
all of them, and stopped a while after the last one leaves.

:class:`LiveSources` keeps one :class:`LiveTee` per live source and payload type; each
RETR gets a :class:`TeeViewer`, an :class:`~cccp.interfaces.IMediaSource` of its own, so
that every viewer keeps its own framing (TCP or UDP, TS or RTP, unicast or multicast)
and its own RTCP. Which packets a viewer gets is decided by :mod:`cccp.wire.fanout`: a
late joiner starts at a random access point, and a viewer whose data connection is full
misses whole GOPs (counted) instead of slowing the others or growing memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import IMediaSource
from ..wire.fanout import RTPGate, Run, TSGate, TSTee

#: Seconds a live source runs on after its last viewer left (a viewer that comes back, or
#: the next one, finds it running: no encoder start-up, no new camera session).
CLOSE_AFTER = 10.0


@implementer(IMediaSource)
class TeeViewer:
    """One viewer of a live source: what its data connection is sent. It joins the
    source's :class:`LiveTee` (the running one, or a new one) when its data connection is
    there (:meth:`startProducing`), not before: a RETR whose data connection never comes
    starts nothing."""

    live = True
    length = None

    def __init__(self, sources: LiveSources, key: tuple[str, int], make_source: Callable[[], Any],
                 rtp_input: bool) -> None:
        self.sources = sources
        self.key = key
        self.make_source = make_source
        self.rtp_input = rtp_input
        self.tee: LiveTee | None = None
        #: Set when it joins: :class:`~cccp.wire.fanout.TSGate` or :class:`~cccp.wire.fanout.RTPGate`.
        self.gate: TSGate | RTPGate | None = None
        self.consumer: IConsumer | None = None
        self.sent = 0
        self._behind = False
        self._counted = False
        self._done: defer.Deferred[None] = defer.Deferred()

    @property
    def dropped(self) -> int:
        """TS packets (or RTP packets) this viewer missed because it could not keep up."""
        return self.gate.dropped if self.gate is not None else 0

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        if self._done.called:                       # stopped before it started
            return self._done
        self.consumer = consumer
        consumer.registerProducer(self, True)
        tee = self.tee = self.sources.tee(self.key, self.make_source, self.rtp_input)
        self.gate = RTPGate() if self.rtp_input else TSGate(tee.model)
        self.gate.behind = self._behind
        tee.join(self)
        return self._done

    def runs(self, runs: list[Run]) -> None:
        gate = self.gate
        assert isinstance(gate, TSGate)
        for run in runs:
            if self.consumer is None:
                return
            out = gate.feed(run)
            if out:
                self.sent += len(out)
                self.consumer.write(out)

    def packet(self, packet: bytes) -> None:
        gate = self.gate
        assert isinstance(gate, RTPGate)
        if self.consumer is not None and gate.feed(packet):
            self.sent += len(packet)
            self.consumer.write(packet)

    def ended(self, failure: Failure | None) -> None:
        """The source ended (or failed): so does this viewer's stream."""
        consumer, self.consumer = self.consumer, None
        if not self._counted and self.tee is not None and self.gate is not None:
            self._counted = True
            self.tee.missed += self.gate.dropped
            if self.tee.on_missed is not None and self.gate.dropped:
                self.tee.on_missed(self.gate.dropped)
        if consumer is not None:
            consumer.unregisterProducer()
        if not self._done.called:
            if failure is not None:
                self._done.errback(failure)
            else:
                self._done.callback(None)

    # -- IPushProducer: the viewer's data connection ---------------------------------
    def pauseProducing(self) -> None:
        self._behind = True
        if self.gate is not None:
            self.gate.behind = True

    def resumeProducing(self) -> None:
        self._behind = False
        if self.gate is not None:
            self.gate.behind = False

    def stopProducing(self) -> None:
        if self.tee is not None:
            self.tee.leave(self)
        self.ended(None)


@implementer(IConsumer)
class LiveTee:
    """A live source shared by its viewers: the source writes into the tee, the tee into
    each viewer. The source is never paused (the newest picture wins); it starts with the
    first viewer and stops :attr:`close_after` seconds after the last one left.

    :param make_source: makes the source (an :class:`~cccp.interfaces.IMediaSource`).
    """

    log = Logger()

    def __init__(self, reactor: Any, name: str, make_source: Callable[[], Any], *, rtp_input: bool,
                 close_after: float = CLOSE_AFTER, on_closed: Callable[[LiveTee], None] | None = None) -> None:
        self.reactor = reactor
        self.name = name
        self.make_source = make_source
        self.rtp_input = rtp_input
        self.close_after = close_after
        self.on_closed = on_closed
        self.model = TSTee()
        self.viewers: list[TeeViewer] = []
        self.source: Any = None
        #: Times the source was started, and viewers served, since the tee was made.
        self.starts = 0
        self.served = 0
        self.bytes_in = 0
        #: Packets the viewers that left had missed, and who is told (:meth:`LiveSources.missed`).
        self.missed = 0
        self.on_missed: Callable[[int], None] | None = None
        self._closing: Any = None
        self.closed = False

    def join(self, viewer: TeeViewer) -> None:
        assert not self.closed, "a closed tee takes no viewer (LiveSources.tee makes a new one)"
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        self._closing = None
        self.viewers.append(viewer)
        self.served += 1
        if self.source is None:
            self._start()

    def leave(self, viewer: TeeViewer) -> None:
        if viewer not in self.viewers:
            return
        self.viewers.remove(viewer)
        if not self.viewers and not self.closed:
            if self.close_after <= 0:
                self.close()
            else:
                self._closing = self.reactor.callLater(self.close_after, self.close)

    def _start(self) -> None:
        self.starts += 1
        self.source = source = self.make_source()
        d = defer.maybeDeferred(source.startProducing, self)
        d.addBoth(self._source_ended, source)

    def _source_ended(self, result: Any, source: Any) -> None:
        failure = result if isinstance(result, Failure) else None
        if source is not self.source:
            return
        self.source = None
        viewers, self.viewers = self.viewers, []
        self.close()
        for v in viewers:
            v.ended(failure)

    def close(self) -> None:
        """Stop the source (no viewer is left, or the server stops)."""
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        self._closing = None
        if not self.closed:
            self.closed = True
            if self.on_closed is not None:
                self.on_closed(self)
        source, self.source = self.source, None
        if source is not None:
            try:
                source.stopProducing()
            except Exception:
                self.log.failure("stopping the live source {name} failed", name=self.name)
        viewers, self.viewers = self.viewers, []
        for v in viewers:
            v.ended(None)

    # -- IConsumer: what the source writes ---------------------------------------------
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass                                  # never paused: a live source runs in real time

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.rtp_input:
            for v in list(self.viewers):
                v.packet(data)
            return
        runs = self.model.feed(data)
        if runs:
            for v in list(self.viewers):
                v.runs(runs)


class LiveSources:
    """The live sources running now, one :class:`LiveTee` per source and payload type."""

    def __init__(self, reactor: Any, close_after: float = CLOSE_AFTER) -> None:
        self.reactor = reactor
        self.close_after = close_after
        self.tees: dict[tuple[str, int], LiveTee] = {}
        self._missed: dict[str, int] = {}

    def open(self, name: str, payload_type: int, make_source: Callable[[], Any], *,
             rtp_input: bool) -> TeeViewer:
        """A viewer of *name* as *payload_type*: of the source running when its data
        connection comes, or of one started then with *make_source*."""
        return TeeViewer(self, (name, payload_type), make_source, rtp_input)

    def tee(self, key: tuple[str, int], make_source: Callable[[], Any], rtp_input: bool) -> LiveTee:
        """The running tee of *key*, or a new one (its source starts with its first viewer)."""
        tee = self.tees.get(key)
        if tee is None or tee.closed:
            name, payload_type = key
            tee = self.tees[key] = LiveTee(self.reactor, name, make_source, rtp_input=rtp_input,
                                            close_after=self.close_after, on_closed=self._closed)
            tee.on_missed = lambda n, k=f"{name}/{payload_type}": self._count_missed(k, n)
        return tee

    def _closed(self, tee: LiveTee) -> None:
        for key, t in list(self.tees.items()):
            if t is tee:
                del self.tees[key]

    def _count_missed(self, key: str, n: int) -> None:
        self._missed[key] = self._missed.get(key, 0) + n

    def missed(self) -> dict[str, int]:
        """Packets missed by the viewers of each source (``name/payload type``) since the
        server started, the running sources' viewers' included."""
        out = dict(self._missed)
        for (name, pt), tee in self.tees.items():
            key = f"{name}/{pt}"
            out[key] = out.get(key, 0) + sum(v.dropped for v in tee.viewers)
        return out

    def close(self) -> None:
        """Stop every source (the server is stopping)."""
        for tee in list(self.tees.values()):
            tee.close()
