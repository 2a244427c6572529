"""The edge daemon: devices, controller, grid link and storage assembled from a site config.

Start: open the database (schema upgraded by alembic), restore the open sessions, the recent
household load (forecast and the meter guard's history); the grid link restores its dispatch
commands and issuers' sequence numbers from the same database. Then program the piles' failsafe
and tick. Shutdown (SIGTERM/SIGINT): piles to their safe current, state saved, queues flushed.
After a crash nothing more than `storage.state_period_s` of session progress is lost.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from youxu.config.errors import UserError
from youxu.controller.gridlink import GridLink, NoGridLink
from youxu.controller.loop.fastloop import STATE_KEY, FastLoop
from youxu.controller.loop.siteio import SiteIO
from youxu.controller.loop.thermalwatch import STATE_FIELD as THERMAL_FIELD
from youxu.controller.loop.thermalwatch import thermal_site
from youxu.controller.ops.watchdog import Watchdog
from youxu.controller.siteconfig import SiteConfig
from youxu.controller.store.dispatch_store import SqlDispatchStore
from youxu.controller.store.storage import Store
from youxu.controller.tariff import tariff_fn
from youxu.drivers.clock import Clock, RealClock
from youxu.drivers.failsafe import FailsafeKeeper
from youxu.drivers.pile import ModbusPile
from youxu.scheduler.decision import Controller, SiteLimits
from youxu.scheduler.rolling import PlanningConfig, RollingPlanner

if TYPE_CHECKING:
    from youxu.controller.ops.api_auth import Tokens
    from youxu.controller.ops.api_server import ApiServer

log = logging.getLogger(__name__)

FORECAST_HISTORY_S = 14 * 86400.0  # household load read back at start for the forecast
CONNECT_TIMEOUT_S = 3.0  # the first read of every device, before the loop starts

__all__ = ["STATE_KEY", "Daemon", "make_controller", "open_api", "run_site", "site_limits", "start_api"]


def site_limits(cfg: SiteConfig) -> SiteLimits:
    t = cfg.transformer
    return SiteLimits(import_kw=t.import_limit_kw, export_kw=t.export_limit_kw, phase_kw=cfg.phase_limits_kw(),
                      margin_kw=t.margin_kw)


def planning_config(cfg: SiteConfig) -> PlanningConfig:
    c = cfg.control
    return PlanningConfig(horizon_s=c.horizon_s, step_s=c.step_s, period_s=c.planning_period_s,
                          time_limit_ms=c.solver_time_limit_ms, wear_yuan_per_kwh=c.wear_yuan_per_kwh,
                          threaded=c.plan_in_thread)


def dispatch_memory(cfg: SiteConfig, store: Store | None) -> dict:
    """How the grid link opens its dispatch memory: in the daemon's database (sharing its engine),
    or, without a store, in the configured database on its own."""
    if store is not None:
        return {"open_store": lambda: SqlDispatchStore(store.engine), "owns_store": False}
    url = cfg.storage.database_url()

    def open_own() -> SqlDispatchStore:
        try:
            return SqlDispatchStore.from_url(url)
        except Exception as exc:
            raise UserError(f"storage {url}: cannot open the dispatch tables ({exc})") from None

    return {"open_store": open_own, "owns_store": True}


def make_controller(cfg: SiteConfig, link: GridLink) -> Controller:
    planner = RollingPlanner(planning_config(cfg)) if cfg.control.strategy == "mpc" else None
    return Controller(cfg.pile_model(), site_limits(cfg), cfg.control.strategy, tariff_fn(cfg.tariff, cfg.tz),
                      dispatch=link.limits, tick_s=cfg.control.period_s, planner=planner,
                      thermal=thermal_site(cfg))


@dataclass
class Daemon:
    cfg: SiteConfig
    clock: Clock
    link: GridLink
    store: Store | None
    io: SiteIO
    loop: FastLoop
    watchdog: Watchdog = field(default_factory=lambda: Watchdog({}))
    restored: dict = field(default_factory=dict)

    @classmethod
    def build(cls, cfg: SiteConfig, clock: Clock | None = None, link: GridLink | None = None,
              store: Store | None = None, with_store: bool = True, watchdog: Watchdog | None = None) -> Daemon:
        clock = clock or RealClock()
        if store is None and with_store:
            store = Store.from_config(cfg.storage)
        if link is None:
            link = NoGridLink()
            if cfg.mqtt is not None:
                from youxu.controller.grid.mqtt_link import MqttGridLink

                link = MqttGridLink(cfg, clock, **dispatch_memory(cfg, store), recorder=store)
        io = SiteIO(cfg, clock=clock)
        loop = FastLoop(cfg, io, make_controller(cfg, link), clock, link, store)
        if io.central is not None:
            io.central.on_event = loop.alarm  # refused charge points, rejected profiles: alarms like any other
        d = cls(cfg, clock, link, store, io, loop, watchdog or Watchdog({}))
        loop.listeners.append(d.watchdog.on_tick)
        d.restore()
        return d

    def restore(self) -> None:
        """Open sessions and the recent household load, from the database."""
        if self.store is None:
            return
        if not self.store.migrated:  # the database is away: start without it, the store catches up later
            log.error("database unavailable at start (%s): no sessions or history restored", self.store.last_error)
            return
        st = self.store.load_state(STATE_KEY)
        if st:
            self.loop.tracker.restore(st.get("sessions", {}))
            log.info("restored %d open sessions", len(self.loop.tracker.sessions))
        thermal = self.loop.thermal
        if thermal is not None:
            if thermal.restore((st or {}).get(THERMAL_FIELD)):
                log.info("resumed the transformer's thermal state: hot-spot %.1f °C", thermal.state.hotspot_c)
            else:
                log.warning("no saved thermal state: assuming rated load at %.1f °C ambient until measured",
                            thermal.hottest_c)
        now = self.clock.now()
        hist = self.store.history(now - FORECAST_HISTORY_S)
        keep = hist.t_s <= now
        t_s, base, phase = hist.t_s[keep], hist.base_kw[keep], hist.base_phase_kw[keep]
        planner = self.loop.controller.planner
        if planner is not None and t_s.size:
            planner.forecaster.observe_many(t_s, base, phase)
        guard = self.loop.meter_guard
        raw = self.store.history(now - guard.history_s, raw_only=True)
        keep = raw.t_s <= now
        guard.seed(raw.t_s[keep], raw.base_kw[keep], raw.base_phase_kw[keep])
        self.restored = {"sessions": sorted(s.id for s in self.loop.tracker.sessions.values()),
                         "history_points": int(t_s.size), "history_from_s": float(t_s[0]) if t_s.size else None}
        if t_s.size:
            log.info("read back %d household-load points for the forecast", t_s.size)

    def save(self) -> None:
        self.loop.persist(self.clock.now(), force=True)

    async def leave_safe(self) -> None:
        """Leave every pile at its safe current (on shutdown)."""
        sp = self.loop.safe_setpoints()
        self.io.written_kw[:] = np.nan
        errors = await self.io.write_setpoints(sp, self.clock.now())
        for pid, msg in errors.items():
            log.warning("could not leave %s at its safe current: %s", pid, msg)

    async def program_failsafe(self) -> None:
        """Program every pile's own failsafe; keep-alives then ride on the fast loop's ticks,
        staggered so that no tick carries them all."""
        if not self.cfg.control.failsafe:
            return
        keeper = FailsafeKeeper(self.clock)  # OCPP charge points get theirs from the central system at boot
        await asyncio.gather(*(keeper.program(pile, p.safe_kw, p.id)
                               for p, pile in zip(self.cfg.piles, self.io.piles, strict=True)
                               if isinstance(pile, ModbusPile)))
        now = self.clock.now()
        n = max(len(keeper.states), 1)
        for i, st in enumerate(keeper.states.values()):
            if st.interval_s:
                st.next_due_s = now + st.interval_s * (i + 1) / n
        for w in keeper.warnings():
            log.warning("%s", w)
        self.loop.failsafe = keeper

    async def connect_devices(self) -> None:
        """Open every device connection before the first tick: a tick's timeouts are meant for
        answers, not for TCP handshakes and serial port setup."""
        r = await self.io.read_all(CONNECT_TIMEOUT_S)
        if r.errors:
            log.warning("%d of %d devices did not answer at start", len(r.errors), len(self.io.piles) + 1)

    async def run(self, stop: asyncio.Event, until_s: float | None = None) -> None:
        await self.io.start()
        await self.link.start()
        try:
            await self.connect_devices()
            await self.program_failsafe()
            await self.loop.run(stop, until_s)
        finally:
            self.watchdog.stopping()
            await self.leave_safe()
            self.save()
            await self.link.stop()
            await self.io.stop()

    def close(self) -> None:
        self.io.close()
        if self.loop.controller.planner is not None:
            self.loop.controller.planner.close()
        if self.store is not None:
            self.store.close()


@dataclass
class ApiOpening:
    """The local API's port, bound, and its tokens, read: what can go wrong with it, checked at start."""

    server: ApiServer
    tokens: Tokens


