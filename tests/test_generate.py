"""`generate_scenario`: every preset validates, determinism, multi-day, tightness, dispatch, hosting capacity."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from youxu.controller.grid.dispatch_schema import DispatchCommand, validate_command
from youxu.sim.ev import draw_fleet
from youxu.sim.generate import generate_scenario, preset_names, scenario_at_penetration
from youxu.sim.grid_events import GridEventParams
from youxu.sim.presets import PRESETS
from youxu.sim.scenario import PHASES, Scenario, parse_scenario
from youxu.sim.tou import LOCAL_TZ, LocalAxis, beijing_tou


def _roundtrip(sc: Scenario) -> Scenario:
    return parse_scenario(json.loads(sc.to_json()))


def _pile_kw(sc: Scenario) -> dict[str, tuple[float, np.ndarray]]:
    out = {}
    for p in sc.piles:
        share = np.full(3, 1 / 3) if p.phases == 3 else np.eye(3)[PHASES.index(p.phase)]
        out[p.id] = (p.max_kw, share)
    return out


def uncontrolled_phase_kw(sc: Scenario) -> np.ndarray:
    """Every car at full power from arrival until its energy is in: (n_steps, 3)."""
    piles = _pile_kw(sc)
    load = np.zeros((sc.n_steps, 3))
    for s in sc.sessions:
        max_kw, share = piles[s.pile]
        kw = min(max_kw, s.max_kw or np.inf)
        a, d = s.arrival_s // sc.step_s, s.departure_s // sc.step_s
        steps = np.full(d - a, kw)
        energy = np.cumsum(steps) * sc.step_s / 3600
        steps[energy > s.energy_kwh] = 0.0
        k = int(np.searchsorted(energy, s.energy_kwh))
        if k < steps.size:
            steps[k] = (s.energy_kwh - (energy[k - 1] if k else 0.0)) * 3600 / sc.step_s
        load[a:d] += steps[:, None] * share[None, :]
    return load


def edf_unmet_kwh(sc: Scenario) -> tuple[float, float]:
    """Earliest-deadline-first under the transformer and phase limits: (unmet, deliverable) kWh."""
    piles = _pile_kw(sc)
    base = sc.base_phase_kw()
    plim = sc.phase_limits_kw()
    ses = sc.sessions
    arr = np.array([s.arrival_s // sc.step_s for s in ses])
    dep = np.array([s.departure_s // sc.step_s for s in ses])
    kw = np.array([min(piles[s.pile][0], s.max_kw or np.inf) for s in ses])
    share = np.array([piles[s.pile][1] for s in ses])
    rem = np.minimum([s.energy_kwh for s in ses], kw * (dep - arr) * sc.step_s / 3600)
    need = rem.sum()
    order = np.argsort(dep, kind="stable")
    h = sc.step_s / 3600
    for t in range(sc.n_steps):
        head = sc.site.limit_kw - base[t].sum()
        phead = plim - base[t]
        for i in order[(arr[order] <= t) & (dep[order] > t)]:
            if rem[i] <= 1e-9:
                continue
            on = share[i] > 0
            p = min(kw[i], rem[i] / h, head, float(np.min(phead[on] / share[i][on])))
            if p > 0:
                rem[i] -= p * h
                head -= p
                phead -= p * share[i]
    return float(rem.sum()), float(need)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_validates_and_round_trips(name: str) -> None:
    sc = generate_scenario(name, seed=1)
    again = _roundtrip(sc)
    assert again.to_json() == sc.to_json()
    assert _roundtrip(again).to_json() == again.to_json()
    assert sc.step_s == 60 and sc.duration_s == 86400
    assert sc.start.utcoffset() == timedelta(hours=8) and (sc.start.hour, sc.start.minute) == (12, 0)
    assert sc.site.limit_kw == pytest.approx(0.9 * sc.site.transformer_kva, abs=0.1)
    for ph in PHASES:
        assert sc.site.phase_limit_kw[ph] == pytest.approx(sc.site.limit_kw / 3 * 1.05, abs=0.1)
    assert 0 < sc.site.export_limit_kw < sc.site.limit_kw
    assert len(sc.base_load.phases["L1"]) * sc.base_load.resolution_s == sc.duration_s
    assert len(sc.tariff.import_yuan_per_kwh) * sc.tariff.resolution_s == sc.duration_s
    assert sc.sessions and sc.piles
    for s in sc.sessions:
        assert s.energy_kwh > 0 and s.soc_arrival + s.energy_kwh / s.battery_kwh <= 1.0
    base = sc.base_phase_kw()
    assert base.sum(axis=1).max() < 0.92 * sc.site.limit_kw  # households alone always fit
    assert (base.max(axis=0) < 0.98 * sc.phase_limits_kw()).all()


def test_preset_sizes() -> None:
    small = generate_scenario("small")
    assert len(small.piles) == 20 and small.site.transformer_kva == 400
    assert "100hh" in small.name
    c630 = generate_scenario("community-630")
    assert 60 <= len(c630.piles) <= 100 and c630.site.transformer_kva == 630
    large = generate_scenario("large")
    assert len(large.piles) == 400 and large.site.transformer_kva == 1000 and "1500hh" in large.name
    old = generate_scenario("old-community")
    assert old.site.transformer_kva == 315 and old.start.month == 1
    assert generate_scenario("community-630-winter").start.month == 1
    assert generate_scenario("community-630", season="winter").to_json() == \
        generate_scenario("community-630-winter").to_json()
    with pytest.raises(ValueError, match="unknown preset"):
        generate_scenario("nowhere")
    with pytest.raises(ValueError, match="unknown season"):
        generate_scenario("small", season="monsoon")


def test_same_seed_same_bytes_different_seed_different() -> None:
    a = generate_scenario("community-630", seed=3).to_json()
    b = generate_scenario("community-630", seed=3).to_json()
    c = generate_scenario("community-630", seed=4).to_json()
    assert a == b
    assert a != c


def test_overrides() -> None:
    sc = generate_scenario("small", seed=2, piles=7, households=40, penetration=0.5, season="winter")
    assert len(sc.piles) == 7 and "40hh" in sc.name and sc.start.month == 1
    scaled = generate_scenario("community-630", households=300)
    assert len(scaled.piles) == 50  # piles follow the homes
    none = generate_scenario("small", penetration=0.0)
    assert none.sessions == []
    with pytest.raises(ValueError):
        generate_scenario("small", days=0)


def test_multi_day() -> None:
    sc = generate_scenario("small", seed=5, days=3)
    sc = _roundtrip(sc)
    assert sc.duration_s == 3 * 86400 and sc.n_steps == 3 * 1440
    assert len(sc.base_kw()) == sc.n_steps
    days = {s.arrival_s // 86400 for s in sc.sessions}
    assert days == {0, 1, 2}
    assert max(s.departure_s for s in sc.sessions) <= sc.duration_s
    # the daily shape repeats: every local evening is above every night
    base = sc.base_kw()
    axis = LocalAxis(sc.start, sc.duration_s)
    h, d = axis.local_hour(), axis.day_index()
    for day in (0, 1, 2):
        evening = base[(d == day) & (h >= 19) & (h < 22)].mean()
        night = base[(d == day + 1) & (h >= 2) & (h < 6)].mean() if day < 2 else base[(d == 0) & (h >= 19)].mean()
        assert evening > night or day == 2


@pytest.mark.parametrize("name", ["community-630", "old-community"])
def test_transformer_is_tight_uncontrolled_overloads_ordered_serves(name: str) -> None:
    sc = generate_scenario(name, seed=1)
    base = sc.base_phase_kw()
    total = base + uncontrolled_phase_kw(sc)
    overload_total = total.sum(axis=1).max() / sc.site.limit_kw
    overload_phase = (total.max(axis=0) / sc.phase_limits_kw()).max()
    assert overload_total > 1.05 and overload_phase > 1.1, (overload_total, overload_phase)
    unmet, need = edf_unmet_kwh(sc)
    assert unmet <= 0.01 * need, (unmet, need)


def test_small_is_comfortable() -> None:
    sc = generate_scenario("small", seed=1)
    total = sc.base_kw() + uncontrolled_phase_kw(sc).sum(axis=1)
    assert total.max() < 0.7 * sc.site.limit_kw


def test_tariff_is_beijing_time_of_use() -> None:
    sc = generate_scenario("small", seed=1)
    price = sc.import_price()
    axis = LocalAxis(sc.start, sc.duration_s)
    h = axis.local_hour()
    tou = beijing_tou()
    assert np.all(price[(h >= 10) & (h < 15)] == tou.import_yuan_per_kwh["peak"])
    assert np.all(price[(h >= 18) & (h < 21)] == tou.import_yuan_per_kwh["peak"])
    assert np.all(price[(h >= 23) | (h < 7)] == tou.import_yuan_per_kwh["valley"])
    assert np.all(price[(h >= 15) & (h < 18)] == tou.import_yuan_per_kwh["flat"])
    assert np.all(sc.export_price() <= price)
    critical = beijing_tou(critical_peak=True, peak=1.0)
    imp, _ = critical.prices(axis)
    assert imp[(h >= 11) & (h < 13)].min() == critical.import_yuan_per_kwh["critical"]
    assert imp[(h >= 19) & (h < 20)].max() == 1.0


def test_dispatch_commands_follow_the_contract() -> None:
    sc = generate_scenario("community-630", seed=1, days=2)
    entries = sc.dispatch
    types = [(e.command["type"], e.command["scope"]) for e in entries]
    assert ("limit", "site") in types and ("setpoint", "ev") in types
    assert any(p.get("setpoint_kw", 0) < 0 for e in entries for p in e.command["periods"])  # V2G request
    seqs = [e.command["seq"] for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [e.at_s for e in entries] == sorted(e.at_s for e in entries)
    ids = [e.command["command_id"] for e in entries]
    assert len(set(ids)) == len(ids) and all(uuid.UUID(i).version == 4 for i in ids)
    base = sc.base_kw()
    for e in entries:
        cmd = validate_command(json.dumps(e.command), site_id="site", strict=True)
        assert isinstance(cmd, DispatchCommand), cmd
        issued = datetime.fromisoformat(e.command["issued_at"])
        assert issued == sc.start + timedelta(seconds=e.at_s)
        assert issued.utcoffset() == timedelta(hours=8)
        if cmd.type == "limit":
            t0 = int(cmd.start_s - sc.start.timestamp())
            t1 = int(cmd.end_s - sc.start.timestamp())
            assert datetime.fromisoformat(e.command["valid_from"]).hour == 19
            assert base[t0 // 60: t1 // 60].max() < min(p.import_max_kw for p in cmd.periods)
    again = generate_scenario("community-630", seed=1, days=2)
    assert [e.command["command_id"] for e in again.dispatch] == ids
    other = generate_scenario("community-630", seed=2, days=2)
    assert [e.command["command_id"] for e in other.dispatch] != ids


def test_dispatch_days_and_tariff_are_configurable() -> None:
    events = GridEventParams(peak_days=(0, 1, 2), valley_days=(), v2g_days=())
    sc = generate_scenario("small", days=3, events=events, tariff=beijing_tou(valley=0.1))
    starts = [datetime.fromisoformat(e.command["valid_from"]) for e in sc.dispatch]
    assert [s.day for s in starts] == [1, 2, 3] and all(s.hour == 19 for s in starts)
    assert min(sc.tariff.import_yuan_per_kwh) == 0.1
    assert generate_scenario("small", dispatch=False).dispatch == []


def test_hosting_capacity_keeps_everything_but_the_fleet() -> None:
    low = scenario_at_penetration("community-630", 0.1, seed=1)
    high = scenario_at_penetration("community-630", 0.4, seed=1)
    assert low.base_load == high.base_load and low.tariff == high.tariff and low.site == high.site
    assert len(high.piles) > 2 * len(low.piles)
    assert sum(s.energy_kwh for s in high.sessions) > 2.5 * sum(s.energy_kwh for s in low.sessions)
    assert low.dispatch == [] and high.dispatch == []
    # each car behaves the same whatever the fleet: the sessions on the low fleet's private piles
    # (numbered first, earliest adopters first) reappear unchanged; shared piles get busier
    fleet = draw_fleet(600, PRESETS["community-630"].ev, np.random.default_rng([1, 2]))
    n_private = int(fleet.private_spot[fleet.owned(0.1)].sum())
    private_ids = {p.id for p in low.piles[:n_private]}
    key = lambda s: (s.pile, s.arrival_s, s.departure_s, s.energy_kwh, s.battery_kwh, s.v2g)  # noqa: E731
    low_private = {key(s) for s in low.sessions if s.pile in private_ids}
    assert len(low_private) > 10
    assert low_private <= {key(s) for s in high.sessions}


def test_measured_base_load_replaces_the_model(tmp_path: Path) -> None:
    csv = tmp_path / "load.csv"
    rows = ["timestamp,L1,L2,L3"]
    t0 = datetime(2025, 7, 1, 0, 0)
    for i in range(96):
        rows.append(f"{(t0 + timedelta(minutes=15 * i)).isoformat()},{50 + i},{60 + i},{70 + i}")
    csv.write_text("\n".join(rows), encoding="utf-8")
    sc = generate_scenario("small", base_load_csv=csv, base_load_scale=2.0)
    assert sc.base_load_history is None  # a measured day has no modelled past
    ph = sc.base_phase_kw()
    assert ph[0].tolist() == [2 * (50 + 48), 2 * (60 + 48), 2 * (70 + 48)]  # 12:00 is the 49th quarter hour
    assert ph[-1].tolist() == [2 * (50 + 47), 2 * (60 + 47), 2 * (70 + 47)]


def test_history_is_the_same_homes_on_the_days_before_and_changes_nothing_else() -> None:
    sc = generate_scenario("community-630", history_days=3)
    bare = generate_scenario("community-630", history_days=0)
    assert bare.base_load_history is None
    raw, raw_bare = json.loads(sc.to_json()), json.loads(bare.to_json())
    raw.pop("base_load_history")
    assert raw == raw_bare  # the scenario's own day does not change with the history asked for
    t_s, hist = _roundtrip(sc).history_phase_kw()
    assert hist.shape == (3 * 96, 3)
    assert t_s[-1] == -450.0 and t_s[0] == -3 * 86400 + 450.0  # quarter-hour means ending at the start
    # the same community: a day of history looks like the scenario's day (same level, evening above the night)
    day = sc.base_kw()
    start_local = sc.start.astimezone(LOCAL_TZ)
    hour = (start_local.hour + (t_s / 3600.0)) % 24
    total = hist.sum(axis=1)
    assert 0.7 < total[-96:].mean() / day.mean() < 1.3
    assert total[(hour >= 19) & (hour < 22)].mean() > 1.3 * total[(hour >= 2) & (hour < 5)].mean()
    # the day before, noon to noon, follows the same daily shape without being a copy of it
    quarter = day.reshape(-1, 15).mean(axis=1)
    assert np.corrcoef(total[-96:], quarter)[0, 1] > 0.8
    assert not np.allclose(total[-96:], quarter, rtol=0.02)
