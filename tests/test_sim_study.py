"""`youxu sim study`: a dozen tiny transformers x two strategies on a local Ray instance.

The whole study runs through the command line on real Ray (at most 2 CPUs, a small object
store): results in Parquet, a bad row reported while the other sites finish, and a rerun that
runs only what is missing or changed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from youxu.controller.cli import main
from youxu.sim.generate import generate_scenario
from youxu.sim.study import INSTALL_HINT, PLOTS
from youxu.sim.study_tasks import SITE_COLUMNS, read_sites

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

KPI_FIELDS = ("format", "strategy", "scenario", "energy_requested_kwh", "energy_delivered_kwh", "unmet_energy_kwh",
              "sessions_total", "sessions_fully_served", "peak_total_kw", "peak_base_kw", "valley_total_kw",
              "peak_to_valley_kw", "limit_violation_steps", "max_violation_kw", "import_cost_yuan",
              "export_revenue_yuan", "v2g_discharged_kwh", "dispatch_max_excess_kw", "dispatch_tracking_rmse_kw",
              "plan_ms_p50", "plan_ms_p99", "plan_fallbacks", "wall_s")
PRESETS = ("small", "old-community", "community-630")


def tiny_sites(n: int = 12) -> list[dict]:
    return [{"site_id": f"T{i:02d}", "transformer_kva": 20 + 2 * i, "households": 10 + i % 5, "piles": 2 + i % 3,
             "ev_share": round(0.5 + 0.04 * i, 2), "preset": PRESETS[i % 3]} for i in range(n)]


def write_sites(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(SITE_COLUMNS))
        w.writeheader()
        w.writerows(rows)


def study(sites: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    rc = main(["sim", "study", "--sites", str(sites), "--strategies", "uncontrolled,llf", "--out", str(out),
               "--days", "1", "--step-s", "900", "--json"])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out), captured.err


def by_task(path: Path) -> dict[tuple[str, str], dict]:
    return {(r["site_id"], r["strategy"]): r for r in pq.read_table(path).to_pylist()}


def test_study_reports_a_bad_row_keeps_the_others_and_resumes(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    sites = tiny_sites()
    bad = {"site_id": "BAD", "transformer_kva": -50, "households": 10, "piles": 3, "ev_share": 0.5, "preset": "small"}
    path, out = tmp_path / "sites.csv", tmp_path / "study"
    write_sites(path, [*sites[:5], bad, *sites[5:]])

    t0 = time.perf_counter()
    rc, res, err = study(path, out, capsys)
    first_s = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nfirst study: 13 sites x 2 strategies in {first_s:.1f} s")
    assert rc == 1  # one site failed, the others are written
    assert (res["tasks_total"], res["tasks_kept"], res["tasks_run"], res["tasks_failed"]) == (26, 0, 26, 2)
    assert {(f["site_id"], f["strategy"], f["line"]) for f in res["failures"]} == {("BAD", "llf", 7),
                                                                                  ("BAD", "uncontrolled", 7)}
    assert all("transformer_kva: must be positive (got -50)" in f["error"] for f in res["failures"])
    assert err.count("site BAD") == 2 and "transformer_kva" in err
    rows = by_task(out / "results.parquet")
    assert set(rows) == {(s["site_id"], st) for s in sites for st in ("uncontrolled", "llf")}
    for r in rows.values():
        assert set(KPI_FIELDS) | {"site_id", "max_evs"} <= set(r)
        assert r["format"] == "youxu.kpis/1" and r["step_s"] == 900
        assert r["sessions_total"] > 0 and r["energy_delivered_kwh"] > 0
        assert r["max_evs"] >= 0 and r["hosting_runs"] >= 1
    for s in sites:  # controlled charging hosts at least as many cars, with no more steps over a limit
        unc, llf = rows[(s["site_id"], "uncontrolled")], rows[(s["site_id"], "llf")]
        assert llf["max_evs"] >= unc["max_evs"]
        assert llf["limit_violation_steps"] <= unc["limit_violation_steps"]
        assert llf["peak_uncontrolled_kw"] == unc["peak_total_kw"] and unc["peak_reduction"] == 0.0
        assert llf["peak_reduction"] == pytest.approx(1 - llf["peak_total_kw"] / unc["peak_total_kw"])
    assert sum(r["max_evs"] for (_, st), r in rows.items() if st == "llf") > \
        sum(r["max_evs"] for (_, st), r in rows.items() if st == "uncontrolled")
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| `uncontrolled` | 12 |" in summary and "| `llf` | 12 |" in summary
    assert "BAD" in summary and "transformer_kva" in summary
    assert all((out / p).stat().st_size > 1000 for p in PLOTS)
    assert json.loads((out / "failures.json").read_text())[0]["site_id"] == "BAD"

    # the bad row fixed and one site changed: only their tasks run, every other row stays as it was
    bad["transformer_kva"] = 50
    changed = {**sites[2], "transformer_kva": 200}
    write_sites(path, [*sites[:2], changed, *sites[3:5], bad, *sites[5:]])
    t0 = time.perf_counter()
    rc, res, _ = study(path, out, capsys)
    with capsys.disabled():
        print(f"\nrerun: 4 of 26 tasks in {time.perf_counter() - t0:.1f} s")
    assert rc == 0
    assert (res["tasks_total"], res["tasks_kept"], res["tasks_run"], res["failures"]) == (26, 22, 4, [])
    again = by_task(out / "results.parquet")
    assert len(again) == 26
    redone = {("BAD", "uncontrolled"), ("BAD", "llf"), (changed["site_id"], "uncontrolled"),
              (changed["site_id"], "llf")}
    for key, r in again.items():
        if key in redone:
            assert key not in rows or r["finished_at"] > rows[key]["finished_at"]
        else:
            assert r == rows[key]  # kept, not recomputed
    assert again[(changed["site_id"], "llf")]["transformer_kva"] == 200
    assert "0 failed" in (out / "summary.md").read_text(encoding="utf-8")

    # nothing missing: a third run runs nothing
    rc, res, _ = study(path, out, capsys)
    assert (rc, res["tasks_kept"], res["tasks_run"]) == (0, 26, 0)


def test_a_stopped_study_keeps_its_rows_and_the_rerun_does_the_rest(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    sites, out = tmp_path / "sites.csv", tmp_path / "study"
    # enough tasks that some are still to run when the first rows reach the disk, on a fast machine too
    n_sites = 60
    total = 2 * n_sites
    write_sites(sites, tiny_sites(n_sites))
    proc = subprocess.Popen([sys.executable, "-m", "youxu.controller.cli", "sim", "study", "--sites", str(sites),
                             "--strategies", "uncontrolled,llf", "--out", str(out), "--step-s", "900", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "results.parquet").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # rows are on disk while the study goes on
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    kept = by_task(out / "results.parquet")
    assert 1 <= len(kept) < total
    rc, res, _ = study(sites, out, capsys)
    assert rc == 0 and (res["tasks_kept"], res["tasks_run"]) == (len(kept), total - len(kept))
    again = by_task(out / "results.parquet")
    assert len(again) == total and all(again[k] == r for k, r in kept.items())


# a Ray instance of its own in another process, as a cluster the study connects to; it stops when its
# stdin closes (and is killed if it does not)
CLUSTER = """
import logging, sys, ray
ctx = ray.init(num_cpus=1, include_dashboard=False, object_store_memory=100 * 1024 ** 2, logging_level=logging.WARNING)
print(ctx.address_info["gcs_address"], flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.fixture
def ray_cluster() -> Iterator[tuple[str, subprocess.Popen]]:
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip()
        assert address, "the Ray instance did not start"
        yield address, proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_study_runs_on_an_existing_ray_cluster(tmp_path: Path, ray_cluster: tuple[str, subprocess.Popen]) -> None:
    address, proc = ray_cluster
    write_sites(tmp_path / "sites.csv", tiny_sites(2))
    # the instance uses Ray's token authentication: a client connecting by address names the mode before
    # Ray starts (the token is ~/.ray/auth_token, the same here), as a user does on the command line
    done = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "sim", "study", "--sites",
                           str(tmp_path / "sites.csv"), "--strategies", "llf", "--out", str(tmp_path / "out"),
                           "--step-s", "900", "--ray-address", address, "--json"],
                          env={**os.environ, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads(done.stdout)
    assert (res["tasks_run"], res["failures"]) == (2, [])
    assert set(by_task(tmp_path / "out" / "results.parquet")) == {("T00", "llf"), ("T01", "llf")}
    assert proc.poll() is None  # the study disconnected; the cluster is not its to stop


def test_a_ray_address_with_nothing_there_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_sites(tmp_path / "sites.csv", tiny_sites(1))
    rc = main(["sim", "study", "--sites", str(tmp_path / "sites.csv"), "--strategies", "llf", "--out",
               str(tmp_path / "out"), "--ray-address", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.splitlines() == [f"youxu: error: --ray-address: no Ray cluster at 127.0.0.1:{port} "
                                            "(Connection refused)"]


def test_without_ray_the_command_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    write_sites(tmp_path / "sites.csv", tiny_sites(1))
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine where it is not installed
    rc = main(["sim", "study", "--sites", str(tmp_path / "sites.csv"), "--strategies", "llf",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.splitlines() == [f"youxu: error: {INSTALL_HINT}"]
    assert "pip install 'youxu[study]'" in err


def test_a_sites_file_without_a_column_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sites.csv").write_text("site_id,transformer_kva,households,piles,preset\nA,30,10,3,small\n")
    rc = main(["sim", "study", "--sites", str(tmp_path / "sites.csv"), "--strategies", "llf",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and "missing column ev_share" in err


def test_rows_that_do_not_parse_are_reported_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "sites.csv"
    path.write_text("site_id,transformer_kva,households,piles,ev_share,preset,seed\n"
                    "# a comment\n"
                    "A,30,10,3,0.5,small,\n"
                    "B,30,ten,3,0.5,small,4\n"
                    "C,30,10,3,0.5,small,4\n")
    rows, bad = read_sites(path)
    assert [r.site_id for r in rows] == ["A", "C"] and [r.line for r in rows] == [3, 5]
    assert rows[1].seed == 4 and rows[0].seed == read_sites(path)[0][0].seed  # a default seed, the same each time
    assert [(b.line, b.site_id) for b in bad] == [(4, "B")] and "households: not an integer" in bad[0].error


def test_a_coarser_step_averages_the_load_and_puts_visits_on_step_boundaries() -> None:
    fine = generate_scenario("small", seed=5, households=30, piles=8, penetration=0.6, dispatch=False)
    coarse = generate_scenario("small", seed=5, households=30, piles=8, penetration=0.6, dispatch=False, step_s=900)
    assert coarse.step_s == 900 and coarse.n_steps == 96 and coarse.duration_s == fine.duration_s
    np.testing.assert_allclose(coarse.base_phase_kw(), fine.base_phase_kw().reshape(96, 15, 3).mean(axis=1),
                               atol=0.0101)  # means of the minute values; both rounded to 10 W
    assert all(s.arrival_s % 900 == 0 and s.departure_s % 900 == 0 for s in coarse.sessions)
    by_id = {s.id: s for s in fine.sessions}
    assert len(coarse.sessions) >= 0.9 * len(fine.sessions)
    for s in coarse.sessions:  # the nearest boundary, the rest of the visit as it was
        f = by_id[s.id]
        assert abs(s.arrival_s - f.arrival_s) <= 450 and abs(s.departure_s - f.departure_s) <= 450
        assert s.energy_kwh == f.energy_kwh and s.pile == f.pile
    dropped = set(by_id) - {s.id for s in coarse.sessions}
    assert all(round(by_id[i].arrival_s / 900) == round(by_id[i].departure_s / 900) for i in dropped)
