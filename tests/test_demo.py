"""`youxu demo` end to end: the real daemon over Modbus TCP for a simulated day, checked by replay.

The replay below recomputes everything from `scenario.json` and `schedule.csv` with plain loops,
independently of the simulator's own KPI code, and compares it with `kpis.json`.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOL_KW = 0.1


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, str]:
    out = tmp_path_factory.mktemp("demo")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "demo", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, wall, proc.stdout


def replay(out: Path) -> dict:
    sc = json.loads((out / "scenario.json").read_text())
    step = sc["step_s"]
    n_steps = sc["duration_s"] // step
    base = sc["base_load"]
    res = base["resolution_s"]
    if "kw" in base:
        base_kw = [base["kw"][min(k * step // res, len(base["kw"]) - 1)] for k in range(n_steps)]
    else:
        base_kw = [sum(base["phases"][p][min(k * step // res, len(base["phases"][p]) - 1)] for p in ("L1", "L2", "L3"))
                   for k in range(n_steps)]
    piles = {p["id"]: p for p in sc["piles"]}
    sessions = {s["id"]: s for s in sc["sessions"]}
    ev = [0.0] * n_steps
    delivered = dict.fromkeys(sessions, 0.0)
    rows_by_session: dict[str, list[tuple[int, float]]] = {}
    with (out / "schedule.csv").open() as f:
        for row in csv.DictReader(f):
            t, kw = int(row["t_s"]), float(row["kw"])
            s = sessions[row["session_id"]]
            assert row["pile_id"] == s["pile"]
            assert s["arrival_s"] - step < t < s["departure_s"], f"{row} outside the session's window"
            ev[t // step] += kw
            delivered[s["id"]] += kw * step / 3600.0
            rows_by_session.setdefault(s["id"], []).append((t, kw))
    problems = []
    for sid, rows in rows_by_session.items():
        s, p = sessions[sid], piles[sessions[sid]["pile"]]
        acc = 0.0
        for t, kw in sorted(rows):
            acc += kw * step / 3600.0
            if kw > p["max_kw"] + 1e-6 or kw < -p.get("max_discharge_kw", 0.0) - 1e-6:
                problems.append(f"{sid} at {t}: {kw} kW outside the pile's limits")
            in_band = 1e-6 < abs(kw) < p["min_kw"] - 1e-3
            partial = t < s["arrival_s"] or t + step > s["departure_s"]  # the car is there for part of the step
            finished = acc >= s["energy_kwh"] - 1e-3  # the car reached its request inside the step
            if in_band and not (partial or finished):
                problems.append(f"{sid} at {t}: {kw} kW inside the dead band (min {p['min_kw']})")
    total = [b + e for b, e in zip(base_kw, ev, strict=True)]
    violations = sum(1 for x in total if x > sc["site"]["limit_kw"] + TOL_KW)
    requested = sum(s["energy_kwh"] for s in sessions.values())
    return {"violations": violations, "problems": problems, "requested": requested,
            "delivered": sum(delivered.values()), "peak": max(total), "peak_base": max(base_kw),
            "valley": min(total)}


def test_demo_finishes_in_time_and_summarises(demo_out):
    out, wall, stdout = demo_out
    assert wall < 60.0, f"demo took {wall:.1f} s"
    for name in ("scenario.json", "kpis.json", "timeseries.csv", "schedule.csv", "report.html", "report.png",
                 "youxu.sqlite"):
        assert (out / name).is_file(), name
    assert "energy delivered" in stdout and "limit violations" in stdout and "tick p50" in stdout


def test_demo_schedule_replays_within_every_limit(demo_out):
    out, _, _ = demo_out
    r = replay(out)
    assert r["violations"] == 0
    assert r["problems"] == []
    assert r["delivered"] >= 0.95 * r["requested"], r


def test_demo_kpis_agree_with_the_replay(demo_out):
    out, _, _ = demo_out
    r = replay(out)
    k = json.loads((out / "kpis.json").read_text())
    assert k["format"] == "youxu.kpis/1"
    assert k["limit_violation_steps"] == r["violations"]
    assert k["energy_requested_kwh"] == pytest.approx(r["requested"], abs=0.01)
    assert k["energy_delivered_kwh"] == pytest.approx(r["delivered"], abs=0.01)
    assert k["peak_total_kw"] == pytest.approx(r["peak"], abs=0.01)
    assert k["peak_base_kw"] == pytest.approx(r["peak_base"], abs=0.01)
    assert k["valley_total_kw"] == pytest.approx(r["valley"], abs=0.01)


def test_demo_stored_its_run_in_sqlite(demo_out):
    import sqlite3

    out, _, _ = demo_out
    con = sqlite3.connect(out / "youxu.sqlite")
    try:
        n = con.execute("select count(*) from readings").fetchone()[0]
    finally:
        con.close()
    assert n >= 1000  # one reading per tick of the simulated day
