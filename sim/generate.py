"""`youxu sim generate`: a `youxu.scenario/1` from the household-load and EV model.

The pieces come from their own seeded streams (`numpy.random.default_rng([seed, stream])`),
so the homes and their load stay the same when only the EV penetration changes, and the same
arguments always give byte-identical JSON.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from youxu.sim.ev import Community, Fleet, SessionModel, build_piles, draw_fleet
from youxu.sim.grid_events import GridEventParams, dispatch_entries
from youxu.sim.household import HouseholdModel
from youxu.sim.measured_load import load_measured_csv, measured_phase_kw
from youxu.sim.presets import EXPORT_SHARE, PHASE_LIMIT_FACTOR, POWER_FACTOR, Preset, preset_names, resolve_preset
from youxu.sim.scenario import PHASES, SCENARIO_FORMAT, Scenario
from youxu.sim.tou import LocalAxis, TouTariff, beijing_tou, tariff_block

__all__ = ["generate_scenario", "preset_names", "scenario_at_penetration"]

STREAM_HOMES, STREAM_FLEET, STREAM_PILES, STREAM_SESSIONS, STREAM_DISPATCH = 1, 2, 3, 4, 5
FOLLOW_FLEET = -1  # pile count: one per private car plus shared piles for the others
HISTORY_DAYS = 7  # the meter history written before `start` (what a running daemon has in its database)
HISTORY_RESOLUTION_S = 900
STEP_S = 60  # the models' own step; a coarser simulation step averages over it
AMBIENT_RESOLUTION_S = 900


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def generate_scenario(
    preset: str,
    seed: int = 1,
    piles: int | None = None,
    households: int | None = None,
    days: int = 1,
    season: str | None = None,
    penetration: float | None = None,
    *,
    base_load_csv: str | Path | None = None,
    base_load_scale: float = 1.0,
    dispatch: bool = True,
    events: GridEventParams | None = None,
    tariff: TouTariff | None = None,
    history_days: int = HISTORY_DAYS,
    transformer_kva: float | None = None,
    step_s: int = STEP_S,
) -> Scenario:
    """A scenario for the named preset (see `preset_names()`), starting at local noon.

    `piles`/`households`/`penetration` override the preset (with `households` alone, the pile
    count scales with it); `season` overrides the preset's (`summer`, `winter`, `shoulder`).
    `base_load_csv` replaces the modelled household load by a measured one (sim.measured_load),
    multiplied by `base_load_scale`. `events` replaces the preset's dispatch events (days, times,
    values), `tariff` the default Beijing time-of-use tariff; `dispatch=False` leaves commands out.
    `history_days` of the same homes' load before `start` go into `base_load_history` (15-minute
    means, the meter history a running controller forecasts from; 0 for none, and none with a CSV).
    `transformer_kva` replaces the preset's rating (limits follow it); `step_s` (a multiple of a
    minute that divides a day) coarsens the simulation step, see `coarsen`.
    """
    p, chosen = resolve_preset(preset, season)
    p = _with_rating(p, transformer_kva)
    _check_step(step_s)
    if days < 1:
        raise ValueError(f"days must be at least 1 (got {days})")
    if history_days < 0:
        raise ValueError(f"history_days must be 0 or more (got {history_days})")
    n_homes = households if households is not None else p.households
    if n_homes < 1:
        raise ValueError(f"households must be at least 1 (got {n_homes})")
    if piles is None:
        piles = max(1, round(p.piles * n_homes / p.households))
    elif piles < 1 and piles != FOLLOW_FLEET:
        raise ValueError(f"piles must be at least 1 (got {piles})")
    pen = p.penetration if penetration is None else float(penetration)
    if events is not None:
        p = replace(p, events=events)
    return _build(p, chosen, seed, n_homes, piles, days, pen, base_load_csv, base_load_scale, dispatch,
                  tariff or beijing_tou(), history_days, step_s)


def scenario_at_penetration(
    preset: str, penetration: float, seed: int = 1, days: int = 1, season: str | None = None,
    households: int | None = None, dispatch: bool = False, history_days: int = HISTORY_DAYS,
    transformer_kva: float | None = None, step_s: int = STEP_S,
) -> Scenario:
    """The preset's community with `penetration` cars per home, everything else the same.

    The homes, their load, each car's behaviour and the tariff do not change with the
    penetration; the piles follow the fleet (one per car with a parking space, one shared
    pile per 2.5 other cars). For hosting-capacity studies; dispatch commands are off by default.
    """
    p, chosen = resolve_preset(preset, season)
    p = _with_rating(p, transformer_kva)
    _check_step(step_s)
    n_homes = households if households is not None else p.households
    if n_homes < 1:
        raise ValueError(f"households must be at least 1 (got {n_homes})")
    return _build(p, chosen, seed, n_homes, FOLLOW_FLEET, days, float(penetration), None, 1.0, dispatch,
                  beijing_tou(), history_days, step_s)


def _with_rating(p: Preset, transformer_kva: float | None) -> Preset:
    if transformer_kva is None:
        return p
    if not transformer_kva > 0:
        raise ValueError(f"transformer_kva must be positive (got {transformer_kva})")
    return replace(p, transformer_kva=float(transformer_kva))


def _check_step(step_s: int) -> None:
    if step_s < STEP_S or step_s % STEP_S or 86400 % step_s:
        raise ValueError(f"step_s must be a multiple of {STEP_S} s that divides a day (got {step_s})")


def _build(p: Preset, season: str, seed: int, n_homes: int, n_piles: int, days: int, penetration: float,
           base_load_csv: str | Path | None, base_load_scale: float, with_dispatch: bool,
           tariff: TouTariff, history_days: int = 0, step_s: int = STEP_S) -> Scenario:
    start = p.start(season)
    axis = LocalAxis(start, days * 86400, STEP_S)
    history = None
    ambient = None
    if base_load_csv is not None:
        phase_kw = measured_phase_kw(load_measured_csv(base_load_csv), axis, scale=base_load_scale)
    else:
        model = HouseholdModel(p.household_params(n_homes, season), _rng(seed, STREAM_HOMES))
        load = model.simulate(axis)
        phase_kw = load.phase_kw
        ambient = _ambient_block(load.temperature_c)  # the weather the homes' heating and cooling answered
        if history_days:  # the same homes on the days before, drawn after the scenario's days (those stay the same)
            history = _history_block(model, start, history_days)
    fleet: Fleet = draw_fleet(n_homes, p.ev, _rng(seed, STREAM_FLEET))
    cars = fleet.owned(penetration)
    community: Community = build_piles(fleet, cars, None if n_piles == FOLLOW_FLEET else n_piles, p.ev,
                                       _rng(seed, STREAM_PILES))
    sessions = SessionModel(fleet, community, p.ev, _rng(seed, STREAM_SESSIONS)).simulate(axis, season)

    kva = p.transformer_kva
    limit_kw = round(POWER_FACTOR * kva, 1)
    phase_limit = round(limit_kw / 3 * PHASE_LIMIT_FACTOR, 1)
    pile_dicts = [pile.to_scenario() for pile in community.piles]
    width = max(4, len(str(len(sessions))))
    session_dicts = [
        s.to_scenario(f"S{i + 1:0{width}d}", community.piles[s.pile].id) for i, s in enumerate(sessions)
    ]
    dispatch = []
    if with_dispatch:
        dispatch = dispatch_entries(
            axis, phase_kw.sum(axis=1), limit_kw,
            pile_max_kw=sum(d["max_kw"] for d in pile_dicts),
            v2g_discharge_kw=sum(d["max_discharge_kw"] for d in pile_dicts),
            params=p.events, rng=_rng(seed, STREAM_DISPATCH),
        )
    raw = {
        "format": SCENARIO_FORMAT,
        "name": f"{p.name}-{season}-{n_homes}hh-{len(pile_dicts)}piles-seed{seed}",
        "start": start.isoformat(),
        "timezone": "Asia/Shanghai",
        "step_s": STEP_S,
        "duration_s": axis.duration_s,
        "site": {
            "transformer_kva": kva,
            "limit_kw": limit_kw,
            "export_limit_kw": round(EXPORT_SHARE * kva, 1),
            "phase_limit_kw": {"L1": phase_limit, "L2": phase_limit, "L3": phase_limit},
        },
        "base_load": _load_block(STEP_S, phase_kw),
        "tariff": tariff_block(tariff, axis, 900),
        "piles": pile_dicts,
        "sessions": session_dicts,
        "dispatch": dispatch,
    }
    if history is not None:
        raw["base_load_history"] = history
    if ambient is not None:
        raw["ambient_c"] = ambient
    if step_s != STEP_S:
        raw = coarsen(raw, phase_kw, step_s)
    return Scenario.model_validate(raw)


def _ambient_block(temperature_c: np.ndarray) -> dict:
    """`ambient_c`: the outdoor temperature of the household model (Beijing climate normals, see
    PARAMETERS.md), as 15-minute means."""
    k = AMBIENT_RESOLUTION_S // 60
    n = temperature_c.size // k * k
    means = temperature_c[:n].reshape(-1, k).mean(axis=1)
    return {"resolution_s": AMBIENT_RESOLUTION_S, "c": [round(float(c), 2) for c in means]}


def coarsen(raw: dict, phase_kw: np.ndarray, step_s: int) -> dict:
    """The same community simulated at `step_s`: the household load as its means over each step,
    and every arrival and departure moved to the nearest step boundary (a visit shorter than half
    a step on either side of a boundary is dropped; rounding keeps the visits on a pile apart).
    Dispatch command times are left as they are (the engine reads them at each step)."""
    k = step_s // STEP_S
    sessions = []
    for s in raw["sessions"]:
        arr, dep = (round(s[key] / step_s) * step_s for key in ("arrival_s", "departure_s"))
        dep = min(dep, raw["duration_s"])
        if dep > arr:
            sessions.append({**s, "arrival_s": arr, "departure_s": dep})
    return {**raw, "step_s": step_s, "base_load": _load_block(step_s, phase_kw.reshape(-1, k, 3).mean(axis=1)),
            "sessions": sessions}


def _history_block(model: HouseholdModel, start: datetime, days: int) -> dict:
    """`base_load_history`: the homes' load over `days` before `start`, as 15-minute means per phase."""
    axis = LocalAxis(start - timedelta(days=days), days * 86400, 60)
    per_min = model.simulate(axis).phase_kw
    k = HISTORY_RESOLUTION_S // 60
    return _load_block(HISTORY_RESOLUTION_S, per_min.reshape(-1, k, 3).mean(axis=1))


def _load_block(resolution_s: int, phase_kw: np.ndarray) -> dict:
    """A `base_load`-shaped block: (n, 3) kW per phase at `resolution_s`, to the watt."""
    return {"resolution_s": resolution_s,
            "phases": {ph: [round(float(x), 2) for x in phase_kw[:, i]] for i, ph in enumerate(PHASES)}}
