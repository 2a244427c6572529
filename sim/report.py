"""The run report: report.png (load stack, limit, dispatch windows, tariff bands, prices, V2G state
of charge) and report.html, which shows it with the served-energy histogram, the KPIs and a short
explanation of each chart for a reader who never ran the simulator."""

from __future__ import annotations

import base64
import html
import io
import itertools
from datetime import timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from youxu.sim.engine import RunResult
from youxu.sim.kpis import SERVED_FRACTION, delivered_per_session_kwh, per_step_kw, session_targets_kwh
from youxu.sim.report_text import CHART_HELP, KPI_HELP, KPI_LABELS, SERVED_HELP, THERMAL_KPI_LABELS
from youxu.sim.scenario import Scenario
from youxu.sim.thermal import thermal_series

__all__ = ["KPI_LABELS", "Buckets", "plot_report", "steps", "time_axis", "write_report"]

MAX_POINTS = 1500  # longer runs are plotted in buckets of several steps (a day of minutes is not)
BUCKETS_S = {300: "5 minutes", 900: "15 minutes", 3600: "hour", 10800: "3 hours", 86400: "day", 604800: "week"}
BAND_COLOURS = {"valley": "#d9f0d3", "flat": "#f7f7f7", "peak": "#fde0c5", "critical peak": "#f4a582"}
BAND_NAMES = {1: ("flat",), 2: ("valley", "peak"), 3: ("valley", "flat", "peak"),
              4: ("valley", "flat", "peak", "critical peak")}
DISPATCH_COLOUR = "#7b3294"
MAX_SOC_LINES = 12
LEGEND_HEADROOM = 1.4  # the load chart's height over its highest line, room for the legend


def tariff_bands(price: np.ndarray) -> np.ndarray:
    """Name of the tariff band of each price: its rank among the tariff's levels (terciles beyond four)."""
    levels = np.unique(price)
    if levels.size in BAND_NAMES:
        return np.array(BAND_NAMES[levels.size], dtype=object)[np.searchsorted(levels, price)]
    lo, hi = np.quantile(price, [1 / 3, 2 / 3])
    return np.where(price <= lo, "valley", np.where(price >= hi, "peak", "flat")).astype(object)


