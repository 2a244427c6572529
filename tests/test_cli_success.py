"""The command line's success paths as a user runs them (a `youxu` process each): `sim generate`,
`sim run --json` with the `edf` strategy next to `llf`, and `bench solve --json`, checked against the
contract (tests/contract.py), not against the code's own constants."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import contract

ROOT = Path(__file__).resolve().parent.parent


def youxu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "youxu.controller.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def generate(out: Path, seed: int) -> dict:
    r = youxu("sim", "generate", "--preset", "small", "--seed", str(seed), "--piles", "8", "--households", "30",
              "--days", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout
    return json.loads(out.read_text())


def test_sim_generate_writes_a_contract_scenario(tmp_path: Path) -> None:
    sc = generate(tmp_path / "a.json", seed=5)
    assert sc["format"] == contract.SCENARIO_FORMAT and set(sc) >= contract.SCENARIO_KEYS
    assert sc["duration_s"] == 86400 and len(sc["piles"]) == 8
    assert all(set(p) >= contract.PILE_KEYS for p in sc["piles"])
    assert all(p["phase"] in contract.PHASES for p in sc["piles"] if p["phases"] == 1)  # a 3-phase pile draws on all
    assert sc["sessions"] and all(set(s) >= contract.SESSION_KEYS for s in sc["sessions"])
    piles = {p["id"] for p in sc["piles"]}
    by_pile: dict[str, list[tuple[int, int]]] = {}
    for s in sc["sessions"]:
        assert 0 <= s["arrival_s"] < s["departure_s"] <= sc["duration_s"], s
        assert s["pile"] in piles and s["priority"] in ("normal", "urgent")
        by_pile.setdefault(s["pile"], []).append((s["arrival_s"], s["departure_s"]))
    for windows in by_pile.values():  # sessions on one pile never overlap
        windows.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(windows)), windows
    load = sc["base_load"]
    values = load["kw"] if "kw" in load else load["phases"]["L1"]
    assert len(values) * load["resolution_s"] >= sc["duration_s"]
    for name in ("import_yuan_per_kwh", "export_yuan_per_kwh"):
        prices = sc["tariff"].get(name)
        if prices is not None:
            assert len(prices) == 1 or len(prices) * sc["tariff"]["resolution_s"] >= sc["duration_s"]
    # the same seed gives the same file, another seed another scenario
    generate(tmp_path / "b.json", seed=5)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert generate(tmp_path / "c.json", seed=6)["sessions"] != sc["sessions"]


def two_cars(path: Path) -> Path:
    """Room for one car at full power (108 kW limit over 100 kW of households): LATE leaves in 2 h and
    needs 40 kWh (no time to spare), SOON leaves in 1 h and needs 2 kWh (plenty of time)."""
    pile = {"max_kw": 7.0, "min_kw": 1.4, "phases": 1, "v2g": False, "max_discharge_kw": 0.0}
    car = {"battery_kwh": 60.0, "v2g": False, "min_soc": 0.2, "priority": "normal"}
    sc = {"format": "youxu.scenario/1", "name": "edf-vs-llf", "start": "2026-07-01T18:00:00+08:00", "step_s": 60,
          "duration_s": 7200,
          "site": {"transformer_kva": 200, "limit_kw": 108, "export_limit_kw": 0, "phase_limit_kw": None},
          "base_load": {"resolution_s": 900, "kw": [100.0] * 8},
          "tariff": {"resolution_s": 7200, "import_yuan_per_kwh": [0.5], "export_yuan_per_kwh": [0.3]},
          "piles": [{"id": "P1", "phase": "L1", **pile}, {"id": "P2", "phase": "L2", **pile}],
          "sessions": [{"id": "LATE", "pile": "P1", "arrival_s": 0, "departure_s": 7200, "energy_kwh": 40.0,
                        "soc_arrival": 0.2, **car},
                       {"id": "SOON", "pile": "P2", "arrival_s": 0, "departure_s": 3600, "energy_kwh": 2.0,
                        "soc_arrival": 0.5, **car}],
          "dispatch": []}
    path.write_text(json.dumps(sc))
    return path


def sim_run_json(scenario: Path, strategy: str, out: Path) -> dict:
    r = youxu("sim", "run", "--scenario", str(scenario), "--strategy", strategy, "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # --json: no progress bar, nothing but the KPIs
    kpis = json.loads(r.stdout)
    assert kpis == json.loads((out / "kpis.json").read_text())
    return kpis


def first_step_kw(out: Path) -> dict[str, float]:
    with (out / "schedule.csv").open(newline="") as f:
        return {row["session_id"]: float(row["kw"]) for row in csv.DictReader(f) if row["t_s"] == "0"}


def test_sim_run_json_prints_the_kpis_it_writes_edf_first_by_departure(tmp_path: Path) -> None:
    scenario = two_cars(tmp_path / "two-cars.json")
    kpis = sim_run_json(scenario, "edf", tmp_path / "edf")
    assert set(kpis) >= set(contract.KPI_KEYS)
    assert (kpis["format"], kpis["strategy"], kpis["scenario"]) == (contract.KPI_FORMAT, "edf", "edf-vs-llf")
    assert {p.name for p in (tmp_path / "edf").iterdir()} >= set(contract.SIM_OUTPUT_FILES)
    for name, header in (("timeseries.csv", contract.TIMESERIES_HEADER), ("schedule.csv", contract.SCHEDULE_HEADER)):
        assert (tmp_path / "edf" / name).read_text().splitlines()[0] == header
    assert kpis["limit_violation_steps"] == 0 and kpis["sessions_total"] == 2
    # earliest departure first: SOON at full power, LATE waits (the 1 kW left is below its 1.4 kW minimum)
    assert first_step_kw(tmp_path / "edf") == {"SOON": pytest.approx(7.0), "LATE": 0.0}
    # SOON got its 2 kWh, LATE what the remaining time allowed
    assert kpis["sessions_fully_served"] == 1
    assert kpis["energy_requested_kwh"] == pytest.approx(42.0)
    assert kpis["unmet_energy_kwh"] == pytest.approx(kpis["energy_requested_kwh"] - kpis["energy_delivered_kwh"],
                                                     abs=0.02)


def test_llf_serves_the_least_laxity_first_on_the_same_cars(tmp_path: Path) -> None:
    scenario = two_cars(tmp_path / "two-cars.json")
    kpis = sim_run_json(scenario, "llf", tmp_path / "llf")
    assert kpis["strategy"] == "llf"
    assert first_step_kw(tmp_path / "llf") == {"LATE": pytest.approx(7.0), "SOON": 0.0}


def test_bench_solve_json_prints_the_contract_keys(tmp_path: Path) -> None:
    r = youxu("bench", "solve", "--piles", "10", "--horizon", "16", "--repeat", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == contract.BENCH_SOLVE_KEYS
    assert (out["piles"], out["horizon"], out["status"]) == (10, 16, "optimal")
    for part in ("build", "solve", "total"):
        assert 0 < out[f"{part}_ms_p50"] <= out[f"{part}_ms_p99"], part


def test_bench_loop_json_runs_the_daemon_against_devices_in_another_process() -> None:
    r = youxu("bench", "loop", "--piles", "4", "--seconds", "3", "--budget-ms", "300", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= contract.BENCH_LOOP_KEYS
    assert out["piles"] == 4 and out["budget_ms"] == 300.0
    assert 1 <= out["ticks"] <= 3 + 1  # one tick per 1 s period at most
    assert 0 <= out["deadline_misses"] <= out["ticks"]
    assert 0 < out["tick_ms_p50"] <= out["tick_ms_p99"]
