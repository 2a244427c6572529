"""The fast loop: every period one snapshot, one decision, the changed setpoints written.

read (meter + all piles, concurrently) -> snapshot -> Controller.decide (plan + safety) ->
write changed setpoints -> report (queued for the grid link and storage, off the hot path).
The loop measures each tick in real time; a tick over its budget is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from controller.clock import Clock
from controller.decision import Controller
from controller.gridlink import GridLink, TickReport
from controller.sessions import PileObservation, SessionTracker
from controller.siteconfig import SiteConfig
from controller.siteio import Readings, SiteIO
from drivers.failsafe import FailsafeKeeper
from scheduler.model import Snapshot

log = logging.getLogger(__name__)


@dataclass
class LoopStats:
    ticks: int = 0
    deadline_misses: int = 0
    consecutive_overruns: int = 0
    tick_ms: deque = field(default_factory=lambda: deque(maxlen=100_000))
    plan_ms: list = field(default_factory=list)
    fallbacks: int = 0
    phase_ms: dict = field(default_factory=lambda: {"read": deque(maxlen=10_000), "decide": deque(maxlen=10_000),
                                                    "write": deque(maxlen=10_000)})


class MeterGuard:
    """What to believe about the household load when the meter cannot be read."""

    def __init__(self, grace_s: float, margin_kw: float, history_s: float = 3600.0) -> None:
        self.grace_s = grace_s
        self.margin_kw = margin_kw
        self.history_s = history_s
        self.last_ok_s: float | None = None
        self.last_base_kw = 0.0
        self.last_phase_frac = np.full(3, 1 / 3)
        self.recent: deque[tuple[float, float]] = deque()

    def observe(self, t_s: float, base_kw: float, phase_base_kw: np.ndarray | None) -> None:
        self.last_ok_s, self.last_base_kw = t_s, base_kw
        if phase_base_kw is not None and base_kw > 1e-3:
            self.last_phase_frac = np.clip(phase_base_kw / base_kw, 0.0, 1.0)
        self.recent.append((t_s, base_kw))
        while self.recent and self.recent[0][0] < t_s - self.history_s:
            self.recent.popleft()

    def assumed_base_kw(self, t_s: float) -> tuple[float, str]:
        """Held value plus a margin within the grace time, then the highest recent load."""
        if self.last_ok_s is not None and t_s - self.last_ok_s <= self.grace_s:
            return self.last_base_kw + self.margin_kw, "held"
        peak = max((b for _, b in self.recent), default=None)
        if peak is None:
            return float("inf"), "unknown"
        return peak + self.margin_kw, "safe"


class FastLoop:
    def __init__(self, cfg: SiteConfig, io: SiteIO, controller: Controller, clock: Clock, link: GridLink,
                 store: object | None = None) -> None:
        self.cfg = cfg
        self.io = io
        self.controller = controller
        self.clock = clock
        self.link = link
        self.store = store
        self.piles = controller.piles
        ctl = cfg.control
        self.period_s = ctl.period_s
        self.budget_ms = ctl.budget_ms
        self.tracker = SessionTracker(self.piles.ids, ctl.default_dwell_s, ctl.default_energy_kwh,
                                      cfg.mqtt.booking_window_s if cfg.mqtt else 1800.0)
        self.meter_guard = MeterGuard(ctl.meter_grace_s, cfg.transformer.margin_kw)
        self.last_pile_kw = np.zeros(self.piles.n)
        self.stats = LoopStats()
        self.last_snapshot: Snapshot | None = None
        self.last_setpoints = np.zeros(self.piles.n)
        self.safe_mode = False
        self.device_errors: dict[str, str] = {}
        self.failsafe: FailsafeKeeper | None = None

    # ---- snapshot ------------------------------------------------------------------
    def snapshot(self, t_s: float, r: Readings) -> Snapshot:
        n = self.piles.n
        online = np.array([p is not None for p in r.piles], dtype=bool)
        pile_kw = np.array([p.power_kw if p is not None else self.last_pile_kw[i] for i, p in enumerate(r.piles)])
        self.last_pile_kw = pile_kw
        plugged = np.array([p is not None and p.plugged for p in r.piles], dtype=bool)
        # an unreachable pile is assumed to draw its maximum; we cannot steer it
        fixed = np.where(online, np.nan, self.piles.max_kw)
        share = self.piles.phase_share
        if r.meter is not None:
            meter_kw = r.meter.power_kw
            meter_phase = r.meter.phase_power_kw
            base = meter_kw - pile_kw.sum()
            self.meter_guard.observe(t_s, base, None if meter_phase is None else meter_phase - pile_kw @ share)
            meter_ok = True
        else:
            base, _how = self.meter_guard.assumed_base_kw(t_s)
            if not np.isfinite(base):
                base = self.controller.site.import_kw  # nothing known yet: no headroom at all
            meter_kw = base + pile_kw.sum()
            meter_phase = base * self.meter_guard.last_phase_frac + pile_kw @ share
            meter_ok = False
        if n and not online.any() and r.meter is None:
            fixed = self.piles.max_kw.copy()
        return Snapshot(t_s=t_s, meter_kw=meter_kw, meter_phase_kw=meter_phase, pile_kw=pile_kw,
                        pile_online=online, pile_plugged=plugged, sessions=self.tracker.arrays(),
                        meter_ok=meter_ok, fixed_kw=fixed)

    # ---- one tick ------------------------------------------------------------------
    async def tick(self) -> TickReport:
        t_s = self.clock.now()
        t0 = time.perf_counter()
        read_timeout = max(0.05, 0.6 * self.budget_ms / 1000.0)
        r = await self.io.read_all(read_timeout)
        t_read = time.perf_counter()
        for b in self.link.take_bookings():
            try:
                self.tracker.apply_booking(b)
            except ValueError as exc:
                self.link.event("booking_rejected", str(exc), pile=b.pile_id)
        obs = {
            pid: (None if p is None else PileObservation(p.status, p.power_kw, p.energy_kwh, p.soc))
            for pid, p in zip(self.piles.ids, r.piles, strict=True)
        }
        offered = dict(zip(self.piles.ids, self.last_setpoints.tolist(), strict=True))
        mins = dict(zip(self.piles.ids, self.piles.min_kw.tolist(), strict=True))
        for pid, change in self.tracker.update(t_s, obs, offered, mins):
            self.link.event(change, f"pile {pid}: {change.replace('_', ' ')}", pile=pid)
        self._report_device_errors(r.errors)
        snap = self.snapshot(t_s, r)
        self.last_snapshot = snap
        dec = self.controller.decide(snap)
        sp = dec.setpoints_kw
        if self.safe_mode:
            sp = self.safe_setpoints()
        sp = np.trunc(sp * 1000.0) / 1000.0  # whole watts, towards zero: rounding never adds load
        t_decide = time.perf_counter()
        write_timeout = max(0.05, self.budget_ms / 1000.0 - (t_decide - t0))
        werr = await self.io.write_setpoints(sp, t_s, write_timeout)
        t_write = time.perf_counter()
        ph = self.stats.phase_ms
        ph["read"].append((t_read - t0) * 1e3)
        ph["decide"].append((t_decide - t_read) * 1e3)
        ph["write"].append((t_write - t_decide) * 1e3)
        self._report_device_errors(werr, writing=True)
        self.last_setpoints = sp
        if self.failsafe is not None:
            await self.failsafe.tick()  # keep-alives that are due: only a live loop sends them
        tick_ms = (time.perf_counter() - t0) * 1e3
        self._account(tick_ms, dec)
        report = self._report(t_s, snap, sp, dec.limit_kw, r, tick_ms)
        self.link.after_tick(report)
        if self.store is not None:
            self.store.tick(report, self.tracker.drain_finished())  # type: ignore[attr-defined]
        return report

    def safe_setpoints(self) -> np.ndarray:
        """Every pile at its safe current (the configured failsafe, else its minimum)."""
        out = np.zeros(self.piles.n)
        for i, p in enumerate(self.cfg.piles):
            amps = p.failsafe_a if p.failsafe_a is not None else p.min_a
            out[i] = p.amps_to_kw(amps) if amps > 0 else 0.0
        return out

    def _account(self, tick_ms: float, dec) -> None:
        st = self.stats
        st.ticks += 1
        st.tick_ms.append(tick_ms)
        if dec.planned:
            st.plan_ms.append(dec.plan_ms)
            st.fallbacks += int(dec.fallback)
        if tick_ms > self.budget_ms:
            st.deadline_misses += 1
            st.consecutive_overruns += 1
            log.warning("tick took %.1f ms (budget %.0f ms)", tick_ms, self.budget_ms)
        else:
            st.consecutive_overruns = 0

    def _report_device_errors(self, errors: dict[str, str], writing: bool = False) -> None:
        for name, msg in errors.items():
            key = f"{name}:{'w' if writing else 'r'}"
            if key not in self.device_errors:
                self.link.event("device_fault", f"{name}: {msg}", device=name)
            self.device_errors[key] = msg
        for key in [k for k in self.device_errors if k.endswith(":w" if writing else ":r")]:
            if key.split(":")[0] not in errors:
                del self.device_errors[key]
                self.link.event("device_restored", f"{key.split(':')[0]} answers again", device=key.split(":")[0])

    def _report(self, t_s: float, snap: Snapshot, sp: np.ndarray, limit_kw: float, r: Readings,
                tick_ms: float) -> TickReport:
        ids = self.piles.ids
        ev = float(snap.pile_kw.sum())
        ph = snap.meter_phase_kw
        return TickReport(
            t_s=t_s, total_kw=snap.meter_kw, base_kw=snap.meter_kw - ev, ev_kw=ev,
            phase_kw=None if ph is None else (float(ph[0]), float(ph[1]), float(ph[2])),
            limit_kw=limit_kw,
            setpoints_kw=dict(zip(ids, np.round(sp, 3).tolist(), strict=True)),
            pile_status={pid: (p.status if p is not None else "unknown") for pid, p in zip(ids, r.piles, strict=True)},
            pile_power_kw=dict(zip(ids, np.round(snap.pile_kw, 3).tolist(), strict=True)),
            pile_session=dict(zip(ids, snap.sessions.ids, strict=True)),
            pile_energy_kwh=dict(zip(ids, np.round(snap.sessions.energy_delivered_kwh, 3).tolist(), strict=True)),
            tick_ms=tick_ms, safe_mode=self.safe_mode,
        )

    # ---- the loop ------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, until_s: float | None = None) -> None:
        """Tick every period until `stop` is set (or the clock passes `until_s`)."""
        next_t = self.clock.now()
        while not stop.is_set():
            if until_s is not None and next_t >= until_s:
                break
            await self.clock.sleep_until(next_t)
            if stop.is_set():
                break
            try:
                await self.tick()
            except Exception:  # the loop must survive anything a tick throws
                log.exception("tick failed")
                self.link.event("tick_error", "a control tick failed; piles keep their last setpoints")
            now = self.clock.now()
            next_t += self.period_s
            if now > next_t:  # overran one or more periods: skip them, never run ticks back to back
                skipped = int((now - next_t) // self.period_s) + 1
                next_t += skipped * self.period_s

    def tick_percentiles(self) -> tuple[float, float]:
        arr = np.asarray(self.stats.tick_ms) if self.stats.tick_ms else np.zeros(1)
        return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))
