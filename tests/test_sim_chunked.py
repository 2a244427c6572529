"""A long run split into weekly chunks with a warm-up, run in parallel and stitched back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from youxu.controller.cli import main
from youxu.sim.chunked import CHUNK_S, WARMUP_S, chunk_scenario, history_days, plan_chunks, run_chunked
from youxu.sim.engine import run_scenario
from youxu.sim.generate import generate_scenario
from youxu.sim.outputs import result_kpis
from youxu.sim.scenario import Scenario, save_scenario

DAY_S = 86400


@pytest.fixture(scope="module")
def long_sc() -> Scenario:
    return generate_scenario("old-community", seed=3, days=17, step_s=900)


def test_chunks_keep_every_step_once_and_reach_every_departure(long_sc: Scenario) -> None:
    chunks = plan_chunks(long_sc)
    assert [(c.keep_s, c.stop_s) for c in chunks] == [(0, 7 * DAY_S), (7 * DAY_S, 14 * DAY_S),
                                                      (14 * DAY_S, 17 * DAY_S)]
    assert [c.start_s for c in chunks] == [0, 6 * DAY_S, 13 * DAY_S]  # a day of warm-up before each but the first
    for c in chunks:
        staying = [s.departure_s for s in long_sc.sessions if s.arrival_s < c.stop_s]
        assert c.end_s >= max(staying) and c.end_s <= long_sc.duration_s


def test_a_chunk_starts_from_the_state_before_it(long_sc: Scenario) -> None:
    ch = plan_chunks(long_sc)[1]
    sub, originals = chunk_scenario(long_sc, ch)
    w = ch.start_s
    assert sub.start.timestamp() == long_sc.start.timestamp() + w and sub.duration_s == ch.end_s - w
    # the household load and prices go on where the chunk starts
    np.testing.assert_array_equal(sub.base_phase_kw()[:10], long_sc.base_phase_kw()[w // 900:w // 900 + 10])
    np.testing.assert_array_equal(sub.import_price()[:96], long_sc.import_price()[w // 900:w // 900 + 96])
    # the meter history is all the household load before it, as 15-minute means: the scenario's own week
    # of history before its start, then its first six days (as far back as the forecast remembers)
    t_h, ph_h = sub.history_phase_kw()
    assert w == 6 * DAY_S and t_h.size == (7 + 6) * 96 <= history_days() * 96
    np.testing.assert_allclose(ph_h[7 * 96:], long_sc.base_phase_kw()[:w // 900], atol=1e-3)
    np.testing.assert_allclose(ph_h[:7 * 96], long_sc.history_phase_kw()[1], atol=1e-3)
    # a later chunk's goes back as far as the forecast remembers, no further
    assert chunk_scenario(long_sc, plan_chunks(long_sc)[2])[0].history_phase_kw()[0].size == \
        min(7 + 13, history_days()) * 96
    # every car plugged in during the chunk, none other; one plugged in before it has had its energy so far
    expect = [i for i, s in enumerate(long_sc.sessions) if s.departure_s > w and s.arrival_s < ch.stop_s]
    assert originals.tolist() == expect
    before = [(long_sc.sessions[i], sub.sessions[k]) for k, i in enumerate(originals)
              if long_sc.sessions[i].arrival_s < w]
    assert before, "the scenario has a car plugged in across the warm-up's start"
    for orig, s in before:
        assert s.arrival_s == 0 and s.departure_s == orig.departure_s - w
        had = orig.energy_kwh - s.energy_kwh
        assert 0 <= had <= orig.energy_kwh
        assert s.soc_arrival == pytest.approx(orig.soc_arrival + had / orig.battery_kwh)


@pytest.mark.parametrize("strategy", ["llf", pytest.param("mpc", marks=pytest.mark.slow)])
def test_chunked_kpis_stay_within_half_a_percent_of_one_sequential_run(long_sc: Scenario, strategy: str) -> None:
    """17 days in chunks of a week. `mpc`'s forecast learns the household load over weeks: with a week of
    meter history only, the chunked run's peak was 0.64 % above one long run's."""
    seq = result_kpis(run_scenario(long_sc, strategy))
    res = run_chunked(long_sc, strategy, CHUNK_S, WARMUP_S, workers=2)
    chk = result_kpis(res)
    print(f"\n{strategy}: sequential {seq['wall_s']} s, chunked {chk['wall_s']} s; energy "
          f"{seq['energy_delivered_kwh']} / {chk['energy_delivered_kwh']} kWh, peak {seq['peak_total_kw']} / "
          f"{chk['peak_total_kw']} kW")
    assert chk["energy_delivered_kwh"] == pytest.approx(seq["energy_delivered_kwh"], rel=0.005)
    assert chk["peak_total_kw"] == pytest.approx(seq["peak_total_kw"], rel=0.005)
    assert chk["sessions_total"] == seq["sessions_total"]
    # one row per session per plugged-in step, each step once, in step order
    assert res.sched_step.size == run_scenario(long_sc, "uncontrolled").sched_step.size
    assert np.all(np.diff(res.sched_step) >= 0)
    assert np.all(res.limit_kw > 0)


def test_bench_chunked_prints_the_differences(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "chunked", "--preset", "small", "--households", "40", "--piles", "8", "--days", "9",
                 "--step-s", "900", "--strategy", "edf", "--workers", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["chunks"], out["chunk_days"], out["warmup_h"], out["workers"]) == (2, 7.0, 24.0, 2)
    for key in ("energy_delivered_kwh", "peak_total_kw"):
        k = out["kpis"][key]
        assert abs(k["rel_diff"]) < 0.005
        assert k["rel_diff"] == pytest.approx((k["chunked"] - k["sequential"]) / k["sequential"], abs=1e-6)


def test_sim_run_in_chunks_writes_the_outputs_of_the_whole_scenario(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    sc = generate_scenario("small", seed=2, households=30, piles=6, days=8, step_s=900)
    save_scenario(sc, tmp_path / "sc.json")
    assert main(["sim", "run", "--scenario", str(tmp_path / "sc.json"), "--strategy", "llf", "--out",
                 str(tmp_path / "out"), "--chunk-days", "7", "--warmup-hours", "12", "--json"]) == 0
    kpis = json.loads(capsys.readouterr().out)
    with (tmp_path / "out" / "timeseries.csv").open() as f:
        ts = list(csv.DictReader(f))
    assert [int(r["t_s"]) for r in ts] == list(range(0, sc.duration_s, 900))
    assert kpis["sessions_total"] == len(sc.sessions)
    assert kpis == {**json.loads((tmp_path / "out" / "kpis.json").read_text()), "wall_s": kpis["wall_s"]}
