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
TIMESERIES_FMT = ["%d", "%.3f", "%.3f", "%.3f", "%.3f", "%.4f"]
ROW_CHUNK = 500_000  # rows formatted at a time


def result_kpis(res: RunResult) -> dict:
    return compute_kpis(res.scenario, res.strategy, res.sched_step, res.sched_session, res.sched_pile,
                        res.sched_kw, res.plan_ms, res.fallbacks, res.wall_s)


def write_timeseries(path: Path, sc: Scenario, res: RunResult) -> None:
    base, ev, total, _ = site_series(sc, res.sched_step, res.sched_pile, res.sched_kw)
    cols = np.column_stack([sc.step_times_s(), base, ev, total, res.limit_kw, sc.import_price()])
    with path.open("w", newline="") as f:
        f.write(",".join(TIMESERIES_HEADER) + "\n")
        for a in range(0, sc.n_steps, ROW_CHUNK):
            np.savetxt(f, cols[a:a + ROW_CHUNK], fmt=TIMESERIES_FMT, delimiter=",")


def schedule_order(sc: Scenario, res: RunResult) -> np.ndarray | None:
    """Row order by step then session, or None when the rows are in that order already."""
    key = res.sched_step.astype(np.int64) * max(len(sc.sessions), 1) + res.sched_session
    if key.size < 2 or bool((key[1:] >= key[:-1]).all()):
        return None
    return np.argsort(key, kind="stable")


def write_schedule(path: Path, sc: Scenario, res: RunResult) -> None:
    """One row per session per step it was plugged in, by step then session, a chunk of rows at a time."""
    step_prefix = np.array([f"{int(t)}," for t in sc.step_times_s()], dtype=object)
    # a session stays on its pile: "session_id,pile_id," is one string per session
    session_prefix = np.array([f"{s.id},{s.pile}," for s in sc.sessions], dtype=object)
    order = schedule_order(sc, res)
    with path.open("w", newline="") as f:
        f.write(",".join(SCHEDULE_HEADER) + "\n")
        for a in range(0, res.sched_kw.size, ROW_CHUNK):
            rows = slice(a, a + ROW_CHUNK) if order is None else order[a:a + ROW_CHUNK]
            kw = res.sched_kw[rows]
            kw_text = np.fromiter(map("%.4f\n".__mod__, kw.tolist()), dtype=object, count=kw.size)
            lines = step_prefix[res.sched_step[rows]] + session_prefix[res.sched_session[rows]] + kw_text
            f.write("".join(lines.tolist()))


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