def open_api(cfg: SiteConfig) -> ApiOpening | None:
    """Read `api.tokens_file` and bind `api.listen` (UserError naming the problem); None when off."""
    if not cfg.api.listen:
        return None
    from youxu.controller.ops.api_auth import Tokens, load_tokens
    from youxu.controller.ops.api_server import ApiServer

    tokens = Tokens(load_tokens(cfg.api.tokens_file))
    return ApiOpening(ApiServer(cfg.api.listen), tokens)


def start_api(daemon: Daemon, opening: ApiOpening | None = None) -> ApiServer | None:
    """The local API and status page on `api.listen`, fed by the daemon's loop (None when not configured)."""
    opening = opening or open_api(daemon.cfg)
    if opening is None:
        return None
    from youxu.controller.grid.mqtt_link import MqttGridLink
    from youxu.controller.ops.api import ApiContext, build_app
    from youxu.controller.ops.live import LiveState

    cfg, link, store = daemon.cfg, daemon.link, daemon.store
    commands = link.commands_view if isinstance(link, MqttGridLink) else None
    live = LiveState(cfg, link, commands).attach(daemon.loop)
    ctx = ApiContext(cfg, daemon.clock, live, link, opening.tokens,
                     events=store.recent_events if store is not None else None,
                     engine=store.engine if store is not None else None, recorder=store)
    return opening.server.start(build_app(ctx))


