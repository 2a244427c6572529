"""A site config (YAML-ready dict) that points `youxu run` at a simulated scenario's devices."""

from __future__ import annotations

from pathlib import Path

import yaml

from youxu.sim.devices import DeviceAddress
from youxu.sim.scenario import Scenario

VOLTAGE_V = 230.0


def scenario_site_config(sc: Scenario, addresses: dict[str, DeviceAddress], site_id: str = "sim-site",
                         mqtt_url: str | None = None, state_dir: str | None = None,
                         control: dict | None = None) -> dict:
    phase_limits = dict(sc.site.phase_limit_kw) if sc.site.phase_limit_kw else None
    piles = []
    for p in sc.piles:
        n_ph = p.phases
        a = addresses[p.id]
        per_a = p.max_kw * 1000.0 / (VOLTAGE_V * n_ph)
        min_a = p.min_kw * 1000.0 / (VOLTAGE_V * n_ph) if p.min_kw > 0 else 0.0
        piles.append({
            "id": p.id, "profile": "youxu-sim-pile", "url": a.url, "unit": a.unit,
            "phase": "3P" if n_ph == 3 else p.phase, "voltage_v": VOLTAGE_V,
            "min_a": round(min_a, 4), "max_a": round(per_a, 4), "max_kw": p.max_kw,
            "v2g": p.v2g, "max_discharge_kw": p.max_discharge_kw if p.v2g else 0.0,
            "failsafe_a": round(min_a, 4),  # the simulated pile falls back to its minimum without youxu
        })
    m = addresses["meter"]
    cfg: dict = {
        "site": {"id": site_id, "name": sc.name, "timezone": sc.timezone or "Asia/Shanghai"},
        "transformer": {"rated_kva": sc.site.transformer_kva, "import_limit_kw": sc.site.limit_kw,
                        "export_limit_kw": sc.site.export_limit_kw, "phase_limit_kw": phase_limits,
                        "margin_kw": sc.site.margin_kw},
        "meter": {"profile": "sdm630", "url": m.url, "unit": m.unit},
        "piles": piles,
        "control": control or {},
        "storage": {"state_dir": state_dir or "./youxu-state"},
    }
    if sc.site.thermal is not None:
        # the scenario's ambient series has no config form: its hottest value, fixed, is the safe side
        thermal = sc.site.thermal.model_dump(exclude_none=True)
        thermal["ambient"] = {"fixed_c": float(sc.ambient_per_step_c().max())}
        cfg["transformer"]["thermal"] = thermal
    if mqtt_url:
        cfg["mqtt"] = {"url": mqtt_url}
    return cfg


def write_site_config(path: Path, cfg: dict) -> None:
    header = "# Site config for a simulated youxu site (written by `youxu sim serve --write-config`).\n"
    path.write_text(header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
