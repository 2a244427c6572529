"""The fast loop: every period one snapshot, one decision, the changed setpoints written.

read (meter + all piles, concurrently) -> snapshot -> Controller.decide (plan + safety) ->
write changed setpoints -> report (queued for the grid link and storage, off the hot path).
The loop measures each tick in real time; a tick over its budget is counted, and repeated
overruns put the site in safe mode (`safemode.py`) until the ticks are healthy again.

Faults and what the snapshot makes of them:
- meter unreadable: `MeterGuard` holds the last household load plus a margin, then assumes the
  highest recent household load (`meterguard.py`);
- pile unreachable: assumed at its maximum (`Snapshot.fixed_kw`), kept out of the allocation;
  the bus backs the unit off and retries;
- pile above its setpoint: its measured power is a fixed load (`compliance.py`);
- decide fails: every pile at its safe current, through the safety layer;
- database down: the store buffers (`store/storage.py`), `storewatch.py` raises the alarm;
- wall-clock steps: ticks are scheduled on steady time (`ticker.py`), timestamps shifted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import numpy as np

from youxu.controller.gridlink import GridLink, TickReport
from youxu.controller.loop.compliance import ComplianceWatch
from youxu.controller.loop.loopstats import LoopStats, StatsWindow
from youxu.controller.loop.meterguard import MeterGuard
from youxu.controller.loop.safemode import ENTER, SafeMode
from youxu.controller.loop.sessions import PileObservation, SessionTracker
from youxu.controller.loop.siteio import LOWER_TOL_KW, RAISE_TOL_KW, Readings, SiteIO
from youxu.controller.loop.storewatch import StorageWatch
from youxu.controller.loop.thermalwatch import STATE_FIELD as THERMAL_FIELD
from youxu.controller.loop.thermalwatch import ThermalWatch
from youxu.controller.loop.ticker import Ticker, steady_source
from youxu.controller.siteconfig import SiteConfig
from youxu.controller.storelink import Recorder
from youxu.drivers.clock import Clock
from youxu.drivers.failsafe import FailsafeKeeper
from youxu.scheduler import safety
from youxu.scheduler.decision import Controller, Decision
from youxu.scheduler.model import HardLimits, Snapshot

log = logging.getLogger(__name__)

STATE_KEY = "daemon"
ROUTINE_SUFFIXES = ("_restored", "_cleared", "_recovered", "_obeys_setpoint")  # logged at info, not warning
Listener = Callable[[TickReport, "FastLoop"], None]


class FastLoop:
    def __init__(self, cfg: SiteConfig, io: SiteIO, controller: Controller, clock: Clock, link: GridLink,
                 store: Recorder | None = None) -> None:
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
        self.compliance = ComplianceWatch(self.piles.ids, ctl.pile_tolerance_kw, ctl.pile_ignore_ticks)
        self.safe = SafeMode(ctl.overrun_safe_mode, ctl.safe_mode_exit_ticks)
        self.store_watch = StorageWatch()
        self.thermal = ThermalWatch(cfg, controller.thermal) if controller.thermal is not None else None
        self.last_pile_kw = np.zeros(self.piles.n)
        self.stats = LoopStats()
        self.window = StatsWindow()
        self.last_snapshot: Snapshot | None = None
        self.last_decision: Decision | None = None
        self.last_report: TickReport | None = None
        self.last_setpoints = np.zeros(self.piles.n)
        self.device_errors: dict[str, str] = {}
        self.failsafe: FailsafeKeeper | None = None
        self.listeners: list[Listener] = []
        self.state_period_s = cfg.storage.state_period_s
        self._persisted_s = -math.inf
        self.planner_fallback = False
        self.decide_failed = False
        self.steady, _ = steady_source(clock)
        self.last_tick_steady_s: float | None = None
        self.ticker: Ticker | None = None

    @property
    def safe_mode(self) -> bool:
        return self.safe.active

    def tick_age_s(self) -> float | None:
        """Steady seconds since the last completed tick (None before the first); any thread may ask."""
        last = self.last_tick_steady_s
        return None if last is None else max(0.0, self.steady() - last)

    # ---- alarms ----------------------------------------------------------------------
    def alarm(self, kind: str, message: str, **fields: object) -> None:
        """An event for the grid (`GridLink.event`), the events table and the log."""
        routine = (kind.startswith(("session_", "pile_override")) or kind == "car_full"
                   or kind.endswith(ROUTINE_SUFFIXES))
        extra = {"kind": kind, **{k: fields[k] for k in ("pile", "device") if k in fields}}
        log.log(logging.INFO if routine else logging.WARNING, "%s: %s", kind, message, extra=extra)
        try:
            self.link.event(kind, message, **fields)
        except Exception:
            log.exception("grid link: event %s failed", kind)
        if self.store is not None:
            self.store.event(self.clock.now(), kind, message, dict(fields))

    # ---- snapshot ------------------------------------------------------------------
    def snapshot(self, t_s: float, r: Readings, told_kw: np.ndarray | None = None) -> Snapshot:
        online = np.array([p is not None for p in r.piles], dtype=bool)
        pile_kw = np.array([p.power_kw if p is not None else self.last_pile_kw[i] for i, p in enumerate(r.piles)])
        self.last_pile_kw = pile_kw
        plugged = np.array([p is not None and p.plugged for p in r.piles], dtype=bool)
        # an unreachable pile is assumed to draw its maximum; we cannot steer it
        fixed = np.where(online, np.nan, self.piles.max_kw)
        if told_kw is not None:
            rogue, alarms = self.compliance.check(pile_kw, online, told_kw)
            fixed = np.where(rogue, pile_kw, fixed)  # it draws what it draws: a fixed load
            for pid, kind, fields in alarms:
                what = "ignores its setpoint" if kind.endswith("ignores_setpoint") else "follows its setpoint again"
                self.alarm(kind, f"pile {pid} {what}", pile=pid, **fields)
        share = self.piles.phase_share
        if r.meter is not None:
            meter_kw = r.meter.power_kw
            meter_phase = r.meter.phase_power_kw
            base = meter_kw - pile_kw.sum()
            if self.meter_guard.observe(t_s, base, None if meter_phase is None else meter_phase - pile_kw @ share):
                self.alarm("meter_restored", "the transformer meter answers again")
        else:
            a, entered = self.meter_guard.assumed(t_s)
            base_phase = a.base_phase_kw
            if a.state == "unknown":  # nothing known yet: no headroom at all
                base_phase = np.full(3, self.controller.site.import_kw / 3.0)
            meter_phase = base_phase + pile_kw @ share
            meter_kw = float(base_phase.sum() + pile_kw.sum()) if a.state == "unknown" else a.base_kw + pile_kw.sum()
            if entered is not None:
                self._meter_alarm(entered, a.base_kw, t_s)
        thermal_now = None
        if self.thermal is not None:
            thermal_now = self.thermal.advance(t_s, meter_kw)
            for kind, message, fields in self.thermal.alarms():
                self.alarm(kind, message, **fields)
        return Snapshot(t_s=t_s, meter_kw=meter_kw, meter_phase_kw=meter_phase, pile_kw=pile_kw,
                        pile_online=online, pile_plugged=plugged, sessions=self.tracker.arrays(),
                        meter_ok=r.meter is not None, fixed_kw=fixed, thermal=thermal_now)

    def _observe_ambient(self, t_s: float, r: Readings) -> None:
        """Feed a measured ambient source (the grid's `ambient` topic, a meter register) to the thermal state."""
        th = self.thermal
        assert th is not None
        src = th.ambient_cfg
        if src.mqtt:
            reading = self.link.ambient()
            if reading is not None:
                th.observe_ambient(*reading)
        elif src.meter_register is not None and r.meter is not None:
            c = r.meter.temperatures_c.get(src.meter_register)
            if c is not None:
                th.observe_ambient(t_s, c)

    def _meter_alarm(self, state: str, assumed_kw: float, t_s: float) -> None:
        g = self.meter_guard
        if state == "held":
            self.alarm("meter_lost", f"transformer meter unreadable; holding the last household load plus "
                       f"{g.margin_kw:g} kW for {g.grace_s:g} s", assumed_base_kw=round(assumed_kw, 3))
        elif state == "safe":
            held_kw, ev_kw, limit_kw = self._import_limits(t_s)  # the tightest in force: transformer or dispatch
            ev_limit_kw = max(0.0, min(held_kw - assumed_kw, ev_kw))
            self.alarm("meter_safe_limit", f"transformer meter still unreadable; piles limited to "
                       f"{ev_limit_kw:.1f} kW in all (the highest recent household load plus {g.margin_kw:g} kW "
                       f"assumed, under a site limit of {limit_kw:.1f} kW)", assumed_base_kw=round(assumed_kw, 3),
                       ev_limit_kw=round(ev_limit_kw, 3), limit_kw=round(limit_kw, 3))
        else:
            self.alarm("meter_safe_limit", "transformer meter unreadable and no recent reading: piles paused",
                       ev_limit_kw=0.0)

    def _import_limits(self, t_s: float) -> tuple[float, float, float]:
        """The import limits in force at `t_s`: (site as the safety layer holds it, margin off; EV sum;
        the site's tightest limit as reported)."""
        try:
            limits, limit_kw = self.controller.hard_limits(t_s)
            return limits.import_kw, limits.ev_import_kw, limit_kw
        except Exception:
            log.exception("dispatch limits unavailable; transformer limits only")
            s = self.controller.site
            return s.import_kw - s.margin_kw, float("inf"), s.import_kw

    # ---- deciding ------------------------------------------------------------------
    def _safe_decision(self, snap: Snapshot) -> tuple[np.ndarray, HardLimits, float]:
        """Every pile at its safe current, through the safety layer."""
        try:
            limits, limit_kw = self.controller.hard_limits(snap.t_s, snap.thermal, snap.base_kw)
        except Exception:
            log.exception("dispatch limits unavailable; transformer limits only")
            s = self.controller.site
            limits, limit_kw = HardLimits(s.import_kw - s.margin_kw, s.export_kw, s.phase_kw), s.import_kw
        sp = safety.enforce(self.safe_setpoints(), self.piles, snap, limits, urgent=snap.sessions.urgent)
        return sp, limits, limit_kw

    def _overrides(self, t_s: float) -> None:
        """Take the overrides asked for since the last tick, end those whose time is up (each an event)."""
        changed = False
        for o in self.link.take_overrides():
            try:
                what = self.tracker.apply_override(o)
            except ValueError as exc:
                self.alarm("override_rejected", str(exc), pile=o.pile_id)
                continue
            changed = True
            until = f" for {max(0.0, o.until_s - t_s) / 60:.0f} min" if o.action != "resume" else ""
            self.alarm("pile_override", f"pile {o.pile_id}: {what}{until}" + (f" (by {o.by})" if o.by else ""),
                       pile=o.pile_id, action=o.action, until_s=o.until_s if o.action != "resume" else None,
                       by=o.by or None)
        for o in self.tracker.expire_overrides(t_s):
            changed = True
            self.alarm("pile_override_ended", f"pile {o.pile_id}: {o.action} ended", pile=o.pile_id, action=o.action)
        if changed and self.controller.planner is not None:
            self.controller.planner.invalidate()  # plan again with the pile paused, urgent or back

    def decide(self, snap: Snapshot) -> tuple[np.ndarray, HardLimits, float, Decision | None]:
        """(setpoints kW, the hard limits in force, the tightest import limit without margin, the decision)."""
        sp, limits, limit_kw, dec = self._decide(snap)
        paused = self.tracker.override_mask("pause")
        if paused.any():  # a paused pile draws nothing (lowering a setpoint never breaks a limit)
            sp = np.where(paused, np.minimum(sp, 0.0), sp)
        return sp, limits, limit_kw, dec

    def _decide(self, snap: Snapshot) -> tuple[np.ndarray, HardLimits, float, Decision | None]:
        if self.safe.active:
            return (*self._safe_decision(snap), None)
        try:
            dec = self.controller.decide(snap)
        except Exception as exc:
            self.stats.decide_errors += 1
            if not self.decide_failed:
                log.exception("decision failed")
                self.alarm("decide_error", f"the controller failed ({type(exc).__name__}: {exc}); piles at their "
                           "safe current")
            self.decide_failed = True
            return (*self._safe_decision(snap), None)
        if self.decide_failed:
            self.decide_failed = False
            self.alarm("decide_restored", "the controller decides again")
        if dec.planned and dec.fallback != self.planner_fallback:
            self.planner_fallback = dec.fallback
            status = dec.plan.status if dec.plan is not None else "unknown"
            if dec.fallback:
                self.alarm("planner_fallback", f"planner fell back to least-laxity-first ({status})", status=status)
            else:
                self.alarm("planner_recovered", "the optimizer plans again", status=status)
        return dec.setpoints_kw, dec.limits, dec.limit_kw, dec

    # ---- one tick ------------------------------------------------------------------
    async def tick(self) -> TickReport:
        t_s = self.clock.now()
        t0 = time.perf_counter()
        read_timeout = max(0.05, 0.6 * self.budget_ms / 1000.0)
        r = await self.io.read_all(read_timeout)
        told = self.io.written_kw.copy()  # what each pile was last told (before this tick writes)
        t_read = time.perf_counter()
        for b in self.link.take_bookings():
            try:
                self.tracker.apply_booking(b)
            except ValueError as exc:
                self.alarm("booking_rejected", str(exc), pile=b.pile_id)
        self._overrides(t_s)
        obs = {
            pid: (None if p is None else PileObservation(p.status, p.power_kw, p.energy_kwh, p.soc))
            for pid, p in zip(self.piles.ids, r.piles, strict=True)
        }
        offered = dict(zip(self.piles.ids, self.last_setpoints.tolist(), strict=True))
        mins = dict(zip(self.piles.ids, self.piles.min_kw.tolist(), strict=True))
        for pid, change in self.tracker.update(t_s, obs, offered, mins):
            self.alarm(change, f"pile {pid}: {change.replace('_', ' ')}", pile=pid)
        self._report_device_errors(r.errors)
        if self.thermal is not None:
            self._observe_ambient(t_s, r)
        snap = self.snapshot(t_s, r, told)
        self.last_snapshot = snap
        safe_now = self.safe.active
        sp, limits, limit_kw, dec = self.decide(snap)
        self.last_decision = dec
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
        plan_ms = dec.plan_ms if dec is not None and dec.planned else None
        fallback = bool(dec is not None and dec.fallback)
        over = self.stats.account(tick_ms, self.budget_ms, plan_ms, fallback)
        if over and (self.stats.consecutive_overruns == 1 or self.stats.deadline_misses % 100 == 0):
            log.warning("tick took %.1f ms (budget %.0f ms); %d misses so far", tick_ms, self.budget_ms,
                        self.stats.deadline_misses)
        report = self._report(t_s, snap, sp, limits, limit_kw, r, tick_ms, safe_now, told)
        self.last_report = report
        self._after(report, snap, over, plan_ms, fallback)
        return report

    def _after(self, report: TickReport, snap: Snapshot, over: bool, plan_ms: float | None, fallback: bool) -> None:
        """Everything after the writes: safe mode, the grid link, storage, listeners (never raises)."""
        change = self.safe.observe(over)
        if change == ENTER:
            self.alarm("safe_mode", f"{self.safe.enter_after} ticks in a row over the {self.budget_ms:g} ms budget: "
                       "piles at their safe current", overruns=self.safe.enter_after, budget_ms=self.budget_ms)
        elif change is not None:
            self.alarm("safe_mode_cleared", f"{self.safe.exit_after} healthy ticks: normal control again")
        self.link.after_tick(report)
        t_s = report.t_s
        if self.store is not None:
            store = self.store
            store.tick(report, self.tracker.drain_finished(),
                       base_phase_kw=snap.base_phase_kw(self.piles.phase_share), meter_ok=snap.meter_ok)
            if self.window.due(t_s):
                store.loop_stats(self.window.row(store.dropped, store.depth))
            self.persist(t_s)
            for kind, message, fields in self.store_watch.check(store, t_s):
                self.alarm(kind, message, **fields)
        self.window.add(t_s, report.tick_ms, over, plan_ms, fallback, report.safe_mode)
        self.last_tick_steady_s = self.steady()
        for fn in self.listeners:
            try:
                fn(report, self)
            except Exception:
                log.exception("tick listener failed")

    def persist(self, t_s: float, force: bool = False) -> None:
        """Save the open sessions (state to restore, and their rows) every `state_period_s`."""
        if self.store is None:
            return
        if not force and 0.0 <= t_s - self._persisted_s < self.state_period_s:
            return
        self._persisted_s = t_s
        state: dict = {"sessions": self.tracker.to_state()}
        if self.thermal is not None:
            state[THERMAL_FIELD] = self.thermal.to_state()
        self.store.save_state(STATE_KEY, state, t_s)
        self.store.sessions_open(list(self.tracker.sessions.values()), t_s)

    def safe_setpoints(self) -> np.ndarray:
        """Every pile at its safe current (the configured failsafe, else its minimum)."""
        out = np.zeros(self.piles.n)
        for i, p in enumerate(self.cfg.piles):
            out[i] = p.safe_kw
        return out

    def _report_device_errors(self, errors: dict[str, str], writing: bool = False) -> None:
        for name, msg in errors.items():
            key = f"{name}:{'w' if writing else 'r'}"
            if key not in self.device_errors:
                self.alarm("device_fault", f"{name}: {msg}", device=name)
            self.device_errors[key] = msg
        for key in [k for k in self.device_errors if k.endswith(":w" if writing else ":r")]:
            if key.split(":")[0] not in errors:
                del self.device_errors[key]
                self.alarm("device_restored", f"{key.split(':')[0]} answers again", device=key.split(":")[0])

    def settled(self, snap: Snapshot, told_kw: np.ndarray, sp: np.ndarray) -> bool:
        """Whether every reachable pile draws what it was told before this tick (a car may draw less)
        and this tick's setpoint for it is the same: nothing the controller does will move the site."""
        on = snap.pile_online
        told, new, kw = told_kw[on], sp[on], snap.pile_kw[on]
        if np.isnan(told).any():  # never written, or the last write failed: not known to be settled
            return False
        tol = self.cfg.control.pile_tolerance_kw
        same = (new >= told - LOWER_TOL_KW) & (new <= told + RAISE_TOL_KW)
        follows = (kw <= np.maximum(told, 0.0) + tol) & (kw >= np.minimum(told, 0.0) - tol)
        return bool((same & follows).all())

    def _report(self, t_s: float, snap: Snapshot, sp: np.ndarray, limits: HardLimits, limit_kw: float,
                r: Readings, tick_ms: float, safe_mode: bool, told_kw: np.ndarray | None = None) -> TickReport:
        ids = self.piles.ids
        ev = float(snap.pile_kw.sum())
        ph = snap.meter_phase_kw
        return TickReport(
            t_s=t_s, total_kw=snap.meter_kw, base_kw=snap.meter_kw - ev, ev_kw=ev,
            phase_kw=None if ph is None else (float(ph[0]), float(ph[1]), float(ph[2])),
            limit_kw=limit_kw, export_limit_kw=float(limits.export_kw),
            setpoints_kw=dict(zip(ids, np.round(sp, 3).tolist(), strict=True)),
            pile_status={pid: (p.status if p is not None else "unknown") for pid, p in zip(ids, r.piles, strict=True)},
            pile_power_kw=dict(zip(ids, np.round(snap.pile_kw, 3).tolist(), strict=True)),
            pile_session=dict(zip(ids, snap.sessions.ids, strict=True)),
            pile_energy_kwh=dict(zip(ids, np.round(snap.sessions.energy_delivered_kwh, 3).tolist(), strict=True)),
            tick_ms=tick_ms, safe_mode=safe_mode, meter_ok=snap.meter_ok,
            unreachable_piles=tuple(pid for pid, on in zip(ids, snap.pile_online, strict=True) if not on),
            settled=told_kw is not None and self.settled(snap, told_kw, sp),
            thermal=None if self.thermal is None else self.thermal.telemetry(
                self.controller.site_import_kw(snap.thermal, snap.base_kw)),
        )

    # ---- the loop ------------------------------------------------------------------
    def on_clock_step(self, step_s: float) -> None:
        """The wall clock jumped by `step_s` between two ticks: move the loop's timestamps with it."""
        self.stats.clock_steps += 1
        self.tracker.shift_time(step_s)
        self.meter_guard.shift_time(step_s)
        if self.thermal is not None:
            self.thermal.shift_time(step_s)
        self.io.written_at += step_s
        self._persisted_s += step_s
        if self.failsafe is not None:
            for st in self.failsafe.states.values():
                if st.next_due_s is not None:
                    st.next_due_s += step_s
        if self.controller.planner is not None:
            self.controller.planner.invalidate()  # plan again on the corrected time
        self.alarm("clock_step", f"the wall clock stepped by {step_s:+.1f} s; ticks keep their period",
                   step_s=round(step_s, 3))

    async def run(self, stop: asyncio.Event, until_s: float | None = None) -> None:
        """Tick every period until `stop` is set (or the clock passes `until_s`)."""
        self.ticker = ticker = Ticker(self.clock, self.period_s)
        while not stop.is_set():
            slot = await ticker.next(stop)
            if slot is None or (until_s is not None and slot.wall_s >= until_s):
                break
            if slot.step_s:
                self.on_clock_step(slot.step_s)
            try:
                await self.tick()
            except Exception:  # the loop must survive anything a tick throws
                log.exception("tick failed")
                self.stats.tick_errors += 1
                self.alarm("tick_error", "a control tick failed; piles keep their last setpoints")
            self.stats.skipped_periods += ticker.done()

    def tick_percentiles(self) -> tuple[float, float]:
        arr = np.asarray(self.stats.tick_ms) if self.stats.tick_ms else np.zeros(1)
        return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))
