"""Writing a run's outputs (contract section 3): kpis.json, timeseries.csv, schedule.csv, report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from sim.engine import RunResult
from sim.kpis import compute_kpis, site_series
from sim.scenario import Scenario

TIMESERIES_HEADER = ["t_s", "base_kw", "ev_kw", "total_kw", "limit_kw", "import_price"]
SCHEDULE_HEADER = ["t_s", "session_id", "pile_id", "kw"]


def result_kpis(res: RunResult) -> dict:
    return compute_kpis(res.scenario, res.strategy, res.sched_step, res.sched_session, res.sched_pile,
                        res.sched_kw, res.plan_ms, res.fallbacks, res.wall_s)


def write_timeseries(path: Path, sc: Scenario, res: RunResult) -> None:
    base, ev, total, _ = site_series(sc, res.sched_step, res.sched_pile, res.sched_kw)
    price = sc.import_price()
    t = sc.step_times_s()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TIMESERIES_HEADER)
        for k in range(sc.n_steps):
            w.writerow([int(t[k]), f"{base[k]:.3f}", f"{ev[k]:.3f}", f"{total[k]:.3f}", f"{res.limit_kw[k]:.3f}",
                        f"{price[k]:.4f}"])


def write_schedule(path: Path, sc: Scenario, res: RunResult) -> None:
    sids = [s.id for s in sc.sessions]
    pids = [p.id for p in sc.piles]
    order = np.lexsort((res.sched_session, res.sched_step))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SCHEDULE_HEADER)
        for i in order:
            w.writerow([int(res.sched_step[i]) * sc.step_s, sids[res.sched_session[i]], pids[res.sched_pile[i]],
                        f"{res.sched_kw[i]:.4f}"])


def read_schedule(path: Path, sc: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """schedule.csv back into (step, session index, pile index, kW) arrays."""
    sidx = {s.id: i for i, s in enumerate(sc.sessions)}
    pidx = {p.id: i for i, p in enumerate(sc.piles)}
    steps, sess, piles, kw = [], [], [], []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            steps.append(int(row["t_s"]) // sc.step_s)
            sess.append(sidx[row["session_id"]])
            piles.append(pidx[row["pile_id"]])
            kw.append(float(row["kw"]))
    return (np.array(steps, dtype=np.int64), np.array(sess, dtype=np.int64), np.array(piles, dtype=np.int64),
            np.array(kw, dtype=float))


def write_outputs(out: Path, res: RunResult, kpis: dict | None = None) -> dict:
    """Write every output of a run into `out`; return the KPIs."""
    from sim.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    sc = res.scenario
    kpis = kpis or result_kpis(res)
    (out / "kpis.json").write_text(json.dumps(kpis, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_timeseries(out / "timeseries.csv", sc, res)
    write_schedule(out / "schedule.csv", sc, res)
    write_report(out, sc, res, kpis)
    return kpis
