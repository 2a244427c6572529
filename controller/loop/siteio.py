"""The site's devices as one process image: read everything at once, write what changed."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from youxu.controller.loop.ocpp_site import build_central
from youxu.controller.siteconfig import SiteConfig
from youxu.drivers.clock import Clock, RealClock
from youxu.drivers.devices import LinePool, open_meter, open_pile
from youxu.drivers.meter import Meter, MeterReading
from youxu.drivers.ocpp_central import CentralSystem
from youxu.drivers.ocpp_pile import OcppPile
from youxu.drivers.pile import Pile, PileReading
from youxu.drivers.profiles import load_profile
from youxu.drivers.transport import BusPool, DeviceError

log = logging.getLogger(__name__)

RAISE_TOL_KW = 0.25  # a raise smaller than about 1 A is not worth a write; it waits for a larger one
LOWER_TOL_KW = 0.01  # every reduction is written: the safety layer depends on it
REFRESH_S = 60.0  # rewrite unchanged setpoints this often (piles that lost them get them back)
REFRESH_TICKS = 30  # ...but never more often than every this many ticks


@dataclass
class Readings:
    meter: MeterReading | None
    piles: list[PileReading | None]
    errors: dict[str, str]


class SiteIO:
    def __init__(self, cfg: SiteConfig, pool: BusPool | None = None, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.refresh_s = max(REFRESH_S, REFRESH_TICKS * cfg.control.period_s)
        self.pool = pool or BusPool()
        self.lines = LinePool(self.pool)
        self.central: CentralSystem | None = build_central(cfg, clock or RealClock())
        m = cfg.meter
        self.meter: Meter = open_meter(self.lines, load_profile(m.profile), m.url, unit=m.unit_id(), address=m.address,
                                       timeout_s=m.timeout_s)
        self.piles: list[Pile] = [
            open_pile(self.lines, load_profile(p.profile), p.url, unit=p.unit_id(), voltage_v=p.voltage_v,
                      n_phases=p.n_phases, min_a=p.min_a, max_a=p.max_a, timeout_s=p.timeout_s, central=self.central)
            for p in cfg.piles
        ]
        self.pile_ids = [p.id for p in cfg.piles]
        self.written_kw = np.full(len(self.piles), np.nan)
        self.written_at = np.full(len(self.piles), -np.inf)
        # OCPP limits lapse to the failsafe unless renewed: hand them over well within their validity
        self.refresh_after_s = np.array([min(self.refresh_s, p.refresh_s) if isinstance(p, OcppPile)
                                         else self.refresh_s for p in self.piles])
        self.write_failures = np.zeros(len(self.piles), dtype=np.int64)

    async def _read(self, dev: Meter | Pile, timeout_s: float):
        return await dev.read(timeout_s)

    async def read_all(self, timeout_s: float | None = None) -> Readings:
        """Read the meter and every pile concurrently; a device that fails gives None."""
        devices = [self.meter, *self.piles]
        results = await asyncio.gather(
            *(self._read(d, timeout_s or d.timeout_s) for d in devices), return_exceptions=True
        )
        errors: dict[str, str] = {}
        out: list = []
        for name, r in zip(["meter", *self.pile_ids], results, strict=True):
            if isinstance(r, BaseException):
                if not isinstance(r, (DeviceError, OSError, asyncio.TimeoutError, ValueError)):
                    log.exception("unexpected error reading %s", name, exc_info=r)
                errors[name] = str(r) or type(r).__name__
                out.append(None)
            else:
                out.append(r)
        return Readings(meter=out[0], piles=out[1:], errors=errors)

    def changed(self, setpoints_kw: np.ndarray, now_s: float) -> np.ndarray:
        """Indices of piles whose setpoint must be written now."""
        delta = setpoints_kw - self.written_kw
        # NaN (never written) counts as changed; so does any move to or from zero (start/pause)
        diff = ~((delta <= RAISE_TOL_KW) & (delta >= -LOWER_TOL_KW))
        diff |= (setpoints_kw == 0) != (self.written_kw == 0)
        stale = (now_s - self.written_at) >= self.refresh_after_s
        return np.flatnonzero(diff | stale)

    async def write_setpoints(self, setpoints_kw: np.ndarray, now_s: float,
                              timeout_s: float | None = None) -> dict[str, str]:
        """Write only the setpoints that changed; return the piles whose write failed."""
        idx = self.changed(setpoints_kw, now_s)
        if idx.size == 0:
            return {}
        results = await asyncio.gather(
            *(self.piles[i].write_setpoint_kw(float(setpoints_kw[i]), timeout_s) for i in idx), return_exceptions=True
        )
        errors: dict[str, str] = {}
        for i, r in zip(idx, results, strict=True):
            if isinstance(r, BaseException):
                errors[self.pile_ids[i]] = str(r) or type(r).__name__
                self.write_failures[i] += 1
                self.written_kw[i] = np.nan  # unknown: write again next tick
            else:
                self.written_kw[i] = setpoints_kw[i]
                self.written_at[i] = now_s
        return errors

    async def start(self) -> None:
        """Open what listens for devices (the OCPP central system)."""
        if self.central is not None:
            await self.central.start()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Let the last limits reach OCPP charge points, then close the central system."""
        if self.central is None:
            return
        pending = [p.flush(timeout_s) for p in self.piles if isinstance(p, OcppPile)]
        await asyncio.gather(*pending, return_exceptions=True)
        await self.central.stop()

    def close(self) -> None:
        for p in self.piles:
            if isinstance(p, OcppPile):
                p.close()
        self.lines.close()
