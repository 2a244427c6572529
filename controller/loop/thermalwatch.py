"""The transformer's thermal state in the daemon: advanced every tick from the measured load.

The state (top-oil, the hot-spot's winding and oil rises, accumulated ageing) moves one tick at a
time with `scheduler.thermal.step`, at the load factor measured at the transformer meter and the
ambient of the configured source. It is saved with the loop's state; a restart resumes from it,
bridging the time the daemon was away as if the transformer had carried its rated load at the
hottest plausible ambient meanwhile. With nothing saved (a cold start) it starts where that ends:
steady state at rated load and the hottest ambient — never a cool transformer.

Ambient sources: `fixed_c`, `monthly_c` (by the site's local month), and the measured ones
(`mqtt`, `meter_register`) which are fed by `observe_ambient`; a measured source that has said
nothing for `stale_s` is stale: `thermal_alarm` (cause `ambient_stale`) and the fallback (the
hottest plausible ambient) until a reading comes again. Hot-spot or top-oil above its maximum
raises `thermal_alarm` too; each cause is cleared with `thermal_cleared`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from youxu.controller.siteconfig import AmbientSection, SiteConfig
from youxu.scheduler import thermal
from youxu.scheduler.thermal import AmbientProfile, ThermalNow, ThermalParams, ThermalSite, ThermalState

STATE_FIELD = "thermal"
MAX_TICK_GAP_S = 60.0  # a longer gap between ticks is bridged at rated load and the hottest ambient
CLEAR_BAND_K = 1.0  # a temperature alarm clears this far below its maximum
Alarm = tuple[str, str, dict]


def ambient_profile(a: AmbientSection, tz: ZoneInfo) -> AmbientProfile | None:
    """Ambient °C at epoch times for the configured profile; None for a measured source."""
    if a.fixed_c is not None:
        fixed = float(a.fixed_c)
        return lambda t: np.full(np.asarray(t).shape, fixed)
    if a.monthly_c is not None:
        months = np.asarray(a.monthly_c, dtype=float)

        def monthly(t: np.ndarray) -> np.ndarray:
            flat = np.asarray(t, dtype=float).ravel()
            idx = [datetime.fromtimestamp(float(x), UTC).astimezone(tz).month - 1 for x in flat]
            return months[np.asarray(idx, dtype=int)].reshape(np.asarray(t).shape)

        return monthly
    return None


def thermal_site(cfg: SiteConfig) -> ThermalSite | None:
    """How the thermal limit joins the controller's limits (None without `transformer.thermal`)."""
    t = cfg.transformer
    params = t.thermal_params()
    if params is None or t.thermal is None:
        return None
    return ThermalSite(params, allow_above_rated=t.thermal.allow_above_rated,
                       above_rated_max_kw=t.thermal.above_rated_max_kw, window_s=float(cfg.control.step_s),
                       ambient=ambient_profile(t.thermal.ambient, cfg.tz))


