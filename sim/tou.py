"""Local time on the scenario axis, and the time-of-use tariff.

Everything in the generator runs on seconds from the scenario start; households, drivers
and tariffs live by the local clock (Asia/Shanghai, UTC+8 all year, no daylight saving).
`LocalAxis` maps between the two; `TouTariff` turns the Beijing-style peak/flat/valley
periods into the price arrays of a `youxu.scenario/1` tariff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
DAY_S = 86400


@dataclass(frozen=True)
class LocalAxis:
    """The scenario's time axis at a fixed resolution, seen through the local clock."""

    start: datetime  # tz-aware
    duration_s: int
    resolution_s: int = 60

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("start needs a UTC offset")
        if self.duration_s % self.resolution_s:
            raise ValueError("duration_s must be a multiple of resolution_s")

    @property
    def n(self) -> int:
        return self.duration_s // self.resolution_s

    @property
    def start_local(self) -> datetime:
        return self.start.astimezone(LOCAL_TZ)

    @property
    def first_midnight_offset_s(self) -> int:
        """Seconds from the local midnight that opens the first local date to the start (>= 0)."""
        s = self.start_local
        return s.hour * 3600 + s.minute * 60 + s.second

    def times_s(self) -> np.ndarray:
        """Start of each interval, seconds from the scenario start."""
        return np.arange(self.n, dtype=np.int64) * self.resolution_s

    def local_hour(self) -> np.ndarray:
        """Local time of day (0..24, fractional hours) at the middle of each interval."""
        t = self.times_s() + self.first_midnight_offset_s + self.resolution_s / 2
        return (t % DAY_S) / 3600.0

    def day_index(self) -> np.ndarray:
        """Index into `dates()` of each interval."""
        return (self.times_s() + self.first_midnight_offset_s) // DAY_S

    def dates(self) -> list[date]:
        """Every local date that the axis touches, in order."""
        n_days = (self.first_midnight_offset_s + self.duration_s + DAY_S - 1) // DAY_S
        d0 = self.start_local.date()
        return [d0 + timedelta(days=k) for k in range(n_days)]

    def weekend(self) -> np.ndarray:
        """Per local date: True on Saturday and Sunday."""
        return np.array([d.weekday() >= 5 for d in self.dates()], dtype=bool)

    def midnight_offset_s(self, day: int) -> int:
        """Seconds from the scenario start to local midnight opening date `day` (may be negative)."""
        return day * DAY_S - self.first_midnight_offset_s

    def at(self, offset_s: float) -> datetime:
        """Local wall-clock time of an offset from the start."""
        return (self.start + timedelta(seconds=float(offset_s))).astimezone(LOCAL_TZ)


# ---- tariff ------------------------------------------------------------------------

PEAK, FLAT, VALLEY, CRITICAL = "peak", "flat", "valley", "critical"


@dataclass(frozen=True)
class TouTariff:
    """A time-of-use tariff: local periods `(start_h, end_h, band)` covering 0..24, and a price per band.

    Defaults: the Beijing time-of-use periods (peak 10-15 and 18-21, flat 7-10, 15-18 and 21-23,
    valley 23-07) with representative prices; see sim/PARAMETERS.md for sources.
    """

    import_yuan_per_kwh: dict[str, float] = field(
        default_factory=lambda: {PEAK: 0.95, FLAT: 0.60, VALLEY: 0.30, CRITICAL: 1.14}
    )
    export_yuan_per_kwh: dict[str, float] = field(
        default_factory=lambda: {PEAK: 0.85, FLAT: 0.40, VALLEY: 0.20, CRITICAL: 1.00}
    )
    periods: tuple[tuple[float, float, str], ...] = (
        (0.0, 7.0, VALLEY),
        (7.0, 10.0, FLAT),
        (10.0, 15.0, PEAK),
        (15.0, 18.0, FLAT),
        (18.0, 21.0, PEAK),
        (21.0, 23.0, FLAT),
        (23.0, 24.0, VALLEY),
    )
    # summer critical-peak hours (Beijing: July and August, 11-13 and 16-17); empty = none
    critical_periods: tuple[tuple[float, float], ...] = ()
    critical_months: tuple[int, ...] = (7, 8)

    def __post_init__(self) -> None:
        edges = sorted((a, b) for a, b, _ in self.periods)
        pos = 0.0
        for a, b in edges:
            if abs(a - pos) > 1e-9 or b <= a:
                raise ValueError(f"tariff periods must tile 0..24 h without gaps; problem at {a}-{b}")
            pos = b
        if abs(pos - 24.0) > 1e-9:
            raise ValueError("tariff periods must end at 24 h")
        for _, _, band in self.periods:
            if band not in self.import_yuan_per_kwh:
                raise ValueError(f"no import price for band {band!r}")

    def band_at(self, local_hour: np.ndarray) -> np.ndarray:
        """Band name for each local hour of day."""
        out = np.empty(local_hour.shape, dtype=object)
        for a, b, band in self.periods:
            out[(local_hour >= a) & (local_hour < b)] = band
        return out

    def bands(self, axis: LocalAxis) -> np.ndarray:
        hours = axis.local_hour()
        bands = self.band_at(hours)
        if self.critical_periods:
            months = np.array([d.month for d in axis.dates()])[axis.day_index()]
            in_month = np.isin(months, self.critical_months)
            for a, b in self.critical_periods:
                bands[in_month & (hours >= a) & (hours < b)] = CRITICAL
        return bands

    def prices(self, axis: LocalAxis) -> tuple[np.ndarray, np.ndarray]:
        """(import, export) yuan/kWh per interval of the axis."""
        bands = self.bands(axis)
        imp = np.array([self.import_yuan_per_kwh[b] for b in bands], dtype=float)
        exp = np.array([self.export_yuan_per_kwh.get(b, 0.0) for b in bands], dtype=float)
        return imp, exp


BEIJING_CRITICAL_PERIODS = ((11.0, 13.0), (16.0, 17.0))


def beijing_tou(critical_peak: bool = False, **prices: float) -> TouTariff:
    """The default Beijing-style tariff; `critical_peak` adds the July/August critical-peak hours.

    Keyword overrides: `peak`, `flat`, `valley`, `critical` (import) and `export_peak`,
    `export_flat`, `export_valley`, `export_critical`.
    """
    base = TouTariff()
    imp = dict(base.import_yuan_per_kwh)
    exp = dict(base.export_yuan_per_kwh)
    for key, value in prices.items():
        if key.startswith("export_"):
            band = key.removeprefix("export_")
            if band not in exp:
                raise ValueError(f"unknown tariff band {band!r}")
            exp[band] = float(value)
        elif key in imp:
            imp[key] = float(value)
        else:
            raise ValueError(f"unknown tariff band {key!r}")
    return TouTariff(
        import_yuan_per_kwh=imp,
        export_yuan_per_kwh=exp,
        critical_periods=BEIJING_CRITICAL_PERIODS if critical_peak else (),
    )


def tariff_block(tariff: TouTariff, axis: LocalAxis, resolution_s: int = 900) -> dict:
    """The scenario's `tariff` object: prices per `resolution_s` covering the axis."""
    coarse = LocalAxis(axis.start, axis.duration_s, resolution_s)
    imp, exp = tariff.prices(coarse)
    return {
        "resolution_s": resolution_s,
        "import_yuan_per_kwh": [round(float(x), 4) for x in imp],
        "export_yuan_per_kwh": [round(float(x), 4) for x in exp],
    }
