"""Household (base) load forecast from the transformer meter's own history.

A time-of-day profile per phase (15-minute bins in local time, optionally weekdays and
weekends apart) learnt day by day, blended with what the meter says now: the present
deviation from the profile fades into the future with a time constant. From a cold start
the profile is a configurable default (a residential shape with an evening peak, scaled to
a given peak or to the first observation).

Pure and causal: the caller feeds observations `(t_s, base_kw, phase_kw)` in time order and
asks for the forecast over step end times; only what was observed so far is used, and an
observation older than the latest one is ignored (the past is not rewritten).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DAY_S = 86400


def residential_shape(bins: int = 96) -> np.ndarray:
    """A residential day (local time), peak 1.0 around 20:00, about 0.3 at night, a morning bump."""
    hour = (np.arange(bins) + 0.5) * 24.0 / bins
    evening = np.exp(-0.5 * ((hour - 20.0) / 2.0) ** 2)
    morning = 0.5 * np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2)
    shape = 0.35 + 0.9 * evening + morning
    return shape / shape.max()


@dataclass(frozen=True)
class ForecastConfig:
    bin_s: int = 900  # resolution of the time-of-day profile
    utc_offset_s: int = 8 * 3600  # local time for the time of day (Beijing)
    weekly: bool = False  # separate weekday and weekend profiles
    default_profile_kw: tuple[float, ...] | None = None  # one value per bin (total of the three phases)
    default_peak_kw: float | None = None  # scale of the built-in shape; None: fit to the first observation
    phase_split: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)  # of the default profile
    prior_days: float = 0.5  # how many days of data the default profile is worth
    min_weight: float = 0.2  # a profile bin never learns slower than this per day (about a week's memory)
    recent_tau_s: float = 5400.0  # how fast today's deviation from the profile fades into the future
    smooth_s: float = 300.0  # smoothing of the present deviation (meter noise)
    prior_spread: float = 0.08  # day-to-day scatter of a bin around the default profile (share of it), cold
    spread_sigmas: float = 1.0  # the spread forecast is this many standard deviations of that scatter


class BaseLoadForecaster:
    """Learns per-phase time-of-day profiles and forecasts the household load ahead."""

    def __init__(self, config: ForecastConfig | None = None) -> None:
        self.cfg = cfg = config or ForecastConfig()
        self.bins = DAY_S // cfg.bin_s
        kinds = 2 if cfg.weekly else 1
        self._profile = np.zeros((kinds, self.bins, 3))
        self._days = np.zeros((kinds, self.bins))  # how many days each bin has learnt (prior included)
        self._scaled = cfg.default_profile_kw is not None or cfg.default_peak_kw is not None
        self._set_default(1.0 if cfg.default_peak_kw is None else cfg.default_peak_kw)
        self._bin_key: int | None = None  # the bin being accumulated (absolute index)
        self._acc = np.zeros(3)
        self._acc_n = 0
        self.last_t_s: float | None = None
        self._resid = np.zeros(3)  # smoothed present deviation from the profile, per phase

    def _set_default(self, peak_kw: float) -> None:
        cfg = self.cfg
        if cfg.default_profile_kw is not None:
            total = np.asarray(cfg.default_profile_kw, dtype=float)
            if total.size != self.bins:
                raise ValueError(f"default_profile_kw needs {self.bins} values, got {total.size}")
        else:
            total = residential_shape(self.bins) * peak_kw
        split = np.asarray(cfg.phase_split, dtype=float)
        self._profile[:] = total[None, :, None] * (split / split.sum())[None, None, :]
        self._days[:] = cfg.prior_days
        self._var = np.broadcast_to((cfg.prior_spread * total) ** 2, self._days.shape).copy()
        self._var_phase = (cfg.prior_spread * self._profile) ** 2

    # ---- time ------------------------------------------------------------------------------------
    def _abs_bin(self, t_s: float) -> int:
        return math.floor((t_s + self.cfg.utc_offset_s) / self.cfg.bin_s)

    def _kind_bin(self, abs_bin: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        b = np.asarray(abs_bin, dtype=np.int64)
        tod = b % self.bins
        if not self.cfg.weekly:
            return np.zeros_like(tod), tod
        weekday = ((b // self.bins) + 3) % 7  # local day 0 (1970-01-01) was a Thursday
        return (weekday >= 5).astype(np.int64), tod

    def profile_kw(self, t_s: np.ndarray) -> np.ndarray:
        """(len(t), 3) the learnt profile at times t (per phase)."""
        b = np.floor((np.asarray(t_s, dtype=float) + self.cfg.utc_offset_s) / self.cfg.bin_s).astype(np.int64)
        kind, tod = self._kind_bin(b)
        return self._profile[kind, tod]

    # ---- learning ----------------------------------------------------------------------------------
    def observe(self, t_s: float, base_kw: float, phase_kw: np.ndarray | None = None) -> None:
        """One meter reading of the household load (total, and per phase if the meter has them)."""
        if not np.isfinite(base_kw) or (self.last_t_s is not None and t_s <= self.last_t_s):
            return
        ph = (np.asarray(phase_kw, dtype=float) if phase_kw is not None
              else base_kw * np.asarray(self.cfg.phase_split) / sum(self.cfg.phase_split))
        if not np.all(np.isfinite(ph)):
            return
        if not self._scaled:  # cold start without a scale: the default shape goes through this reading
            here = float(self.profile_kw(np.array([t_s]))[0].sum())
            scale = base_kw / here if here > 0 else 1.0
            self._profile *= scale
            self._var *= scale**2
            self._var_phase *= scale**2
            self._scaled = True
        b = self._abs_bin(t_s)
        if self._bin_key is not None and b != self._bin_key:
            self._close_bin()
        self._bin_key = b
        self._acc += ph
        self._acc_n += 1
        dt = 0.0 if self.last_t_s is None else t_s - self.last_t_s
        a = 1.0 if self.last_t_s is None else 1.0 - math.exp(-dt / max(self.cfg.smooth_s, 1e-9))
        r = ph - self.profile_kw(np.array([t_s]))[0]
        self._resid += a * (r - self._resid)
        self.last_t_s = float(t_s)

    def observe_many(self, t_s: np.ndarray, base_kw: np.ndarray, phase_kw: np.ndarray | None = None) -> None:
        """A history of readings in time order (a warm start from storage)."""
        for i in range(len(t_s)):
            self.observe(float(t_s[i]), float(base_kw[i]), None if phase_kw is None else phase_kw[i])

    def _close_bin(self) -> None:
        """Fold the finished bin's mean into its profile value."""
        if self._bin_key is None or self._acc_n == 0:
            return
        kind, tod = self._kind_bin(self._bin_key)
        k, t = int(kind), int(tod)
        days = self._days[k, t]
        w = max(1.0 / (days + 1.0), self.cfg.min_weight)
        miss = self._acc / self._acc_n - self._profile[k, t]  # the profile's error on this day, per phase
        self._var[k, t] += w * (float(miss.sum()) ** 2 - self._var[k, t])
        self._var_phase[k, t] += w * (miss**2 - self._var_phase[k, t])
        self._profile[k, t] += w * (self._acc / self._acc_n - self._profile[k, t])
        self._days[k, t] = days + 1.0
        self._acc[:] = 0.0
        self._acc_n = 0

    # ---- forecasting -------------------------------------------------------------------------------
    def _samples(self, step_end_s: np.ndarray, step_s: np.ndarray | None, samples: int) -> np.ndarray:
        ends = np.asarray(step_end_s, dtype=float)
        if step_s is None:
            step_s = np.diff(np.concatenate([[ends[0] - self.cfg.bin_s], ends]))
        dur = np.asarray(step_s, dtype=float)
        frac = (np.arange(samples) + 0.5) / samples
        return (ends - dur)[:, None] + dur[:, None] * frac[None, :]  # sample points inside each step

    def _fade(self, t: np.ndarray) -> np.ndarray:
        """(H, samples) how much of the present deviation still holds at each sample point."""
        if self.last_t_s is None:
            return np.zeros_like(t)
        return np.exp(-np.maximum(t - self.last_t_s, 0.0) / max(self.cfg.recent_tau_s, 1e-9))

    def spread(self, step_end_s: np.ndarray, step_s: np.ndarray | None = None,
               samples: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """(total (H,), per phase (H, 3)): how far the mean household load of each step may run above
        its forecast (kW).

        The day-to-day scatter of each bin around the learnt profile, less the part the present reading
        already tells (nothing for the next minutes, all of it hours ahead).
        """
        t = self._samples(step_end_s, step_s, samples)
        b = np.floor((t.ravel() + self.cfg.utc_offset_s) / self.cfg.bin_s).astype(np.int64)
        kind, tod = self._kind_bin(b)
        unknown = self.cfg.spread_sigmas * np.sqrt(np.maximum(1.0 - self._fade(t) ** 2, 0.0))
        sd = np.sqrt(np.maximum(self._var[kind, tod], 0.0)).reshape(t.shape)
        sd_phase = np.sqrt(np.maximum(self._var_phase[kind, tod], 0.0)).reshape((*t.shape, 3))
        return (sd * unknown).mean(axis=1), (sd_phase * unknown[:, :, None]).mean(axis=1)

    def forecast(self, step_end_s: np.ndarray, step_s: np.ndarray | None = None,
                 samples: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """(base_kw (H,), base_phase_kw (H, 3)): mean household load over each step ending at step_end_s."""
        t = self._samples(step_end_s, step_s, samples)
        prof = self.profile_kw(t.ravel()).reshape((*t.shape, 3)).mean(axis=1)
        if self.last_t_s is not None:
            prof = prof + self._fade(t).mean(axis=1)[:, None] * self._resid[None, :]
        return prof.sum(axis=1), prof
