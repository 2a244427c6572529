"""Scenarios the generator did not make: old communities where ordered charging matters most.

`old_community_day` is a 315 kVA transformer (import limit 299 kW) at a winter or summer day,
household load peaking at 75 % of the rating with a coal-to-electric heating night, phases
unbalanced, optionally each phase limited to a third of the transformer limit; every pile is
used once a day (one session each: arrivals, stays and energies shaped like ElaadNL's public
distributions), 30 % 3.3 kW piles, the rest 7 kW, all with a 6 A minimum; with or without a
week of meter history. Deterministic in `seed`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from youxu.sim.scenario import Scenario
from youxu.sim.tou import LocalAxis, beijing_tou, tariff_block

CST = timezone(timedelta(hours=8))
KVA = 315.0
LIMIT_KW = 299.0
PEAK_SHARE = 0.75  # household peak, of the rating
PHASE_SHARES = (0.36, 0.33, 0.31)
START = {"winter": datetime(2026, 1, 14, 12, 0, tzinfo=CST), "summer": datetime(2026, 7, 1, 12, 0, tzinfo=CST)}
MIN_KW = {3.3: 1.38, 7.0: 1.38, 11.0: 4.14}  # 6 A on one phase, or on three


def _household_shape(hour: np.ndarray, season: str) -> np.ndarray:
    """Share of the day's peak at local hours (winter: electric heating through the night)."""
    evening = np.exp(-0.5 * ((hour - 19.5) / 1.8) ** 2)
    morning = 0.45 * np.exp(-0.5 * ((hour - 7.5) / 1.0) ** 2)
    midday = 0.2 * np.exp(-0.5 * ((hour - 12.5) / 1.5) ** 2)
    night = np.where((hour >= 23) | (hour < 7), 1.0, 0.0)
    if season == "winter":
        base = 0.40 + 0.22 * night  # heat storage in the valley tariff
    else:
        base = 0.35 + 0.15 * np.exp(-0.5 * ((hour - 15.0) / 2.5) ** 2)  # air conditioning in the afternoon
    shape = base + 0.60 * evening + morning + midday
    return shape / shape.max()


