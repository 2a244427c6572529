"""Writing a run's outputs (contract section 3): kpis.json, timeseries.csv, schedule.csv, report."""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from youxu.sim.engine import RunResult, run_scenario, schedule_row_count
from youxu.sim.kpis import compute_kpis
from youxu.sim.scenario import Scenario
from youxu.sim.schedule_csv import SCHEDULE_HEADER, ScheduleStream, ScheduleText

TIMESERIES_HEADER = ["t_s", "base_kw", "ev_kw", "total_kw", "limit_kw", "import_price"]
TIMESERIES_FMT = ["%d", "%.3f", "%.3f", "%.3f", "%.3f", "%.4f"]
ROW_CHUNK = 500_000  # timeseries rows formatted at a time
STREAM_MIN_ROWS = 2_000_000  # from this many schedule rows on, schedule.csv is written while the run goes on


def result_kpis(res: RunResult) -> dict:
    return compute_kpis(res.scenario, res.strategy, res.sched_step, res.sched_session, res.sched_pile,
                        res.sched_kw, res.plan_ms, res.fallbacks, res.wall_s, series=res.series)


def write_timeseries(path: Path, sc: Scenario, res: RunResult) -> None:
    base, ev, total, _ = res.series
    cols = np.column_stack([sc.step_times_s(), base, ev, total, res.limit_kw, sc.import_price()])
    with path.open("w", newline="") as f:
        f.write(",".join(TIMESERIES_HEADER) + "\n")
        for a in range(0, sc.n_steps, ROW_CHUNK):
            np.savetxt(f, cols[a:a + ROW_CHUNK], fmt=TIMESERIES_FMT, delimiter=",")


def schedule_order(sc: Scenario, res: RunResult) -> np.ndarray | None:
    """Row order by step then pile, or None when the rows are in that order already."""
    key = res.sched_step.astype(np.int64) * max(len(sc.piles), 1) + res.sched_pile
    if key.size < 2 or bool((key[1:] >= key[:-1]).all()):
        return None
    return np.argsort(key, kind="stable")


def session_labels(sc: Scenario) -> list[tuple[str, str]]:
    return [(s.id, s.pile) for s in sc.sessions]


def write_schedule(path: Path, sc: Scenario, res: RunResult) -> None:
    """One row per session per step it was plugged in, by step then pile."""
    order = schedule_order(sc, res)
    step, session, kw = res.sched_step, res.sched_session, res.sched_kw
    if order is not None:
        step, session, kw = step[order], session[order], kw[order]
    with path.open("w", newline="") as f:
        f.write(",".join(SCHEDULE_HEADER) + "\n")
        ScheduleText(sc.step_s, sc.n_steps, session_labels(sc)).write(f, step, session, kw)


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


def write_outputs(out: Path, res: RunResult, kpis: dict | None = None, schedule: bool = True) -> dict:
    """Write every output of a run into `out` (schedule.csv unless `schedule` is False); return the KPIs."""
    from youxu.sim.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    sc = res.scenario
    kpis = kpis or result_kpis(res)
    (out / "kpis.json").write_text(json.dumps(kpis, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_timeseries(out / "timeseries.csv", sc, res)
    if schedule:
        write_schedule(out / "schedule.csv", sc, res)
    write_report(out, sc, res, kpis)
    return kpis


def run_and_write(sc: Scenario, strategy: str, out: Path,
                  progress: Callable[[int, int], None] | None = None) -> tuple[RunResult, dict]:
    """Simulate and write every output into `out`; a long run's schedule.csv is written by another process
    while the simulation goes on."""
    out.mkdir(parents=True, exist_ok=True)
    if schedule_row_count(sc) < STREAM_MIN_ROWS:
        res = run_scenario(sc, strategy, progress=progress)
        return res, write_outputs(out, res)
    stream = ScheduleStream(out / "schedule.csv", sc.step_s, sc.n_steps, session_labels(sc))
    try:
        res = run_scenario(sc, strategy, progress=progress, on_rows=stream.send)
        kpis = write_outputs(out, res, schedule=False)
    except BaseException:
        with contextlib.suppress(OSError):
            stream.close()
        raise
    stream.close()
    return res, kpis