async def run_site(cfg: SiteConfig) -> None:
    """`youxu run`: control the site until SIGTERM/SIGINT."""
    from youxu.controller.ops import logjson
    from youxu.controller.ops.httpserver import MetricsServer
    from youxu.controller.ops.metrics import LoopMetrics

    logjson.configure()
    logging.getLogger("youxu.controller").setLevel(min(logging.getLogger().level, logging.INFO))
    logging.getLogger("alembic").setLevel(logging.WARNING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    opening = open_api(cfg)  # a bad tokens file or a taken port: said before anything starts
    try:
        daemon = Daemon.build(cfg, watchdog=Watchdog())
    except BaseException:
        if opening is not None:
            opening.server.stop()
        raise
    server = api = None
    try:
        if cfg.metrics.listen:
            server = MetricsServer(cfg.metrics.listen, daemon.loop, LoopMetrics(daemon.loop)).start()
        api = start_api(daemon, opening)
        opening = None
        log.info("youxu controlling site %s: %d piles, period %.2f s", cfg.site.id, len(cfg.piles),
                 cfg.control.period_s)
        await daemon.run(stop)
    finally:
        if api is not None:
            api.stop()
        elif opening is not None:  # bound, never started (the metrics port failed)
            opening.server.stop()
        if server is not None:
            server.stop()
        daemon.close()
