"""Prometheus metrics, for both plugins (``--metrics tcp:9108``): the ``prometheus-client``
package's registry and text format, served over ``twisted.web`` on the reactor thread (a
scrape reads the servers' state as it is; no lock, no thread).

Each server has its own :class:`Metrics` (its own registry): counters moved where things
happen, and gauges read when Prometheus scrapes. :class:`PTPIPMetrics` is the responder's;
the CCCP server's is :class:`cccp.metrics.CCCPMetrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, exposition, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web import pages, resource, server

Samples = Iterable[Metric]
#: The text format every Prometheus reads (our names need none of 1.0.0's escaping).
CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", exposition.CONTENT_TYPE_LATEST)


class _Collector(Collector):
    def __init__(self, collect: Callable[[], Samples]) -> None:
        self._collect = collect

    def collect(self) -> Samples:
        return self._collect()


class Metrics:
    """A registry, its counters, and what is read at each scrape."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.registry = CollectorRegistry(auto_describe=False)    # (gauges are read at scrapes only)

    def counter(self, name: str, documentation: str, labels: Iterable[str] = ()) -> Counter:
        return Counter(name, documentation, list(labels), namespace=self.namespace, registry=self.registry)

    def gauges(self, collect: Callable[[], Samples]) -> None:
        """Register *collect*, called at each scrape for the metrics it yields."""
        self.registry.register(_Collector(collect))

    def gauge(self, name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{self.namespace}_{name}", documentation, labels=list(labels))

    def text(self) -> bytes:
        """The Prometheus text format, now."""
        return generate_latest(self.registry)


class MetricsPage(resource.Resource):
    """``GET /metrics``."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE.encode())
        return self.metrics.text()


def metrics_site(metrics: Metrics) -> server.Site:
    """A web site with ``/metrics`` (and a line at ``/`` saying where it is)."""
    root = resource.Resource()
    root.putChild(b"metrics", MetricsPage(metrics))
    root.putChild(b"", pages.notFound("Not Found", "The metrics are at /metrics."))
    site = server.Site(root)
    site.displayTracebacks = False
    return site


def metrics_service(endpoint: str, metrics: Metrics) -> Any:
    """A Twisted service serving *metrics* on *endpoint* (a server endpoint string)."""
    from twisted.application import strports
    return strports.service(endpoint, metrics_site(metrics))


class PTPIPMetrics(Metrics):
    """The responder's, for every camera of the process (label ``camera``: its friendly
    name): sessions, Init Fail reasons, transactions by operation and response, data
    bytes, dropped events."""

    def __init__(self) -> None:
        super().__init__("ptpip")
        self.factories: list[Any] = []
        self.connections = self.counter("connections_total", "TCP connections accepted (command and event).",
                                        ["camera"])
        self.sessions_opened = self.counter("sessions_total", "PTP-IP sessions established.", ["camera"])
        self.init_fails = self.counter("init_fail_total", "Init Fail answers sent, by reason.", ["camera", "reason"])
        self.transactions = self.counter("transactions_total", "Transactions ended, by operation and response.",
                                         ["camera", "operation", "response"])
        self.data_bytes = self.counter("data_bytes_total", "Bytes of data phases, by direction "
                                       "(in: to the initiator, out: from it).", ["camera", "direction"])
        self.gauges(self._now)

    def add(self, factory: Any) -> None:
        """Count for *factory* too (a ResponderFactory or a FujiResponderFactory)."""
        if factory not in self.factories:
            self.factories.append(factory)

    def init_fail(self, camera: str, reason: Any) -> None:
        self.init_fails.labels(camera, getattr(reason, "name", str(reason))).inc()

    def transaction(self, camera: str, operation: int, response: int, data_bytes: int = 0,
                    data_in: bool = True) -> None:
        self.transactions.labels(camera, operation_name(operation), response_name(response)).inc()
        if data_bytes:
            self.data_bytes.labels(camera, "in" if data_in else "out").inc(data_bytes)

    def _now(self) -> Samples:
        # by camera name: a Fuji camera's two factories, or two cameras of one name, add up
        counts: dict[str, list[int]] = {}
        for f in self.factories:
            c = counts.setdefault(f.friendly_name, [0, 0, 0])
            if hasattr(f, "sessions"):
                c[0] += len(f.sessions)
                c[1] += len(f._pending)
                c[2] += sum(s.dropped_events for s in f.sessions)
            else:                               # Fuji: command connections, with or without a session
                live = sum(1 for cmd in f.commands if cmd.session is not None)
                c[0] += live
                c[1] += len(f.commands) - live
        for i, (name, doc) in enumerate((
                ("sessions", "PTP-IP sessions now."),
                ("pending_connections", "Connections not yet in a session."),
                ("events_dropped", "Events dropped because an initiator did not read its event channel, "
                                   "in the sessions now."))):
            g = self.gauge(name, doc, ["camera"])
            for camera, c in counts.items():
                g.add_metric([camera], c[i])
            yield g


def operation_name(code: int) -> str:
    """A label for an operation code: its name where PTP or a vendor we know names it, else
    ``other`` (the codes an initiator sends are not to make series without end)."""
    from .wire.constants import OperationCode
    from .wire.vendor import CanonOp, NikonOp
    for kind in (OperationCode, CanonOp, NikonOp):
        try:
            return kind(code).name
        except ValueError:
            continue
    return "other"


def response_name(code: int) -> str:
    from .wire.constants import ResponseCode
    try:
        return ResponseCode(code).name
    except ValueError:
        return f"0x{code:04X}"                 # ours: the device chose it
