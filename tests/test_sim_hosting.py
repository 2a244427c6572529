"""`youxu sim hosting-capacity` on the old coal-to-electricity community: control hosts more EVs."""

from __future__ import annotations

import json

import pytest

from youxu.controller.cli import main
from youxu.sim.hosting import RESOLUTION, SERVED_MIN, Search, Step, fleet_size


def test_controlled_charging_hosts_a_larger_fleet_than_uncontrolled(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "hosting-capacity", "--preset", "old-community", "--strategies", "uncontrolled,llf",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --json: no progress output
    out = json.loads(captured.out)
    assert set(out) == {"preset", "results"}
    assert out["preset"] == "old-community"
    res = out["results"]
    assert list(res) == ["uncontrolled", "llf"]
    assert res["llf"]["max_evs"] > res["uncontrolled"]["max_evs"]
    assert res["llf"]["max_penetration"] > res["uncontrolled"]["max_penetration"]
    for r in res.values():
        assert set(r) == {"max_evs", "max_penetration", "steps"}
        steps = r["steps"]
        assert all(set(s) == {"penetration", "evs", "violations", "served_fraction", "peak_kw"} for s in steps)
        pens = [s["penetration"] for s in steps]
        assert pens == sorted(pens) and len(set(pens)) == len(pens)
        assert [s["evs"] for s in steps] == sorted(s["evs"] for s in steps)  # more penetration only adds cars
        hosted = [s["violations"] == 0 and s["served_fraction"] >= SERVED_MIN for s in steps]
        # every fleet up to the reported one is hosted, the next one tried is not
        k = pens.index(r["max_penetration"])
        assert all(hosted[:k + 1]) and steps[k]["evs"] == r["max_evs"]
        assert not hosted[k + 1]
        # refined down to one car, or to RESOLUTION cars per home
        assert (steps[k + 1]["evs"] - r["max_evs"] <= 1
                or steps[k + 1]["penetration"] - r["max_penetration"] <= RESOLUTION + 1e-9)
    # uncontrolled fails on overload, llf (which never overloads) on energy not served
    unc_fail = res["uncontrolled"]["steps"][[s["penetration"] for s in res["uncontrolled"]["steps"]].index(
        res["uncontrolled"]["max_penetration"]) + 1]
    assert unc_fail["violations"] > 0
    assert all(s["violations"] == 0 for s in res["llf"]["steps"])


def step(p: float, ok: bool) -> Step:
    return Step(penetration=p, evs=int(p * 100), violations=0 if ok else 3, served_fraction=1.0, peak_kw=100.0)


def test_search_brackets_the_first_failure_and_splits_it() -> None:
    s = Search("llf")
    assert s.next_points(2) == [0.2, 0.4]
    for p, ok in ((0.2, True), (0.4, True), (0.6, False), (0.8, True)):
        s.record(step(p, ok))
    # a pass above the first failure does not count: the bracket is (0.4, 0.6)
    assert (s.lo, s.hi) == (0.4, 0.6)
    assert s.next_points(1) == [0.5]
    assert s.next_points(3) == [0.45, 0.5, 0.55]
    s.record(step(0.5, True))
    assert s.result()["max_penetration"] == 0.5 and s.result()["max_evs"] == 50


def test_search_ends_at_one_car() -> None:
    s = Search("llf")
    s.record(step(0.2, True))
    s.record(step(0.21, False))
    assert s.done(lambda p: round(p * 100))
    assert not Search("llf").done(lambda p: round(p * 100))


def test_fleet_size_grows_with_penetration() -> None:
    sizes = [fleet_size("old-community", 1, p) for p in (0.0, 0.5, 1.0, 2.0)]
    assert sizes[0] == 0 and sizes == sorted(sizes)
    assert sizes[2] == pytest.approx(140, rel=0.15)  # about one car per home in 140 homes


def test_served_fraction_is_shown_rounded_down() -> None:
    def shown(x: float) -> float:
        return Step(penetration=1.0, evs=1, violations=0, served_fraction=x, peak_kw=1.0).to_json()["served_fraction"]

    assert shown(0.98996) == 0.9899  # not hosted, and not shown as 0.99
    assert shown(0.99) == 0.99
    assert shown(1.0) == 1.0


def test_offline_is_a_hosting_strategy_and_hosts_what_least_laxity_first_does() -> None:
    from youxu.sim.hosting import hosting_step

    name, off = hosting_step("old-community", 1, "offline", 1.0)
    _, llf = hosting_step("old-community", 1, "llf", 1.0)
    assert name == "offline" and off.evs == llf.evs > 0
    assert off.hosted and off.served_fraction >= llf.served_fraction - 1e-4
    assert off.peak_kw <= llf.peak_kw + 1e-6  # perfect foresight flattens what arrival order cannot
