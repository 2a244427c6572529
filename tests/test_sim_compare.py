"""`youxu sim compare` on the community-630 summer day: every strategy side by side, in parallel processes."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from tests import contract
from youxu.controller.cli import main
from youxu.sim.generate import generate_scenario
from youxu.sim.report_text import KPI_LABELS, PARETO_LABELS
from youxu.sim.scenario import save_scenario

STRATEGIES = ["uncontrolled", "llf", "mpc", "offline"]
OUTPUTS = contract.SIM_OUTPUT_FILES


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], str]:
    d = tmp_path_factory.mktemp("compare")
    scenario = d / "community-630.json"
    save_scenario(generate_scenario("community-630", seed=1), scenario)
    out = d / "out"
    # one run for the module (capsys is per test): capture by hand
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["sim", "compare", "--scenario", str(scenario), "--strategies", ",".join(STRATEGIES),
                   "--out", str(out), "--json"])
    assert rc == 0
    return out, json.loads(stdout.getvalue()), stderr.getvalue()


def test_prints_every_strategy_and_nothing_else(compared: tuple[Path, list[dict], str]) -> None:
    out, kpis, stderr = compared
    assert [k["strategy"] for k in kpis] == STRATEGIES
    assert all(k["format"] == contract.KPI_FORMAT for k in kpis)
    for k in kpis:
        assert set(contract.KPI_KEYS) <= set(k), k["strategy"]
    assert stderr == ""  # --json: no progress output
    assert json.loads((out / "compare.json").read_text()) == kpis


def test_controlled_strategies_keep_the_limits_and_uncontrolled_overloads(
        compared: tuple[Path, list[dict], str]) -> None:
    _, kpis, _ = compared
    by = {k["strategy"]: k for k in kpis}
    assert by["uncontrolled"]["limit_violation_steps"] > 0
    assert by["uncontrolled"]["max_violation_kw"] > 1.0
    for s in ("llf", "mpc", "offline"):
        assert by[s]["limit_violation_steps"] == 0, s
        assert by[s]["sessions_fully_served"] == by[s]["sessions_total"], s
    # the optimisers move charging into cheaper hours than least-laxity-first does
    assert by["offline"]["import_cost_yuan"] < by["llf"]["import_cost_yuan"]
    assert by["mpc"]["import_cost_yuan"] < by["llf"]["import_cost_yuan"]


def test_each_strategy_has_its_outputs_and_the_comparison_its_table_and_plot(
        compared: tuple[Path, list[dict], str]) -> None:
    out, kpis, _ = compared
    for k in kpis:
        d = out / k["strategy"]
        for name in OUTPUTS:
            assert (d / name).stat().st_size > 0, d / name
        assert json.loads((d / "kpis.json").read_text()) == k
    md = (out / "compare.md").read_text().splitlines()
    header = next(line for line in md if line.startswith("| figure"))
    assert header == "| figure | " + " | ".join(f"`{s}`" for s in STRATEGIES) + " |"
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in md if line.startswith("| ")}
    for key in contract.KPI_FIGURES:  # every figure of the contract has its row
        cells = rows[KPI_LABELS[key]].strip("| ").split(" | ")[1:]
        assert cells == [str(k[key]) if k[key] is not None else "—" for k in kpis], key
    for key, label in PARETO_LABELS.items():
        cells = rows[label].strip("| ").split(" | ")[1:]
        assert cells == [str(k["pareto"][key]) for k in kpis], key
    png = (out / "compare.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_every_strategy_is_measured_against_the_perfect_foresight_front(
        compared: tuple[Path, list[dict], str]) -> None:
    _, kpis, _ = compared
    by = {k["strategy"]: k for k in kpis}
    for s, k in by.items():
        front = k["pareto"]
        assert set(front) == {"peak_at_same_cost_kw", "cost_at_same_peak_yuan", "peak_gap", "cost_gap"}, s
        assert front["peak_gap"] == pytest.approx(k["peak_total_kw"] / front["peak_at_same_cost_kw"], rel=1e-3)
        assert front["cost_gap"] == pytest.approx(k["ev_cost_yuan"] / front["cost_at_same_peak_yuan"], rel=1e-3)
        assert k["ev_cost_yuan"] < k["import_cost_yuan"]  # the cars' share of the bill
    # perfect foresight played back through the dead band sits on the front (minute steps in 15-minute blocks)
    assert by["offline"]["pareto"]["peak_gap"] == pytest.approx(1.0, abs=0.02)
    assert by["offline"]["pareto"]["cost_gap"] == pytest.approx(1.0, abs=0.02)
    # least-laxity-first charges on arrival, into the evening peak and its tariff: far from the front on cost
    assert by["llf"]["pareto"]["cost_gap"] > by["mpc"]["pareto"]["cost_gap"]
