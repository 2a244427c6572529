"""Hand-made scenarios for tests."""

from __future__ import annotations

from youxu.sim.scenario import Scenario


def small_site(n_piles: int = 6, base_kw: float = 100.0, limit_kw: float = 150.0, hours: int = 4,
               energy_kwh: float = 20.0, phase_limit_kw: float | None = None, dispatch: list | None = None,
               v2g_every: int = 0, start: str = "2026-07-01T18:00:00+08:00") -> Scenario:
    duration = hours * 3600
    piles = [{"id": f"P{i + 1:02d}", "max_kw": 7.0, "min_kw": 1.38, "phases": 1, "phase": ("L1", "L2", "L3")[i % 3],
              "v2g": bool(v2g_every and i % v2g_every == 0),
              "max_discharge_kw": 7.0 if v2g_every and i % v2g_every == 0 else 0.0} for i in range(n_piles)]
    sessions = [{"id": f"S{i + 1:03d}", "pile": p["id"], "arrival_s": 0, "departure_s": duration,
                 "energy_kwh": energy_kwh, "battery_kwh": 60.0, "soc_arrival": 0.4, "v2g": p["v2g"], "min_soc": 0.3,
                 "priority": "normal"} for i, p in enumerate(piles)]
    return Scenario.model_validate({
        "format": "youxu.scenario/1", "name": "test-site", "start": start, "step_s": 60, "duration_s": duration,
        "site": {"transformer_kva": limit_kw / 0.9, "limit_kw": limit_kw, "export_limit_kw": 30.0,
                 "phase_limit_kw": None if phase_limit_kw is None else {"L1": phase_limit_kw, "L2": phase_limit_kw,
                                                                       "L3": phase_limit_kw}},
        "base_load": {"resolution_s": 900, "kw": [base_kw] * (duration // 900)},
        "tariff": {"resolution_s": 3600, "import_yuan_per_kwh": [0.5]},
        "piles": piles, "sessions": sessions, "dispatch": dispatch or [],
    })
