"""Prometheus metrics for the daemon (prometheus-client), on a registry of its own.

Two histograms are fed by the loop after each tick (two observations: microseconds); every
other value is read from the loop, the store and the grid link when Prometheus scrapes, so
the hot path pays nothing for per-pile series.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from youxu.controller.gridlink import TickReport

if TYPE_CHECKING:
    from youxu.controller.loop.fastloop import FastLoop

TICK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
PLAN_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=list(labels) if labels else None)
    if labels:
        g.add_metric(list(labels.values()), value)
    else:
        g.add_metric([], value)
    return g


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class LoopCollector(Collector):
    def __init__(self, loop: FastLoop, stall_s: float) -> None:
        self.loop = loop
        self.stall_s = stall_s

    def collect(self) -> Iterator[Metric]:
        lp = self.loop
        st = lp.stats
        yield _counter("youxu_ticks", "control ticks run", st.ticks)
        yield _counter("youxu_tick_deadline_misses", "ticks over their budget", st.deadline_misses)
        yield _counter("youxu_tick_skipped_periods", "periods skipped after overruns", st.skipped_periods)
        yield _counter("youxu_tick_errors", "ticks that raised", st.tick_errors)
        yield _counter("youxu_planner_fallbacks", "plans that fell back to the heuristic", st.fallbacks)
        yield _counter("youxu_decide_errors", "ticks whose decision failed (safe current used)", st.decide_errors)
        yield _counter("youxu_clock_steps", "wall-clock steps seen between ticks", st.clock_steps)
        yield _counter("youxu_safe_mode_entries", "times safe mode was entered", lp.safe.entered)
        yield _gauge("youxu_safe_mode", "1 while in safe mode", float(lp.safe.active))
        yield _gauge("youxu_tick_budget_seconds", "the tick's time budget", lp.budget_ms / 1e3)
        age = lp.tick_age_s()
        yield _gauge("youxu_last_tick_age_seconds", "steady time since the last completed tick",
                     age if age is not None else math.inf)
        yield _gauge("youxu_loop_stalled", "1 when no tick completed within the stall time",
                     float(age is None or age > self.stall_s))
        yield _gauge("youxu_sessions_open", "open charging sessions", len(lp.tracker.sessions))
        yield _gauge("youxu_meter_ok", "1 when the transformer meter was read this tick",
                     float(lp.meter_guard.state == "ok"))
        r = lp.last_report
        if r is not None:
            yield _gauge("youxu_site_power_kw", "transformer load (measured or assumed)", r.total_kw)
            yield _gauge("youxu_household_power_kw", "household (non-EV) load", r.base_kw)
            yield _gauge("youxu_ev_power_kw", "sum of the piles' power", r.ev_kw)
            yield _gauge("youxu_limit_kw", "tightest import limit in force", r.limit_kw)
            yield _gauge("youxu_headroom_kw", "import limit minus transformer load", r.limit_kw - r.total_kw)
            if r.phase_kw is not None:
                g = GaugeMetricFamily("youxu_phase_power_kw", "load per phase", labels=["phase"])
                for i, v in enumerate(r.phase_kw):
                    g.add_metric([f"L{i + 1}"], v)
                yield g
            power = GaugeMetricFamily("youxu_pile_power_kw", "measured power per pile", labels=["pile"])
            setp = GaugeMetricFamily("youxu_pile_setpoint_kw", "setpoint per pile", labels=["pile"])
            online = GaugeMetricFamily("youxu_pile_online", "1 when the pile was read this tick", labels=["pile"])
            rogue = GaugeMetricFamily("youxu_pile_ignoring_setpoint", "1 while the pile ignores its setpoint",
                                      labels=["pile"])
            for i, pid in enumerate(lp.piles.ids):
                power.add_metric([pid], r.pile_power_kw.get(pid, math.nan))
                setp.add_metric([pid], r.setpoints_kw.get(pid, math.nan))
                online.add_metric([pid], float(r.pile_status.get(pid) != "unknown"))
                rogue.add_metric([pid], float(lp.compliance.flagged[i]))
            yield from (power, setp, online, rogue)
        yield from self._store()
        yield from self._link()

    def _store(self) -> Iterator[Metric]:
        s = self.loop.store
        if s is None:
            return
        yield _gauge("youxu_storage_up", "1 while the database takes writes", float(getattr(s, "db_ok", True)))
        depth = GaugeMetricFamily("youxu_storage_queue_depth", "rows waiting for the database", labels=["queue"])
        for q, n in s.depths().items():
            depth.add_metric([q], n)
        yield depth
        dropped = CounterMetricFamily("youxu_storage_rows_dropped", "rows dropped from full queues", labels=["kind"])
        dropped.add_metric(["bulk"], s.dropped_bulk)
        dropped.add_metric(["keep"], s.dropped_keep)
        yield dropped
        yield _counter("youxu_storage_rows_written", "rows written to the database", s.written)
        yield _counter("youxu_storage_write_failures", "failed write attempts", s.write_failures)
        yield _counter("youxu_storage_file_replaced", "times the database file was found deleted or replaced",
                       getattr(s, "replaced", 0))

    def _link(self) -> Iterator[Metric]:
        link = self.loop.link
        if hasattr(link, "connected"):
            yield _gauge("youxu_grid_link_connected", "1 while connected to the broker", float(link.connected))
        if hasattr(link, "link_lost"):
            yield _gauge("youxu_grid_link_lost", "1 while the grid is silent past link_loss_s", float(link.link_lost))
        stats = getattr(getattr(link, "conn", None), "stats", None)
        if stats is not None:
            yield _counter("youxu_telemetry_dropped", "telemetry messages dropped while the broker was slow",
                           getattr(stats, "telemetry_dropped", 0))
            yield _counter("youxu_mqtt_published", "MQTT messages published", getattr(stats, "published", 0))


class LoopMetrics:
    """The daemon's registry: call `on_tick` after every tick (a loop listener)."""

    def __init__(self, loop: FastLoop, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.stall_s = stall_time_s(loop.period_s, loop.budget_ms)
        self.tick_seconds = Histogram("youxu_tick_duration_seconds", "duration of a control tick",
                                      buckets=TICK_BUCKETS_S, registry=self.registry)
        self.plan_seconds = Histogram("youxu_plan_duration_seconds", "time the decision spent planning",
                                      buckets=PLAN_BUCKETS_S, registry=self.registry)
        self.registry.register(LoopCollector(loop, self.stall_s))
        loop.listeners.append(self.on_tick)

    def on_tick(self, report: TickReport, loop: FastLoop) -> None:
        self.tick_seconds.observe(report.tick_ms / 1e3)
        dec = loop.last_decision
        if dec is not None and dec.planned:
            self.plan_seconds.observe(dec.plan_ms / 1e3)


def stall_time_s(period_s: float, budget_ms: float) -> float:
    """How long without a completed tick before the loop counts as stalled."""
    return max(3.0 * period_s, 2.0 * budget_ms / 1e3, 5.0)
