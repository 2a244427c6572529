"""Invalid scenarios (contract section 2) through `youxu sim run`: exit code 2 and one line naming the
file and the field, never a traceback; the bounds themselves (a car leaving at the very end, two cars one
after the other on one pile, a flat tariff) are accepted."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import contract
from tests.test_cli_success import two_cars, youxu


def _overlap(sc: dict) -> None:
    sc["sessions"].append(dict(sc["sessions"][0], id="X", arrival_s=3000, departure_s=5000))


def _back_to_back(sc: dict) -> None:
    sc["sessions"][1].update(departure_s=1800)
    sc["sessions"].append(dict(sc["sessions"][1], id="NEXT", arrival_s=1800, departure_s=7200))


INVALID: list[tuple[str, Callable[[dict], None], str]] = [
    ("overlapping sessions", _overlap, "overlap on pile P1"),
    ("arrival before the start", lambda sc: sc["sessions"][0].update(arrival_s=-60), "sessions[0].arrival_s"),
    ("departure after the end", lambda sc: sc["sessions"][0].update(departure_s=7260), "sessions[0].departure_s"),
    ("departure before arrival", lambda sc: sc["sessions"][0].update(arrival_s=4000, departure_s=3000),
     "departure_s"),
    ("base load too short", lambda sc: sc["base_load"].update(kw=[100.0] * 7), "base_load"),
    ("import prices too short", lambda sc: sc["tariff"].update(resolution_s=900, import_yuan_per_kwh=[0.5] * 3),
     "tariff.import_yuan_per_kwh"),
    ("export prices too short", lambda sc: sc["tariff"].update(resolution_s=900, export_yuan_per_kwh=[0.3] * 3),
     "tariff.export_yuan_per_kwh"),
    ("unknown pile", lambda sc: sc["sessions"][0].update(pile="P9"), "sessions[0].pile"),
    ("wrong format", lambda sc: sc.update(format="youxu.scenario/2"), "format"),
]


@pytest.mark.parametrize(("what", "change", "needle"), INVALID, ids=[w for w, _, _ in INVALID])
def test_an_invalid_scenario_is_one_line_and_exit_2(tmp_path: Path, what: str, change: Callable[[dict], None],
                                                    needle: str) -> None:
    sc = json.loads(two_cars(tmp_path / "good.json").read_text())
    bad = copy.deepcopy(sc)
    change(bad)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    r = youxu("sim", "run", "--scenario", str(path), "--strategy", "llf", "--out", str(tmp_path / "out"))
    assert r.returncode == contract.USAGE_EXIT_CODE, (what, r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(path) in lines[0] and needle in lines[0], lines[0][:300]
    assert not (tmp_path / "out" / "kpis.json").exists()


@pytest.mark.parametrize(("what", "change"), [
    ("sessions back to back on one pile", _back_to_back),
    ("a flat tariff of one value", lambda sc: sc["tariff"].update(resolution_s=900, import_yuan_per_kwh=[0.5],
                                                                  export_yuan_per_kwh=[0.3])),
    ("arrival at the start and departure at the end", lambda sc: sc["sessions"][0].update(arrival_s=0,
                                                                                         departure_s=7200)),
])
def test_the_bounds_are_valid(tmp_path: Path, what: str, change: Callable[[dict], None]) -> None:
    sc = json.loads(two_cars(tmp_path / "good.json").read_text())
    change(sc)
    path = tmp_path / "edge.json"
    path.write_text(json.dumps(sc))
    r = youxu("sim", "run", "--scenario", str(path), "--strategy", "llf", "--out", str(tmp_path / "out"), "--json")
    assert r.returncode == 0, (what, r.stderr)
    assert json.loads(r.stdout)["sessions_total"] == len(sc["sessions"])
