"""A busy synthetic site for benchmarks: every pile has a car that wants energy, the household
load moves every minute, and the transformer is tight enough that allocations change each tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np

from youxu.sim.scenario import Scenario

CST = timezone(timedelta(hours=8))


def busy_site(n_piles: int, duration_s: int = 3600, seed: int = 1, start: datetime | None = None,
              step_s: int = 60) -> Scenario:
    rng = np.random.default_rng(seed)
    start = (start or datetime.now(UTC)).astimezone(CST).replace(microsecond=0)
    n_steps = max(1, duration_s // step_s)
    phases = ["L1", "L2", "L3"]
    three = rng.random(n_piles) < 0.1
    v2g = rng.random(n_piles) < 0.1
    piles = []
    for i in range(n_piles):
        p3 = bool(three[i])
        piles.append({
            "id": f"P{i + 1:04d}", "max_kw": 11.0 if p3 else 7.0, "min_kw": 4.14 if p3 else 1.38,
            "phases": 3 if p3 else 1, "phase": None if p3 else phases[i % 3],
            "v2g": bool(v2g[i]), "max_discharge_kw": 7.0 if v2g[i] else 0.0,
        })
    ev_max = sum(p["max_kw"] for p in piles)
    base_mean = 2.0 * n_piles
    walk = np.cumsum(rng.normal(0, 0.02 * base_mean, n_steps))
    base = np.clip(base_mean + walk + 0.1 * base_mean * np.sin(np.arange(n_steps) / 7.0), 0.3 * base_mean, None)
    limit = float(base.max() + 0.5 * ev_max)
    sessions = []
    for i, p in enumerate(piles):
        sessions.append({
            "id": f"S{i + 1:05d}", "pile": p["id"], "arrival_s": 0, "departure_s": n_steps * step_s,
            "energy_kwh": round(float(p["max_kw"] * n_steps * step_s / 3600.0 * rng.uniform(0.6, 1.2)), 2),
            "battery_kwh": 300.0, "soc_arrival": 0.3, "v2g": p["v2g"], "min_soc": 0.2,
            "priority": "urgent" if rng.random() < 0.03 else "normal",
        })
    return Scenario.model_validate({
        "format": "youxu.scenario/1", "name": f"busy-{n_piles}", "start": start.isoformat(),
        "step_s": step_s, "duration_s": n_steps * step_s,
        "site": {"transformer_kva": round(limit / 0.9), "limit_kw": round(limit, 1), "export_limit_kw": 50.0,
                 "phase_limit_kw": None},
        "base_load": {"resolution_s": step_s, "kw": [round(float(b), 2) for b in base]},
        "tariff": {"resolution_s": 3600, "import_yuan_per_kwh": [0.5]},
        "piles": piles, "sessions": sessions, "dispatch": [],
    })
