"""Measured household load instead of the model: a CSV of timestamps and kW, resampled and scaled.

CSV: a header row; a time column (`timestamp`, `time`, `datetime`, `ts` or `epoch_s`) holding
RFC 3339 / ISO 8601 times (without an offset: local Beijing time) or epoch seconds; and either
one total column (`kw`, `total_kw`, `power_kw`, `p_kw`) or three phase columns (`L1`, `L2`, `L3`,
also spelled `l1_kw`, `p1_kw` ...). Lines starting with `#` are comments.

A value stands for the average power of the interval that starts at its timestamp (as a meter
logs 15-minute demand) — `label="end"` for intervals that end there. Resampling integrates that
step signal exactly over each target interval, so energy is preserved both when averaging 1-s
data to 1 min and when spreading 15-min data over 1-min steps.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from youxu.config.errors import UserError
from youxu.config.userfiles import MIB, read_text
from youxu.sim.tou import DAY_S, LOCAL_TZ, LocalAxis

MEASURED_CSV_MAX_BYTES = 256 * MIB  # years of one-minute readings
TIME_COLUMNS = ("timestamp", "time", "datetime", "ts", "epoch_s", "t")
TOTAL_COLUMNS = ("kw", "total_kw", "power_kw", "p_kw", "load_kw")
PHASE_COLUMNS = (
    ("l1", "l1_kw", "p1_kw", "pa_kw"),
    ("l2", "l2_kw", "p2_kw", "pb_kw"),
    ("l3", "l3_kw", "p3_kw", "pc_kw"),
)


@dataclass(frozen=True)
class MeasuredLoad:
    times_s: np.ndarray  # epoch seconds, strictly increasing: start of each value's interval
    phase_kw: np.ndarray  # (n, 3); a total-only file is split by `phase_shares` on reading
    per_phase: bool  # the file had phase columns
    source: str = "measured"

    @property
    def total_kw(self) -> np.ndarray:
        return self.phase_kw.sum(axis=1)

    @property
    def interval_s(self) -> float:
        """Typical spacing of the samples (median)."""
        return float(np.median(np.diff(self.times_s))) if self.times_s.size > 1 else 60.0


def _parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=LOCAL_TZ)
    return dt.timestamp()


def load_measured_csv(path: str | Path, label: str = "start",
                      phase_shares: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)) -> MeasuredLoad:
    """Read a measured-load CSV; UserError naming the file, line and column on bad input."""
    p = Path(path)
    if label not in ("start", "end"):
        raise ValueError("label must be 'start' or 'end'")
    text = read_text(p, max_bytes=MEASURED_CSV_MAX_BYTES)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    rows = list(csv.reader(lines))
    if len(rows) < 3:
        raise UserError(f"{p}: needs a header and at least two rows of data")
    header = [h.strip().lower() for h in rows[0]]
    t_col = next((header.index(c) for c in TIME_COLUMNS if c in header), None)
    if t_col is None:
        raise UserError(f"{p}: no time column (one of {', '.join(TIME_COLUMNS)})")
    ph_cols = [next((header.index(c) for c in names if c in header), None) for names in PHASE_COLUMNS]
    total_col = next((header.index(c) for c in TOTAL_COLUMNS if c in header), None)
    per_phase = all(c is not None for c in ph_cols)
    if not per_phase and total_col is None:
        raise UserError(f"{p}: no power column (a total {', '.join(TOTAL_COLUMNS)} or phases L1, L2, L3)")
    times, values = [], []
    for line_no, row in enumerate(rows[1:], start=2):
        try:
            times.append(_parse_time(row[t_col]))
            if per_phase:
                values.append([float(row[c]) for c in ph_cols])  # type: ignore[index]
            else:
                values.append([float(row[total_col])])  # type: ignore[index]
        except (ValueError, IndexError) as exc:
            raise UserError(f"{p}: line {line_no}: cannot read {row!r} ({exc})") from None
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(v)):
        raise UserError(f"{p}: power values must be finite numbers")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if np.any(np.diff(t) <= 0):
        raise UserError(f"{p}: duplicate timestamps")
    if label == "end":
        first = t[1] - t[0]
        t = np.concatenate([[t[0] - first], t[:-1]])
    if not per_phase:
        shares = np.asarray(phase_shares, dtype=float)
        v = v[:, :1] * (shares / shares.sum())[None, :]
    return MeasuredLoad(t, v, per_phase, str(p))


def _integral(m: MeasuredLoad) -> tuple[np.ndarray, np.ndarray]:
    """Knots and cumulative energy (kW·s) of the step signal, per phase; the last value lasts one interval."""
    knots = np.concatenate([m.times_s, [m.times_s[-1] + m.interval_s]])
    dt = np.diff(knots)
    cum = np.vstack([np.zeros((1, 3)), np.cumsum(m.phase_kw * dt[:, None], axis=0)])
    return knots, cum


def measured_phase_kw(
    m: MeasuredLoad,
    axis: LocalAxis,
    scale: float = 1.0,
    align: str = "time-of-day",
    target_peak_kw: float | None = None,
) -> np.ndarray:
    """The measured load on `axis`, per phase, shape (axis.n, 3).

    `align="absolute"` takes the same instants (the file must cover the scenario);
    `"time-of-day"` maps each local time of the scenario to the same local time in the
    measured days, repeating them in order (the first measured day starts at the local
    midnight before the first sample). Then multiplies by `scale`, or scales so the total's
    peak is `target_peak_kw`.
    """
    knots, cum = _integral(m)
    start_s = axis.start.timestamp()
    edges = start_s + np.arange(axis.n, dtype=float) * axis.resolution_s
    if align == "absolute":
        if edges[0] < knots[0] or edges[-1] + axis.resolution_s > knots[-1] + 1e-6:
            raise UserError(
                f"{m.source}: covers {_fmt(knots[0])} to {_fmt(knots[-1])}, the scenario needs "
                f"{_fmt(edges[0])} to {_fmt(edges[-1] + axis.resolution_s)}"
            )
        a = edges
    elif align == "time-of-day":
        first_local = datetime.fromtimestamp(knots[0], LOCAL_TZ)
        m0 = knots[0] - (first_local.hour * 3600 + first_local.minute * 60 + first_local.second
                         + first_local.microsecond / 1e6)
        n_days = max(1, int(np.ceil((knots[-1] - m0) / DAY_S - 1e-9)))
        offset = (edges - start_s) + axis.first_midnight_offset_s
        a = m0 + np.mod(offset, n_days * DAY_S)
    else:
        raise ValueError("align must be 'absolute' or 'time-of-day'")
    b = a + axis.resolution_s
    out = np.empty((axis.n, 3))
    for i in range(3):
        f = cum[:, i]
        # outside the measured span the first/last values hold
        fa = np.interp(a, knots, f) + np.minimum(a - knots[0], 0) * m.phase_kw[0, i] \
            + np.maximum(a - knots[-1], 0) * m.phase_kw[-1, i]
        fb = np.interp(b, knots, f) + np.minimum(b - knots[0], 0) * m.phase_kw[0, i] \
            + np.maximum(b - knots[-1], 0) * m.phase_kw[-1, i]
        out[:, i] = (fb - fa) / axis.resolution_s
    if target_peak_kw is not None:
        peak = out.sum(axis=1).max()
        if peak <= 0:
            raise UserError(f"{m.source}: cannot scale a load without a positive peak")
        scale = target_peak_kw / peak
    return out * scale


def _fmt(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, LOCAL_TZ).isoformat()
