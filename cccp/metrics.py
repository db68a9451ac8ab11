"""The CCCP server's Prometheus metrics (``cccp-server --metrics tcp:9108``), over
:mod:`ptpip.metrics`: counters moved where things happen (connections, replies by
command and code, failed logins, transfers by verb and result, media errors found in
STOR), and at each scrape what is so now (sessions, transfers and their bytes, pacing
lag, RTCP loss and jitter per viewer, live sources and their viewers, the tape deck's
position and state, the camera's control values).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from prometheus_client.core import CounterMetricFamily
from twisted.internet import defer

from ptpip.metrics import Metrics, Samples, metrics_service

__all__ = ["CCCPMetrics", "metrics_service"]


class CCCPMetrics(Metrics):
    def __init__(self, factory: Any) -> None:
        super().__init__("cccp")
        self.factory = factory
        self.connections = self.counter("connections_total", "Control connections accepted.")
        self.refused = self.counter("connections_refused_total", "Control connections refused (421) at once.")
        self.replies = self.counter("replies_total", "Replies sent, by the command they answer and their code.",
                                    ["command", "code"])
        self.logins_failed = self.counter("logins_failed_total", "Failed logins (530).")
        self.lockouts = self.counter("lockouts_total", "Accounts or addresses locked out after failed logins.")
        self.transfers = self.counter("transfers_total", "Transfers ended, by verb and reply code "
                                      "(ABOR: aborted).", ["verb", "code"])
        self.media_errors = self.counter("stor_media_errors_total", "STORs refused because what came was not "
                                         "the media its TYPE says (not whole TS or RTP packets, none, a "
                                         "different programme...).")
        #: Bytes of the transfers that ended, by direction (sent, received).
        self.bytes_done = {"sent": 0, "received": 0}
        self.gauges(self._now)

    # -- moved where things happen --------------------------------------------------------
    def transfer_ended(self, verb: str, transferred: int, result: Any) -> None:
        code = str(result[0]) if isinstance(result, tuple) else "ABOR"
        self.transfers.labels(verb, code).inc()
        self.bytes_done["received" if verb == "STOR" else "sent"] += transferred

    # -- read at each scrape --------------------------------------------------------------
    def _now(self) -> Samples:
        f = self.factory
        protos = list(f.connections)
        sessions = self.gauge("sessions", "Control connections now, logged in or not.", ["state"])
        sessions.add_metric(["logged_in"], sum(1 for p in protos if p.authenticated))
        sessions.add_metric(["login"], sum(1 for p in protos if not p.authenticated))
        yield sessions
        current = [(p, p.transfers.current) for p in protos if p.transfers.current is not None]
        active = self.gauge("transfers_active", "Transfers in progress, by verb.", ["verb"])
        for verb in ("RETR", "STOR", "LIST", "NLST"):
            active.add_metric([verb], sum(1 for _, t in current if t.verb == verb))
        yield active
        sent = self.bytes_done["sent"] + sum(t.transferred for _, t in current if t.verb != "STOR")
        received = self.bytes_done["received"] + sum(t.transferred for _, t in current if t.verb == "STOR")
        data = CounterMetricFamily("cccp_transfer_bytes", "Bytes moved on data connections, by direction.",
                                   labels=["direction"])
        data.add_metric(["sent"], sent)
        data.add_metric(["received"], received)
        yield data
        yield from self._streams(current)
        realm = getattr(getattr(f, "portal", None), "realm", None)
        yield from self._live(getattr(realm, "store", None))
        yield from self._deck(getattr(realm, "deck", None))
        yield from self._camera(getattr(realm, "camera", None))
        readers = self.gauge("event_readers", "Readers of the status feed (RETR /events) now.")
        readers.add_metric([], len(f.events.readers))
        yield readers

    def _streams(self, current: list[tuple[Any, Any]]) -> Samples:
        labels = ["session", "path"]
        lag = self.gauge("pacing_lag_seconds", "How late the last paced packet of a stream went out.", labels)
        lost = self.gauge("rtcp_fraction_lost", "Fraction of RTP packets lost, as the receiver's last RTCP "
                          "report says.", labels + ["receiver"])
        cumulative = self.gauge("rtcp_packets_lost", "RTP packets lost in all, as the receiver's last RTCP "
                                "report says.", labels + ["receiver"])
        jitter = self.gauge("rtcp_jitter_seconds", "Interarrival jitter the receiver's last RTCP report gives.",
                            labels + ["receiver"])
        missed = self.gauge("live_viewer_missed_packets", "Packets of a live source this viewer missed because "
                            "its data connection could not keep up.", labels)
        for proto, t in current:
            sender = t.sender
            if sender is None:
                continue
            peer = proto.transport.getPeer() if proto.transport is not None else None
            who = [f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', 0)}", t.path]
            if sender.paced:
                lag.add_metric(who, sender.lag)
            gate = getattr(t.source, "gate", None)
            if gate is not None:
                missed.add_metric(who, gate.dropped)
            if sender.rtcp is not None:
                for reporter, block in sender.rtcp.reports.items():
                    r = who + [f"{reporter:08X}"]
                    lost.add_metric(r, block.loss)
                    cumulative.add_metric(r, block.cumulative_lost)
                    jitter.add_metric(r, block.jitter / 90000)
        yield from (lag, lost, cumulative, jitter, missed)

    def _live(self, store: Any) -> Samples:
        live = getattr(store, "live", None) or getattr(getattr(store, "bridge", None), "live", None)
        if live is None:
            return
        running = self.gauge("live_sources", "Live sources running (an encoder, a camera's live view).")
        running.add_metric([], len(live.tees))
        yield running
        viewers = self.gauge("live_viewers", "Viewers of each live source now.", ["source"])
        for (name, pt), tee in live.tees.items():
            viewers.add_metric([f"{name}/{pt}"], len(tee.viewers))
        yield viewers
        missed = CounterMetricFamily("cccp_live_missed_packets", "Packets viewers of a live source missed "
                                     "because their connection could not keep up.", labels=["source"])
        for key, n in live.missed().items():
            missed.add_metric([key], n)
        yield missed

    def _deck(self, deck: Any) -> Samples:
        if deck is None:
            return
        from .events import _tape_now
        op, pos, speed = _tape_now(deck)
        position = self.gauge("deck_position_seconds", "The tape deck's position.")
        position.add_metric([], float(pos))
        yield position
        moving = self.gauge("deck_speed", "The tape deck's speed (1: play, 0: pause, negative: rewind).")
        moving.add_metric([], float(speed))
        yield moving
        state = self.gauge("deck_state", "The tape deck's operation (1 for the current one).", ["state"])
        for name in sorted(set(deck.commands()) | {op}):
            state.add_metric([name], 1.0 if name == op else 0.0)
        yield state

    def _camera(self, camera: Any) -> Samples:
        if camera is None:
            return
        value = self.gauge("camera_control", "The camera's control values now (CSTA).", ["control"])
        if getattr(camera, "remote", False):
            return                                   # a bridged camera: a scrape asks it nothing
        for name in camera.controls():
            status = camera.status(name)
            if isinstance(status, defer.Deferred):
                continue
            cur = status[1]
            value.add_metric([name], float(cur) if isinstance(cur, (Decimal, int, float)) else 0.0)
        yield value