def _phase_load_kw(axis: LocalAxis, season: str, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) kW per phase on the axis."""
    hour = axis.local_hour()
    # day-to-day: the evening a little earlier or later, the level a few per cent off, minute-scale noise
    shift = rng.normal(0.0, 0.4)
    total = np.interp(hour + shift, np.arange(-24, 48, 0.25),
                      np.tile(PEAK_SHARE * KVA * 0.95 * _household_shape(np.arange(0, 24, 0.25), season), 3))
    total = total * rng.normal(1.0, 0.04)
    noise = np.cumsum(rng.normal(0.0, 0.6, total.size))
    noise -= np.convolve(noise, np.ones(31) / 31, mode="same")
    total = np.clip(total + 3.0 * noise, 0.3 * total, None)
    shares = np.asarray(PHASE_SHARES) * rng.normal(1.0, 0.01, 3)
    return total[:, None] * (shares / shares.sum())[None, :]


def _sessions(n: int, rng: np.random.Generator, duration_s: int) -> list[dict]:
    """Arrival (s from noon), departure and energy of one session per pile."""
    out = []
    kind = rng.choice(3, size=n, p=[0.62, 0.23, 0.15])  # after work, late evening, daytime
    for k in kind:
        if k == 0:
            arr_h = rng.normal(18.3, 1.3)
            dep_h = rng.normal(31.5, 0.8)  # 07:30 next morning
        elif k == 1:
            arr_h = rng.uniform(21.5, 24.0)
            dep_h = arr_h + rng.uniform(5.0, 13.0)
        else:
            arr_h = rng.uniform(13.0, 17.0)
            dep_h = arr_h + rng.uniform(2.0, 6.0)
        arr = float(np.clip((arr_h - 12.0) * 3600.0, 0.0, duration_s - 3 * 3600))
        dep = float(np.clip((dep_h - 12.0) * 3600.0, arr + 1800.0, duration_s))
        energy = float(np.clip(rng.lognormal(np.log(10.0), 0.55), 2.0, 45.0))
        out.append({"arrival_s": int(arr) // 60 * 60, "departure_s": int(dep) // 60 * 60, "energy_kwh": energy})
    return out


def old_community_day(n_evs: int, seed: int = 1, season: str = "winter", tight_phases: bool = True,
                      history: bool = False, step_s: int = 900, three_phase_share: float = 0.0,
                      v2g_share: float = 0.0) -> Scenario:
    rng = np.random.default_rng([seed, 12])
    start = START[season]
    axis = LocalAxis(start, 86400, 60)
    phase_kw = _phase_load_kw(axis, season, rng)
    per = max(step_s // 60, 1)
    piles, sessions = [], []
    sess = _sessions(n_evs, np.random.default_rng([seed, 13]), 86400)
    prng = np.random.default_rng([seed, 14])
    for i in range(n_evs):
        three = prng.random() < three_phase_share
        kw = 11.0 if three else (3.3 if prng.random() < 0.3 else 7.0)
        v2g = bool(prng.random() < v2g_share) and not three
        piles.append({"id": f"P{i + 1:03d}", "max_kw": kw, "min_kw": MIN_KW[kw], "phases": 3 if three else 1,
                      "phase": None if three else ("L1", "L2", "L3")[int(prng.integers(3))], "v2g": v2g,
                      "max_discharge_kw": kw if v2g else 0.0})
        s = sess[i]
        battery = float(prng.choice([40.0, 60.0, 75.0]))
        room = battery * 0.85
        sessions.append({"id": f"S{i + 1:04d}", "pile": piles[-1]["id"], "arrival_s": s["arrival_s"],
                         "departure_s": s["departure_s"], "energy_kwh": round(min(s["energy_kwh"], room), 2),
                         "battery_kwh": battery, "soc_arrival": 0.1, "v2g": v2g, "min_soc": 0.1 if not v2g else 0.3,
                         "priority": "normal"})
    limit_phase = round(LIMIT_KW / 3.0, 1)
    coarse = phase_kw.reshape(-1, per, 3).mean(axis=1) if per > 1 else phase_kw
    raw = {
        "format": "youxu.scenario/1",
        "name": f"old-community-{season}-{n_evs}ev-seed{seed}{'-tight' if tight_phases else ''}"
                f"{'-history' if history else ''}",
        "start": start.isoformat(), "timezone": "Asia/Shanghai", "step_s": step_s, "duration_s": 86400,
        "site": {"transformer_kva": KVA, "limit_kw": LIMIT_KW, "export_limit_kw": 30.0,
                 "phase_limit_kw": {ph: limit_phase for ph in ("L1", "L2", "L3")} if tight_phases else None},
        "base_load": {"resolution_s": step_s,
                      "phases": {ph: [round(float(x), 2) for x in coarse[:, i]] for i, ph in enumerate(("L1", "L2",
                                                                                                          "L3"))}},
        "tariff": tariff_block(beijing_tou(), LocalAxis(start, 86400, 60), 900),
        "piles": piles, "sessions": sessions, "dispatch": [],
    }
    if history:
        days = 7
        hist_axis = LocalAxis(start - timedelta(days=days), days * 86400, 900)
        hrng = np.random.default_rng([seed, 15])
        hist = np.concatenate([_phase_load_kw(LocalAxis(start - timedelta(days=days - d), 86400, 900), season, hrng)
                               for d in range(days)])
        assert hist.shape[0] == hist_axis.n
        raw["base_load_history"] = {"resolution_s": 900, "phases": {
            ph: [round(float(x), 2) for x in hist[:, i]] for i, ph in enumerate(("L1", "L2", "L3"))}}
    return Scenario.model_validate(raw)


def coarsened(sc: Scenario, step_s: int = 900, tight_phases: bool | None = None, history: bool = True) -> Scenario:
    """`sc` at `step_s` (household load averaged over each step), with each phase limited to a third of the
    transformer limit (`tight_phases=True`), without phase limits (False) or as it is (None); without its meter
    history unless `history`; without dispatch commands."""
    raw = sc.model_dump(mode="json", exclude_none=True)
    per = max(step_s // sc.step_s, 1)
    n = sc.duration_s // step_s
    ph = sc.base_phase_kw()[: n * per].reshape(n, per, 3).mean(axis=1)
    raw["step_s"] = step_s
    raw["base_load"] = {"resolution_s": step_s,
                        "phases": {p: [round(float(x), 2) for x in ph[:, i]] for i, p in enumerate(("L1", "L2", "L3"))}}
    if tight_phases is True:
        third = round(sc.site.limit_kw / 3.0, 1)
        raw["site"]["phase_limit_kw"] = {p: third for p in ("L1", "L2", "L3")}
    elif tight_phases is False:
        raw["site"]["phase_limit_kw"] = None
    if not history:
        raw.pop("base_load_history", None)
    raw["dispatch"] = []
    raw["name"] = f"{sc.name}-{step_s}s{'-tight' if tight_phases else ''}{'' if history else '-cold'}"
    return Scenario.model_validate(raw)