class Buckets:
    """Steps grouped for plotting: one point per bucket of steps, the shortest of `BUCKETS_S` that keeps a
    chart under `MAX_POINTS` points, so that a week shows its hours and a year its days."""

    def __init__(self, sc: Scenario) -> None:
        self.size, self.label = 1, f"{sc.step_s} s"
        if sc.n_steps > MAX_POINTS:
            for seconds, label in BUCKETS_S.items():
                self.size, self.label = max(1, seconds // sc.step_s), label
                if -(-sc.n_steps // self.size) <= MAX_POINTS:
                    break
        self.starts = np.arange(0, sc.n_steps, self.size)
        t = sc.start + np.array([timedelta(seconds=int(s)) for s in self.starts * sc.step_s])
        self.edges = [*t, sc.start + timedelta(seconds=sc.duration_s)]  # bucket boundaries, one more than buckets

    def mean(self, x: np.ndarray) -> np.ndarray:
        counts = np.diff(np.append(self.starts, x.shape[0]))
        return np.add.reduceat(x, self.starts, axis=0) / (counts if x.ndim == 1 else counts[:, None])

    def nanmean(self, x: np.ndarray) -> np.ndarray:
        """Mean of the values present in each bucket (NaN where none is)."""
        present = ~np.isnan(x)
        count = np.add.reduceat(present, self.starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, np.add.reduceat(np.where(present, x, 0.0), self.starts) / count, np.nan)

    def max(self, x: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(x, self.starts)

    def min(self, x: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(x, self.starts)

    def any(self, x: np.ndarray) -> np.ndarray:
        return np.logical_or.reduceat(x, self.starts)

    def first(self, x: np.ndarray) -> np.ndarray:
        return x[self.starts]


def steps(y: np.ndarray) -> np.ndarray:
    """Values for a step plot over the bucket edges (the last value held to the end)."""
    return np.append(y, y[-1])


def _shade(ax: plt.Axes, b: Buckets, mask: np.ndarray, **style: object) -> None:
    if mask.any():
        ax.fill_between(b.edges, 0, 1, where=steps(mask), step="post", transform=ax.get_xaxis_transform(),
                        lw=0, **style)


def pile_soc(sc: Scenario, res: RunResult, piles: np.ndarray) -> np.ndarray:
    """(n_steps, len(piles)) state of charge of the car on each of `piles` after each step, NaN where none."""
    soc = np.full((sc.n_steps, piles.size), np.nan)
    col = np.full(len(sc.piles), -1)
    col[piles] = np.arange(piles.size)
    rows = np.flatnonzero(col[res.sched_pile] >= 0)
    if not rows.size:
        return soc
    sess = res.sched_session[rows]
    o = np.lexsort((res.sched_step[rows], sess))  # each session's rows in time order
    rows, sess = rows[o], sess[o]
    e_kwh = res.sched_kw[rows] * (sc.step_s / 3600.0)
    cum_kwh = np.cumsum(e_kwh)
    first = np.r_[True, sess[1:] != sess[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(rows.size), 0))  # each row's session's first row
    net_kwh = cum_kwh - (cum_kwh[start] - e_kwh[start])  # since arrival, up to the end of this step
    soc0 = np.array([s.soc_arrival for s in sc.sessions])[sess]
    bat = np.array([s.battery_kwh for s in sc.sessions])[sess]
    soc[res.sched_step[rows], col[res.sched_pile[rows]]] = soc0 + net_kwh / bat
    return soc


def dispatch_windows(sc: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Per step: a dispatch limit in force, a dispatch setpoint in force, the setpoint (kW, NaN: none);
    and what the setpoint applies to (`ev` or `site`)."""
    from youxu.sim.dispatch_arrays import scenario_dispatch_fn

    d = scenario_dispatch_fn(sc)(sc.start.timestamp() + sc.step_times_s())
    limit = np.zeros(sc.n_steps, dtype=bool)
    for arr in (d.site_import_max_kw, d.site_export_max_kw, d.ev_import_max_kw, d.ev_export_max_kw):
        limit |= np.isfinite(arr)
    setpoint = np.isfinite(d.setpoint_kw)
    return limit, setpoint, np.asarray(d.setpoint_kw, dtype=float), d.setpoint_scope


def time_axis(ax: plt.Axes, sc: Scenario) -> None:
    loc = mdates.AutoDateLocator(tz=sc.start.tzinfo)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=sc.start.tzinfo))


def _plot_thermal(ax: plt.Axes, b: Buckets, sc: Scenario, heat: tuple[np.ndarray, np.ndarray, float]) -> None:
    top, hot, _ = heat
    p = sc.site.thermal_params()
    assert p is not None
    ax.step(b.edges, steps(b.max(hot)), where="post", color="#d62728", lw=1.2, label="winding hot-spot")
    ax.step(b.edges, steps(b.max(top)), where="post", color="#fd8d3c", lw=1.2, label="top-oil")
    ax.step(b.edges, steps(b.mean(sc.ambient_per_step_c())), where="post", color="#969696", lw=1.0, label="ambient")
    ax.axhline(p.hotspot_max_c, color="#d62728", ls="--", lw=1.0, label=f"hot-spot max {p.hotspot_max_c:g} °C")
    ax.axhline(p.top_oil_max_c, color="#fd8d3c", ls="--", lw=1.0, label=f"top-oil max {p.top_oil_max_c:g} °C")
    ax.set_ylabel("transformer\n(°C)")
    ax.legend(loc="upper left", fontsize=7, ncol=5)
    ax.grid(alpha=0.3)


def plot_report(path: Path, sc: Scenario, res: RunResult) -> list[str]:
    """report.png: load stack with limit, dispatch windows and tariff bands; prices; V2G state of charge.

    Returns the keys of `CHART_HELP` that describe what was drawn."""
    b = Buckets(sc)
    base, _, total, _ = res.series
    charge = per_step_kw(sc.n_steps, res.sched_step, np.clip(res.sched_kw, 0, None))
    discharge = per_step_kw(sc.n_steps, res.sched_step, np.clip(res.sched_kw, None, 0))
    price = sc.import_price()
    names = tariff_bands(price)
    _, code = np.unique(names, return_inverse=True)
    one_band = b.min(code) == b.max(code)  # buckets inside one band get its colour, longer ones none
    bands = np.where(one_band, b.first(names), None)
    limit_on, setpoint_on, setpoint_kw, setpoint_scope = dispatch_windows(sc)
    v2g_piles = np.array([i for i, p in enumerate(sc.piles) if p.v2g], dtype=np.int64)[:MAX_SOC_LINES]
    heat = thermal_series(sc, total)
    ratios = [3, 1] + ([1.3] if heat is not None else []) + ([1.3] if v2g_piles.size else [])
    n_rows = len(ratios)
    fig, axes = plt.subplots(n_rows, 1, figsize=(12, 3.2 * n_rows + 2.2), sharex=True,
                             gridspec_kw={"height_ratios": ratios})
    ax = axes[0]
    band_handles = []
    for name, colour in BAND_COLOURS.items():
        if (bands == name).any():
            _shade(ax, b, bands == name, color=colour, zorder=0)
            _shade(axes[1], b, bands == name, color=colour, zorder=0)
            band_handles.append(Patch(facecolor=colour, edgecolor="#999999", label=f"{name} tariff"))
    _shade(ax, b, b.any(limit_on), facecolor="none", edgecolor=DISPATCH_COLOUR, hatch="//", alpha=0.35, zorder=1)
    _shade(ax, b, b.any(setpoint_on), facecolor="none", edgecolor="#0571b0", hatch="\\\\", alpha=0.35, zorder=1)
    base_b, charge_b, discharge_b = b.mean(base), b.mean(charge), b.mean(discharge)
    ax.fill_between(b.edges, 0, steps(base_b), step="post", color="#8da0cb", label="households", zorder=2)
    ax.fill_between(b.edges, steps(base_b), steps(base_b + charge_b), step="post", color="#66c2a5",
                    label="EV charging", zorder=2)
    if discharge.min() < 0:
        ax.fill_between(b.edges, 0, steps(discharge_b), step="post", color="#fc8d62", label="V2G discharge",
                        zorder=2)
    peak_label = "transformer total" if b.size == 1 else f"transformer total (highest of each {b.label})"
    ax.step(b.edges, steps(b.max(total)), where="post", color="black", lw=0.9, label=peak_label, zorder=3)
    ax.step(b.edges, steps(b.min(res.limit_kw)), where="post", color="#d62728", lw=1.5, ls="--",
            label="limit in force", zorder=3)
    if setpoint_on.any():
        with np.errstate(invalid="ignore"):
            ax.step(b.edges, steps(b.mean(np.where(setpoint_on, setpoint_kw, np.nan))), where="post",
                    color="#0571b0", lw=1.2, label=f"dispatch setpoint ({setpoint_scope} total)", zorder=3)
    handles, _ = ax.get_legend_handles_labels()
    if limit_on.any():
        handles.append(Patch(facecolor="none", edgecolor=DISPATCH_COLOUR, hatch="//", label="dispatch limit in force"))
    if setpoint_on.any():
        handles.append(Patch(facecolor="none", edgecolor="#0571b0", hatch="\\\\", label="dispatch setpoint in force"))
    ax.legend(handles=handles + band_handles, loc="upper left", fontsize=8, ncol=4, framealpha=0.9)
    finite_limit = res.limit_kw[np.isfinite(res.limit_kw)]
    top = max(float(total.max()), float(finite_limit.max()) if finite_limit.size else 0.0)
    ax.set_ylim(top=top * LEGEND_HEADROOM)
    ax.set_ylabel("kW at the transformer")
    ax.set_title(f"{sc.name} — strategy {res.strategy}")
    ax.grid(alpha=0.3)
    if b.size > 1:  # the cheapest and dearest price of each bucket, and its mean
        axes[1].fill_between(b.edges, steps(b.min(price)), steps(b.max(price)), step="post", color="#7570b3",
                             alpha=0.25, lw=0)
    axes[1].step(b.edges, steps(b.mean(price)), where="post", color="#7570b3")
    axes[1].set_ylabel("import price\n(yuan/kWh)")
    axes[1].grid(alpha=0.3)
    if heat is not None:
        _plot_thermal(axes[2], b, sc, heat)
    if v2g_piles.size:
        soc_ax = axes[-1]
        soc = pile_soc(sc, res, v2g_piles)
        for j, i in enumerate(v2g_piles):
            soc_ax.step(b.edges, steps(b.nanmean(soc[:, j]) * 100), where="post", lw=1.0, label=sc.piles[i].id)
        soc_ax.set_ylabel("V2G car\nstate of charge (%)")
        soc_ax.set_ylim(0, 100)
        soc_ax.legend(loc="upper left", fontsize=7, ncol=6)
        soc_ax.grid(alpha=0.3)
    time_axis(axes[-1], sc)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    shown = {"load": True, "dispatch": bool(limit_on.any() or setpoint_on.any()), "bands": bool(band_handles),
             "price": True, "thermal": heat is not None,
             "soc": bool(v2g_piles.size), "long": b.size > 1}
    return [k for k, on in shown.items() if on]


def served_fractions(sc: Scenario, res: RunResult) -> np.ndarray:
    """Per session: the energy it got over what it was owed (its request, or what its window allowed)."""
    target = session_targets_kwh(sc)
    delivered = delivered_per_session_kwh(sc, res.sched_session, res.sched_kw)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(target > 1e-9, np.clip(delivered, 0.0, None) / target, 1.0)


def plot_served_histogram(sc: Scenario, res: RunResult) -> bytes:
    """PNG bytes: how many sessions got what share of the energy they were owed."""
    frac = served_fractions(sc, res)
    edges = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, SERVED_FRACTION, np.inf])
    counts = np.histogram(np.clip(frac, 0.0, None), bins=edges)[0]
    labels = [f"{a:.0%}–{b:.0%}" for a, b in itertools.pairwise(edges[:-1])] + [
        f"≥ {SERVED_FRACTION:.0%}\n(fully served)"]
    fig, ax = plt.subplots(figsize=(12, 3.4))
    colours = ["#d6604d"] * (len(counts) - 1) + ["#4dac26"]
    bars = ax.bar(range(len(counts)), counts, color=colours)
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(counts)), labels, fontsize=8)
    ax.set_xlabel("share of the energy owed that the session got")
    ax.set_ylabel("sessions")
    ax.set_title(f"Energy served per session ({frac.size} sessions)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _kpi_rows(kpis: dict) -> str:
    rows = []
    for k, v in kpis.items():
        if k in ("format", "strategy", "scenario"):
            continue
        label = KPI_LABELS.get(k) or THERMAL_KPI_LABELS.get(k, k)
        rows.append(f"<tr><th>{html.escape(label)}</th>"
                    f"<td class=num>{html.escape('—' if v is None else str(v))}</td>"
                    f"<td>{html.escape(KPI_HELP.get(k, ''))}</td></tr>")
    return "\n".join(rows)


def write_report(out: Path, sc: Scenario, res: RunResult, kpis: dict) -> None:
    png = out / "report.png"
    shown = plot_report(png, sc, res)
    main_img = base64.b64encode(png.read_bytes()).decode()
    hist_img = base64.b64encode(plot_served_histogram(sc, res)).decode()
    help_items = "\n".join(f"<li>{CHART_HELP[key]}</li>" for key in shown)
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>youxu report — {html.escape(sc.name)} / {html.escape(res.strategy)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}}
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:4px 10px;text-align:left;vertical-align:top}}
th{{background:#f4f4f4;font-weight:normal}}td.num{{text-align:right;white-space:nowrap}}
img{{max-width:100%}}.note{{color:#555}}</style></head>
<body>
<h1>Scenario {html.escape(sc.name)} — strategy <code>{html.escape(res.strategy)}</code></h1>
<p>A simulated residential transformer: {sc.site.transformer_kva:g} kVA, import limit {sc.site.limit_kw:g} kW,
{len(sc.piles)} charging piles, {len(sc.sessions)} charging sessions, {sc.duration_s / 3600:g} h from
{html.escape(sc.start.isoformat())} in steps of {sc.step_s} s. The strategy <code>{html.escape(res.strategy)}</code>
decided each pile's power step by step; the figures below show what the transformer carried and whether every
driver got the energy they asked for.</p>
<h2>Load at the transformer</h2>
<img id="load" src="data:image/png;base64,{main_img}" alt="load stack with limit, dispatch windows and tariff bands;
import price; state of charge of V2G cars">
<ul class="note">
{help_items}
</ul>
<h2>Energy served per session</h2>
<img id="served" src="data:image/png;base64,{hist_img}" alt="histogram of the share of energy each session got">
<p class="note">{SERVED_HELP}</p>
<h2>Key figures</h2>
<table id="kpis">
<tr><th>figure</th><th>value</th><th>what it means</th></tr>
{_kpi_rows(kpis)}
</table>
</body></html>
"""
    (out / "report.html").write_text(doc, encoding="utf-8")

