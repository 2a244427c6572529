"""`youxu sim compare`: several strategies on one scenario, side by side.

Each strategy runs in a process of its own (at most one per core) and writes its outputs
(contract section 3) into `DIR/<strategy>/`; then `compare.json` (the list of their
`youxu.kpis/1` objects), `compare.md` (the same as a table) and `compare.png` (every
strategy's transformer load against the limit in force) go into `DIR`.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from youxu.sim.offline import pareto
from youxu.sim.progress import ProgressBar
from youxu.sim.report_text import KPI_LABELS, PARETO_LABELS, THERMAL_KPI_LABELS
from youxu.sim.scenario import Scenario, load_scenario

POLL_S = 0.5
STRATEGY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")  # no red: the limit
RUN_FIRST = ("mpc", "offline")  # the slow ones start first, so the others fill the cores beside them
_progress: list = []  # in a worker: shared counters of the steps done, one per strategy


@dataclass(frozen=True)
class StrategyRun:
    """What a worker hands back: the KPIs and the series the overlay plot needs."""

    kpis: dict
    total_kw: np.ndarray  # (n_steps,) transformer load
    limit_kw: np.ndarray  # (n_steps,) tightest import limit in force


def _init_worker(counters: list) -> None:
    _progress[:] = counters


def run_strategy(scenario_path: Path, strategy: str, out: Path, slot: int = -1) -> StrategyRun:
    """Simulate one strategy and write its outputs into `out/<strategy>/` (runs in a worker process)."""
    from youxu.sim.outputs import run_and_write

    sc = load_scenario(scenario_path)

    def progress(done: int, total: int) -> None:
        if 0 <= slot < len(_progress):
            _progress[slot].value = done

    res, kpis = run_and_write(sc, strategy, out / strategy, progress=progress)
    front = pareto(sc, kpis)
    if front is not None:  # the distance to the perfect-foresight front goes into the strategy's own kpis.json too
        kpis = {**kpis, "pareto": front}
        (out / strategy / "kpis.json").write_text(json.dumps(kpis, indent=2, ensure_ascii=False) + "\n",
                                                  encoding="utf-8")
    return StrategyRun(kpis=kpis, total_kw=res.series[2], limit_kw=res.limit_kw)


def run_parallel(scenario_path: Path, sc: Scenario, strategies: list[str], out: Path,
                 bar: ProgressBar) -> list[StrategyRun]:
    """Every strategy in its own process, at most one per core; results in the order asked."""
    ctx = mp.get_context("spawn")
    counters = [ctx.Value("q", 0, lock=False) for _ in strategies]
    workers = max(1, min(len(strategies), os.cpu_count() or 1))
    total = sc.n_steps * len(strategies)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(counters,)) as pool:
        order = sorted(range(len(strategies)), key=lambda i: strategies[i] not in RUN_FIRST)
        futures: dict[int, Future] = {i: pool.submit(run_strategy, scenario_path, strategies[i], out, i)
                                      for i in order}
        pending = set(futures.values())
        while pending:
            _, pending = wait(pending, timeout=POLL_S)
            bar(min(sum(c.value for c in counters), total - 1) if pending else total, total)
        return [futures[i].result() for i in range(len(strategies))]


def markdown_table(sc: Scenario, kpis: list[dict]) -> str:
    """The KPIs as a markdown table: one row per figure, one column per strategy."""
    names = [k["strategy"] for k in kpis]
    lines = [f"# Strategies compared on {sc.name}", "",
             f"{len(sc.piles)} piles, {len(sc.sessions)} sessions, {sc.duration_s / 3600:g} h from "
             f"{sc.start.isoformat()}, transformer limit {sc.site.limit_kw:g} kW.", "",
             "| figure | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    thermal = {key: label for key, label in THERMAL_KPI_LABELS.items() if any(key in k for k in kpis)}
    for key, label in {**KPI_LABELS, **thermal}.items():
        cells = ["—" if k.get(key) is None else str(k[key]) for k in kpis]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for key, label in PARETO_LABELS.items():
        cells = ["—" if (k.get("pareto") or {}).get(key) is None else str(k["pareto"][key]) for k in kpis]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Gaps are each run's figure over the perfect-foresight front at the energy it served: the peak gap "
              "against the lowest peak of any plan costing no more, the cost gap against the cheapest plan with no "
              "higher peak (1 is on the front)."]
    return "\n".join(lines) + "\n"


def plot_overlay(path: Path, sc: Scenario, runs: list[StrategyRun]) -> None:
    """Every strategy's transformer load on one time axis, with the household load and the limit in force."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from youxu.sim.report import Buckets, steps, time_axis

    b = Buckets(sc)  # a long run is drawn a bucket of steps per point: highest load, lowest limit
    fig, ax = plt.subplots(figsize=(12, 5))
    ax.step(b.edges, steps(b.mean(sc.base_kw())), where="post", color="#999999", lw=0.8, label="households only")
    for run, colour in zip(runs, itertools.cycle(STRATEGY_COLOURS)):
        ax.step(b.edges, steps(b.max(run.total_kw)), where="post", lw=1.1, color=colour, label=run.kpis["strategy"])
    ax.step(b.edges, steps(b.min(runs[0].limit_kw)), where="post", color="#d62728", lw=1.6, ls="--",
            label="limit in force")
    ax.set_ylabel("transformer load (kW)")
    ax.set_title(f"{sc.name}: transformer load by strategy")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    time_axis(ax, sc)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _gaps_text(front: dict | None) -> str:
    if not front:
        return ""
    peak, cost = (("—" if g is None else f"{g:.3f}") for g in (front["peak_gap"], front["cost_gap"]))
    return f"  peak gap {peak}  cost gap {cost}"


def compare(scenario_path: Path, strategies: list[str], out: Path, as_json: bool) -> int:
    """`youxu sim compare`: run, write DIR/<strategy>/ and the comparison; print the KPIs list or a summary."""
    sc = load_scenario(scenario_path)
    strategies = list(dict.fromkeys(strategies))  # each once, in the order given
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bar = ProgressBar(f"{len(strategies)} strategies", quiet=as_json or not sys.stderr.isatty())
    runs = run_parallel(scenario_path.resolve(), sc, strategies, out.resolve(), bar)
    kpis = [r.kpis for r in runs]
    (out / "compare.json").write_text(json.dumps(kpis, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "compare.md").write_text(markdown_table(sc, kpis), encoding="utf-8")
    plot_overlay(out / "compare.png", sc, runs)
    if as_json:
        print(json.dumps(kpis, ensure_ascii=False))
        return 0
    print(f"{sc.name}: {len(strategies)} strategies in {time.perf_counter() - t0:.1f} s -> {out}")
    width = max(len(s) for s in strategies)
    for k in kpis:
        print(f"  {k['strategy']:<{width}}  delivered {k['energy_delivered_kwh']:9.1f}/{k['energy_requested_kwh']:.1f} "
              f"kWh  served {k['sessions_fully_served']}/{k['sessions_total']}  peak {k['peak_total_kw']:7.1f} kW  "
              f"{k['limit_violation_steps']:5d} violation steps  cost {k['import_cost_yuan']:9.0f} yuan"
              + _gaps_text(k.get("pareto")))
    return 0