class ThermalWatch:
    def __init__(self, cfg: SiteConfig, site: ThermalSite) -> None:
        th = cfg.transformer.thermal
        assert th is not None
        self.site = site
        self.params: ThermalParams = site.params
        self.ambient_cfg = th.ambient
        self.hottest_c = th.ambient.hottest_c()
        self.profile = site.ambient
        self.state: ThermalState | None = None
        self.t_s: float | None = None
        self.reading: tuple[float, float] | None = None  # (epoch s, °C) of a measured source
        self.active: set[str] = set()  # alarm causes raised and not yet cleared
        self.resumed = False
        self.last: ThermalNow | None = None  # the view of the latest tick

    # ---- ambient -------------------------------------------------------------------
    def observe_ambient(self, at_s: float, ambient_c: float) -> None:
        if math.isfinite(ambient_c) and (self.reading is None or at_s >= self.reading[0]):
            self.reading = (at_s, float(ambient_c))

    def ambient(self, t_s: float) -> tuple[float, bool]:
        """(ambient °C now, whether it comes from the source: False is the fallback of a stale source)."""
        if self.profile is not None:
            return float(self.profile(np.array([t_s]))[0]), True
        r = self.reading
        if r is None or t_s - r[0] > self.ambient_cfg.stale_s:
            return self.hottest_c, False
        return r[1], True

    def shift_time(self, step_s: float) -> None:
        """The wall clock stepped: move our timestamps with it (the grid's readings carry the grid's time)."""
        if self.t_s is not None:
            self.t_s += step_s
        if self.reading is not None and self.ambient_cfg.meter_register is not None:
            self.reading = (self.reading[0] + step_s, self.reading[1])

    # ---- the state -----------------------------------------------------------------
    def worst_state(self) -> ThermalState:
        """Steady state at rated load and the hottest plausible ambient."""
        return thermal.steady_state(self.params, 1.0, self.hottest_c)

    def _bridge(self, s: ThermalState, gap_s: float) -> ThermalState:
        """Across a time nothing was measured: rated load at the hottest ambient, and never cooler than it
        was (a gap does not let the transformer cool on paper)."""
        bridged = thermal.step(self.params, s, 1.0, self.hottest_c, gap_s)
        return bridged if bridged.hotspot_c >= s.hotspot_c else s

    def advance(self, t_s: float, total_kw: float) -> ThermalNow:
        """Move the state to t_s with the load measured now; the snapshot's thermal view."""
        ambient_c, ok = self.ambient(t_s)
        if self.state is None or self.t_s is None:
            self.state, self.t_s = self.worst_state(), t_s
        dt = t_s - self.t_s
        if dt > MAX_TICK_GAP_S:
            self.state = self._bridge(self.state, dt)
        elif dt > 0:
            self.state = thermal.step(self.params, self.state, self.params.load_factor(total_kw), ambient_c, dt)
        self.t_s = max(self.t_s, t_s)
        self.last = ThermalNow(state=self.state, ambient_c=ambient_c, ambient_ok=ok)
        return self.last

    def alarms(self) -> list[Alarm]:
        """The alarm changes of the state now: (kind, message, fields)."""
        now = self.last
        if now is None:
            return []
        p, s = self.params, now.state
        conditions = {
            "hotspot": (s.hotspot_c > p.hotspot_max_c, s.hotspot_c < p.hotspot_max_c - CLEAR_BAND_K,
                        f"hot-spot {s.hotspot_c:.1f} °C above its maximum {p.hotspot_max_c:g} °C",
                        f"hot-spot {s.hotspot_c:.1f} °C below its maximum again"),
            "top_oil": (s.top_oil_c > p.top_oil_max_c, s.top_oil_c < p.top_oil_max_c - CLEAR_BAND_K,
                        f"top-oil {s.top_oil_c:.1f} °C above its maximum {p.top_oil_max_c:g} °C",
                        f"top-oil {s.top_oil_c:.1f} °C below its maximum again"),
            "ambient_stale": (not now.ambient_ok, now.ambient_ok,
                              f"ambient temperature ({self.ambient_cfg.source}) stale for more than "
                              f"{self.ambient_cfg.stale_s:g} s; assuming {now.ambient_c:g} °C",
                              f"ambient temperature ({self.ambient_cfg.source}) received again"),
        }
        out: list[Alarm] = []
        fields = {"hotspot_c": round(s.hotspot_c, 2), "top_oil_c": round(s.top_oil_c, 2),
                  "ambient_c": round(now.ambient_c, 2)}
        for cause, (bad, good, raise_msg, clear_msg) in conditions.items():
            if bad and cause not in self.active:
                self.active.add(cause)
                out.append(("thermal_alarm", raise_msg, {"cause": cause, **fields}))
            elif good and cause in self.active:
                self.active.discard(cause)
                out.append(("thermal_cleared", clear_msg, {"cause": cause, **fields}))
        return out

    def telemetry(self, limit_kw: float) -> dict | None:
        now = self.last
        if now is None:
            return None
        return {"ambient_c": round(now.ambient_c, 2), "top_oil_c": round(now.state.top_oil_c, 2),
                "hotspot_c": round(now.state.hotspot_c, 2), "limit_kw": round(limit_kw, 3)}

    # ---- saved with the loop's state -------------------------------------------------
    def to_state(self) -> dict | None:
        if self.state is None or self.t_s is None:
            return None
        s = self.state
        return {"t_s": self.t_s, "top_oil_c": s.top_oil_c, "winding_rise_k": s.winding_rise_k,
                "oil_rise_k": s.oil_rise_k, "ageing_h": s.ageing_h}

    def restore(self, saved: dict | None) -> bool:
        """Resume from a saved state (the time since is bridged at the next tick); False: cold start."""
        if not saved:
            return False
        try:
            self.state = ThermalState(top_oil_c=float(saved["top_oil_c"]),
                                      winding_rise_k=float(saved["winding_rise_k"]),
                                      oil_rise_k=float(saved.get("oil_rise_k", 0.0)),
                                      ageing_h=float(saved.get("ageing_h", 0.0)))
            self.t_s = float(saved["t_s"])
        except (KeyError, TypeError, ValueError):
            self.state, self.t_s = None, None
            return False
        self.resumed = True
        return True
