"""The run report: report.png (load stack, limit, prices, V2G state of charge) and report.html."""

from __future__ import annotations

import base64
import html
from datetime import timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np

from sim.engine import RunResult
from sim.kpis import per_step_kw, site_series
from sim.scenario import Scenario

KPI_LABELS = {
    "energy_requested_kwh": "Energy requested (kWh)",
    "energy_delivered_kwh": "Energy delivered (kWh)",
    "unmet_energy_kwh": "Unmet energy (kWh)",
    "sessions_total": "Sessions",
    "sessions_fully_served": "Sessions fully served",
    "peak_total_kw": "Peak transformer load (kW)",
    "peak_base_kw": "Peak household load (kW)",
    "valley_total_kw": "Valley transformer load (kW)",
    "peak_to_valley_kw": "Peak-to-valley (kW)",
    "limit_violation_steps": "Steps over a limit",
    "max_violation_kw": "Largest excess (kW)",
    "import_cost_yuan": "Import cost (yuan)",
    "export_revenue_yuan": "Export revenue (yuan)",
    "v2g_discharged_kwh": "V2G discharged (kWh)",
    "dispatch_max_excess_kw": "Largest excess over a dispatch limit (kW)",
    "dispatch_tracking_rmse_kw": "Dispatch setpoint tracking RMSE (kW)",
    "plan_ms_p50": "Planning time p50 (ms)",
    "plan_ms_p99": "Planning time p99 (ms)",
    "plan_fallbacks": "Planner fallbacks",
    "wall_s": "Simulation wall time (s)",
}


def _local_times(sc: Scenario) -> list:
    return [sc.start + timedelta(seconds=int(t)) for t in sc.step_times_s()]


def pile_soc(sc: Scenario, res: RunResult, piles: np.ndarray) -> np.ndarray:
    """(n_steps, len(piles)) state of charge of the car on each of `piles` at the end of each step, NaN where none."""
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
    cum = np.cumsum(e_kwh)
    first = np.r_[True, sess[1:] != sess[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(rows.size), 0))
    net = cum - cum[start] + e_kwh[start]  # energy since the session's arrival, up to this step
    soc0 = np.array([s.soc_arrival for s in sc.sessions])[sess]
    bat = np.array([s.battery_kwh for s in sc.sessions])[sess]
    soc[res.sched_step[rows], col[res.sched_pile[rows]]] = soc0 + net / bat
    return soc


def plot_report(path: Path, sc: Scenario, res: RunResult) -> None:
    base, ev, total, _ = site_series(sc, res.sched_step, res.sched_pile, res.sched_kw)
    times = _local_times(sc)
    charge = per_step_kw(sc.n_steps, res.sched_step, np.clip(res.sched_kw, 0, None))
    discharge = per_step_kw(sc.n_steps, res.sched_step, np.clip(res.sched_kw, None, 0))
    fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True, gridspec_kw={"height_ratios": [3, 1, 1.3]})
    ax = axes[0]
    ax.stackplot(times, base, charge, labels=["households", "EV charging"], colors=["#8da0cb", "#66c2a5"], alpha=0.9)
    if discharge.min() < 0:
        ax.fill_between(times, 0, discharge, color="#fc8d62", alpha=0.9, label="V2G discharge")
    ax.plot(times, total, color="black", lw=1.0, label="transformer total")
    ax.plot(times, res.limit_kw, color="#d62728", lw=1.5, ls="--", label="limit in force")
    ax.axhline(sc.site.limit_kw, color="#d62728", lw=0.8, alpha=0.5)
    ax.set_ylabel("kW")
    ax.set_title(f"{sc.name} — strategy {res.strategy}")
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    axes[1].step(times, sc.import_price(), where="post", color="#7570b3", label="import price")
    axes[1].set_ylabel("yuan/kWh")
    axes[1].grid(alpha=0.3)
    ax3 = axes[2]
    v2g_piles = [i for i, p in enumerate(sc.piles) if p.v2g][:12]
    if v2g_piles:
        soc = pile_soc(sc, res, np.array(v2g_piles))
        for j, i in enumerate(v2g_piles):
            ax3.plot(times, soc[:, j] * 100, lw=1.0, label=sc.piles[i].id)
        ax3.set_ylabel("V2G car SoC (%)")
        ax3.set_ylim(0, 100)
        ax3.legend(loc="upper left", fontsize=7, ncol=6)
    else:
        ax3.plot(times, ev, color="#66c2a5")
        ax3.set_ylabel("EV kW")
    ax3.grid(alpha=0.3)
    ax3.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=sc.start.tzinfo))
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(out: Path, sc: Scenario, res: RunResult, kpis: dict) -> None:
    png = out / "report.png"
    plot_report(png, sc, res)
    img = base64.b64encode(png.read_bytes()).decode()
    rows = "\n".join(
        f"<tr><th>{html.escape(KPI_LABELS.get(k, k))}</th><td>{html.escape('—' if v is None else str(v))}</td></tr>"
        for k, v in kpis.items() if k not in ("format", "strategy", "scenario")
    )
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>youxu report — {html.escape(sc.name)} / {html.escape(res.strategy)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:4px 10px;text-align:left}}
th{{background:#f4f4f4;font-weight:normal}}img{{max-width:100%}}</style></head>
<body>
<h1>Scenario {html.escape(sc.name)} — strategy <code>{html.escape(res.strategy)}</code></h1>
<p>Transformer {sc.site.transformer_kva:g} kVA, import limit {sc.site.limit_kw:g} kW, {len(sc.piles)} piles,
{len(sc.sessions)} charging sessions, {sc.duration_s / 3600:g} h from {sc.start.isoformat()}
in steps of {sc.step_s} s.</p>
<img src="data:image/png;base64,{img}" alt="load stack, limit, prices and state of charge">
<h2>Key figures</h2>
<table id="kpis">
{rows}
</table>
</body></html>
"""
    (out / "report.html").write_text(doc, encoding="utf-8")
