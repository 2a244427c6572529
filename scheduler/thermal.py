"""Transformer thermal state by IEC 60076-7 (exponential equations, ONAN distribution transformer).

The top-oil temperature follows the total losses with the oil time constant; the hot-spot sits
above it by a winding gradient that follows the load with the winding time constant (two terms,
clause 8.2.3, the second of which vanishes for k21 = 1). Per step of constant load factor K and
ambient, the exact solution of the differential equations over `dt` is

    theta_o' = theta_o + (theta_a + d_theta_or * ((1 + R K^2) / (1 + R))^x - theta_o) * (1 - exp(-dt / (k11 tau_o)))
    d1'      = k21 d_theta_hr K^y + (d1 - k21 d_theta_hr K^y) * exp(-dt / (k22 tau_w))
    d2'      = (k21 - 1) d_theta_hr K^y + (d2 - (k21 - 1) d_theta_hr K^y) * exp(-dt k22 / tau_o)
    theta_h' = theta_o' + d1' - d2'

with R = load loss / no-load loss. Normal Kraft paper ages at V = 2^((theta_h - 98) / 6) times the
reference rate (clause 6.3). The defaults are the standard's for distribution transformers
(table 5): rated top-oil rise 55 K and hot-spot-to-top-oil gradient 23 K, which put the hot-spot
at 98 °C at rated load in 20 °C ambient, the reference of the ageing rate.

The thermal limit for a horizon (`limit_profile`) is the most import power per step that keeps the
hot-spot and the top-oil within their maxima, found step by step from the state now, assuming the
load then runs at that limit (or at the forecast household load where that is higher): any load
below the profile keeps both temperatures below the ones computed for it, because each rises
monotonically with the load. Pure; no I/O; times in seconds, temperatures in °C.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

REFERENCE_HOTSPOT_C = 98.0  # normal Kraft paper: relative ageing rate 1 at this hot-spot
AGEING_DOUBLING_K = 6.0  # the rate doubles every 6 K


@dataclass(frozen=True)
class ThermalConstants:
    """IEC 60076-7 table 5, ONAN distribution transformer."""

    top_oil_rise_k: float = 55.0  # rated top-oil rise over ambient, delta theta_or
    hotspot_gradient_k: float = 23.0  # rated hot-spot to top-oil gradient, H * g_r
    oil_exponent_x: float = 0.8
    winding_exponent_y: float = 1.6
    k11: float = 1.0
    k21: float = 1.0
    k22: float = 2.0
    tau_oil_min: float = 180.0
    tau_winding_min: float = 4.0
    # an enclosure's (kiosk, substation room) extra rise at rated losses, scaled with the losses as the
    # top-oil rise is (0 outdoors)
    ambient_surcharge_k: float = 0.0


CONSTANT_NAMES = tuple(ThermalConstants.__dataclass_fields__)


@dataclass(frozen=True)
class ThermalParams:
    rated_kva: float
    load_loss_w: float
    no_load_loss_w: float
    constants: ThermalConstants = ThermalConstants()
    hotspot_max_c: float = 98.0
    top_oil_max_c: float = 105.0
    power_factor: float = 0.95

    @property
    def loss_ratio(self) -> float:
        return self.load_loss_w / self.no_load_loss_w

    def load_factor(self, total_kw: float) -> float:
        """K = apparent power / rated, from real power at the configured power factor (either sign)."""
        return abs(total_kw) / (self.power_factor * self.rated_kva)

    def kw_of(self, load_factor: float) -> float:
        return load_factor * self.power_factor * self.rated_kva


@dataclass(frozen=True)
class ThermalState:
    top_oil_c: float
    winding_rise_k: float  # delta theta_h1
    oil_rise_k: float = 0.0  # delta theta_h2 (0 when k21 = 1)
    ageing_h: float = 0.0  # equivalent ageing hours at the reference rate, accumulated

    @property
    def hotspot_c(self) -> float:
        return self.top_oil_c + self.winding_rise_k - self.oil_rise_k


def ageing_rate(hotspot_c: float | np.ndarray) -> float | np.ndarray:
    """Relative ageing rate of normal Kraft paper (1 at 98 °C)."""
    return np.power(2.0, (np.asarray(hotspot_c, dtype=float) - REFERENCE_HOTSPOT_C) / AGEING_DOUBLING_K)


def _top_oil_target_c(p: ThermalParams, k: float, ambient_c: float) -> float:
    c = p.constants
    r = p.loss_ratio
    rise_k = c.top_oil_rise_k + c.ambient_surcharge_k
    return ambient_c + rise_k * ((1.0 + r * k * k) / (1.0 + r)) ** c.oil_exponent_x


def steady_state(p: ThermalParams, load_factor: float, ambient_c: float) -> ThermalState:
    """Where the transformer settles after hours at a constant load and ambient."""
    c = p.constants
    g = c.hotspot_gradient_k * load_factor ** c.winding_exponent_y
    return ThermalState(top_oil_c=_top_oil_target_c(p, load_factor, ambient_c), winding_rise_k=c.k21 * g,
                        oil_rise_k=(c.k21 - 1.0) * g)


def step(p: ThermalParams, s: ThermalState, load_factor: float, ambient_c: float, dt_s: float) -> ThermalState:
    """The state after `dt_s` at a constant load factor and ambient (exact for constant inputs)."""
    if dt_s <= 0.0:
        return s
    c = p.constants
    dt_min = dt_s / 60.0
    f1 = 1.0 - math.exp(-dt_min / (c.k11 * c.tau_oil_min))
    top = s.top_oil_c + (_top_oil_target_c(p, load_factor, ambient_c) - s.top_oil_c) * f1
    g = c.hotspot_gradient_k * load_factor ** c.winding_exponent_y
    fw = math.exp(-dt_min / (c.k22 * c.tau_winding_min))
    fo = math.exp(-dt_min * c.k22 / c.tau_oil_min)
    d1 = c.k21 * g + (s.winding_rise_k - c.k21 * g) * fw
    d2 = (c.k21 - 1.0) * g + (s.oil_rise_k - (c.k21 - 1.0) * g) * fo
    rate = 2.0 ** ((top + d1 - d2 - REFERENCE_HOTSPOT_C) / AGEING_DOUBLING_K)
    return ThermalState(top_oil_c=top, winding_rise_k=d1, oil_rise_k=d2, ageing_h=s.ageing_h + rate * dt_s / 3600.0)


def simulate(p: ThermalParams, s: ThermalState, load_factor: np.ndarray, ambient_c: np.ndarray,
             dt_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, ThermalState]:
    """(top-oil °C, hot-spot °C at the end of each step, final state); step i holds load_factor[i]
    and ambient_c[i] for dt_s[i]."""
    n = int(np.asarray(dt_s).size)
    k = np.broadcast_to(np.asarray(load_factor, dtype=float), (n,))
    a = np.broadcast_to(np.asarray(ambient_c, dtype=float), (n,))
    d = np.broadcast_to(np.asarray(dt_s, dtype=float), (n,))
    top = np.empty(n)
    hot = np.empty(n)
    for i in range(n):
        s = step(p, s, float(k[i]), float(a[i]), float(d[i]))
        top[i] = s.top_oil_c
        hot[i] = s.hotspot_c
    return top, hot, s


class _StepEnd:
    """The end-of-step temperatures as functions of the load factor k, for one state, ambient and step
    length: top-oil = a + b ((1 + R k^2) / (1 + R))^x and hot-spot = top-oil + w0 + wg k^y, the same
    as `step` with its exponentials computed once (the search below evaluates them many times)."""

    def __init__(self, p: ThermalParams, s: ThermalState, ambient_c: float, dt_s: float) -> None:
        c = p.constants
        dt_min = dt_s / 60.0
        f1 = 1.0 - math.exp(-dt_min / (c.k11 * c.tau_oil_min))
        fw = math.exp(-dt_min / (c.k22 * c.tau_winding_min))
        fo = math.exp(-dt_min * c.k22 / c.tau_oil_min)
        self.r, self.x, self.y = p.loss_ratio, c.oil_exponent_x, c.winding_exponent_y
        self.a = s.top_oil_c * (1.0 - f1) + ambient_c * f1
        self.b = (c.top_oil_rise_k + c.ambient_surcharge_k) * f1
        self.w0 = s.winding_rise_k * fw - s.oil_rise_k * fo
        self.wg = c.hotspot_gradient_k * (c.k21 * (1.0 - fw) - (c.k21 - 1.0) * (1.0 - fo))

    def temps(self, k: float) -> tuple[float, float]:
        """(top-oil, hot-spot) °C at the end of the step at load factor k."""
        top = self.a + self.b * ((1.0 + self.r * k * k) / (1.0 + self.r)) ** self.x
        return top, top + self.w0 + self.wg * k ** self.y


def max_load_factor(p: ThermalParams, s: ThermalState, ambient_c: float, dt_s: float, k_cap: float,
                    tol: float = 1e-3) -> float:
    """The largest constant load factor in [0, k_cap] whose end-of-step state is within both maxima
    (0 when even no load is not: the transformer is already too hot to be cooled in one step)."""
    end = _StepEnd(p, s, ambient_c, dt_s)

    def within(k: float) -> bool:
        top, hot = end.temps(k)
        return hot <= p.hotspot_max_c and top <= p.top_oil_max_c

    if within(k_cap):
        return k_cap
    if not within(0.0):
        return 0.0
    lo, hi = 0.0, k_cap
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if within(mid):
            lo = mid
        else:
            hi = mid
    return lo


def limit_profile(p: ThermalParams, s: ThermalState, step_s: np.ndarray, ambient_c: np.ndarray,
                  base_kw: np.ndarray, cap_kw: np.ndarray) -> np.ndarray:
    """(H,) import limit kW per step: at most `cap_kw`, and no more than keeps hot-spot and top-oil
    within their maxima when the load runs at the limit (or at `base_kw` where that is higher)."""
    n = int(step_s.size)
    a = np.broadcast_to(np.asarray(ambient_c, dtype=float), (n,))
    base = np.broadcast_to(np.asarray(base_kw, dtype=float), (n,))
    cap = np.broadcast_to(np.asarray(cap_kw, dtype=float), (n,))
    out = np.empty(n)
    for i in range(n):
        k_cap = p.load_factor(cap[i]) if np.isfinite(cap[i]) else 3.0  # IEC 60076-7 allows no more than 1.5-2
        k = max_load_factor(p, s, float(a[i]), float(step_s[i]), k_cap)
        out[i] = min(p.kw_of(k), float(cap[i]))
        s = step(p, s, max(k, p.load_factor(max(float(base[i]), 0.0))), float(a[i]), float(step_s[i]))
    return out


AmbientProfile = Callable[[np.ndarray], np.ndarray]  # epoch s -> ambient °C


@dataclass(frozen=True)
class ThermalNow:
    """The transformer's thermal state at the snapshot's time and the ambient it stands in."""

    state: ThermalState
    ambient_c: float
    ambient_ok: bool = True  # False: the source is stale and ambient_c is the fallback


@dataclass(frozen=True)
class ThermalSite:
    """How the thermal limit joins the site's limits.

    Without `allow_above_rated` it only tightens the transformer's kW cap; with it, it replaces the cap,
    up to `above_rated_max_kw`. The limit of now (the safety layer's) is the most load that can be held
    for `window_s` from the state now. `ambient` forecasts the ambient over a horizon; None holds the
    ambient of now (a measured source).
    """

    params: ThermalParams
    allow_above_rated: bool = False
    above_rated_max_kw: float | None = None
    window_s: float = 900.0
    ambient: AmbientProfile | None = None

    def cap_kw(self, import_kw: float) -> float:
        if self.allow_above_rated and self.above_rated_max_kw is not None:
            return self.above_rated_max_kw
        return import_kw

    def ambient_at(self, now: ThermalNow, t_s: np.ndarray) -> np.ndarray:
        if self.ambient is None or not now.ambient_ok:
            return np.full(np.asarray(t_s).shape, now.ambient_c)
        return np.asarray(self.ambient(np.asarray(t_s, dtype=float)), dtype=float)

    def limit_now_kw(self, now: ThermalNow, import_kw: float, base_kw: float = 0.0) -> float:
        """The site import limit now (before dispatch and margin): the kW cap, thermally limited."""
        return float(limit_profile(self.params, now.state, np.array([self.window_s]), np.array([now.ambient_c]),
                                   np.array([base_kw]), np.array([self.cap_kw(import_kw)]))[0])

    def limits_kw(self, now: ThermalNow, t0_s: float, step_s: np.ndarray, base_kw: np.ndarray,
                  import_kw: float) -> np.ndarray:
        """(H,) site import limit per step of a horizon from t0_s (before dispatch and margin)."""
        starts = t0_s + np.concatenate([[0.0], np.cumsum(step_s)[:-1]])
        ambient = self.ambient_at(now, starts + 0.5 * step_s)
        ambient[0] = now.ambient_c
        cap = np.full(step_s.size, self.cap_kw(import_kw))
        return limit_profile(self.params, now.state, step_s, ambient, base_kw, cap)
