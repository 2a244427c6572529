"""`transformer.thermal`: the contract's keys, IEC defaults, and one precise line per mistake."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from youxu.config.errors import UserError
from youxu.controller.siteconfig import parse_site_config
from youxu.scheduler.thermal import ThermalConstants

from .test_cli_errors import ROOT, youxu

EXAMPLE = yaml.safe_load((ROOT / "config" / "site.example.yaml").read_text())


def _with_thermal(thermal: dict | None, **top: object) -> dict:
    raw = copy.deepcopy(EXAMPLE)
    if thermal is None:
        raw["transformer"].pop("thermal", None)
    else:
        raw["transformer"]["thermal"] = thermal
    raw.update(top)
    return raw


def _problems(raw: dict) -> str:
    with pytest.raises(UserError) as exc:
        parse_site_config(raw)
    return str(exc.value)


BASE = {"load_loss_w": 6200, "no_load_loss_w": 810, "ambient": {"fixed_c": 30}}


def test_example_config_carries_a_thermal_section_with_iec_defaults():
    cfg = parse_site_config(copy.deepcopy(EXAMPLE))
    th = cfg.transformer.thermal
    assert th is not None and th.model == "iec60076-7"
    assert th.ambient.source == "monthly" and len(th.ambient.monthly_c) == 12
    p = cfg.transformer.thermal_params()
    assert p.constants == ThermalConstants()
    assert (p.hotspot_max_c, p.top_oil_max_c, p.power_factor) == (98.0, 105.0, 0.95)
    assert p.rated_kva == 630


def test_defaults_and_overrides():
    cfg = parse_site_config(_with_thermal({**BASE, "constants": {"top_oil_rise_k": 60, "tau_oil_min": 150}}))
    th = cfg.transformer.thermal
    assert (th.hotspot_max_c, th.top_oil_max_c, th.power_factor, th.allow_above_rated) == (98, 105, 0.95, False)
    c = cfg.transformer.thermal_params().constants
    assert (c.top_oil_rise_k, c.tau_oil_min, c.hotspot_gradient_k) == (60, 150, 23.0)
    assert parse_site_config(_with_thermal(None)).transformer.thermal_params() is None


@pytest.mark.parametrize("thermal,needle", [
    ({**BASE, "ambient": {"fixed_c": 30, "monthly_c": [0] * 12}},
     "transformer.thermal.ambient: give exactly one of fixed_c, monthly_c, meter_register, mqtt: true "
     "(got fixed_c, monthly_c)"),
    ({**BASE, "ambient": {}}, "transformer.thermal.ambient: give exactly one of"),
    ({**BASE, "ambient": {"monthly_c": [0] * 11}}, "transformer.thermal.ambient.monthly_c"),
    ({**BASE, "ambient": {"monthly_c": [0] * 11 + [99]}}, "between -60 and 60"),
    ({**BASE, "allow_above_rated": True}, "allow_above_rated needs above_rated_max_kw"),
    ({**BASE, "above_rated_max_kw": 700}, "above_rated_max_kw is set but allow_above_rated is false"),
    ({**BASE, "allow_above_rated": True, "above_rated_max_kw": 500},
     "thermal.above_rated_max_kw 500.0 must be above import_limit_kw 560.0"),
    ({**BASE, "model": "iec60354"}, "transformer.thermal.model: Input should be 'iec60076-7'"),
    ({**BASE, "load_loss_w": 500}, "no_load_loss_w 810.0 is not below load_loss_w 500.0"),
    ({**BASE, "power_factor": 1.2}, "transformer.thermal.power_factor"),
    ({**BASE, "constants": {"tau_oil": 180}}, "transformer.thermal.constants.tau_oil: Extra inputs"),
    ({**BASE, "hotspot_limit_c": 98}, "transformer.thermal.hotspot_limit_c: Extra inputs"),
    ({"no_load_loss_w": 810, "ambient": {"fixed_c": 30}}, "transformer.thermal.load_loss_w: Field required"),
    ({**BASE, "ambient": {"meter_register": "temperature"}},
     "transformer.thermal.ambient.meter_register: 'temperature' is not a register of meter profile 'sdm630'"),
])
def test_each_mistake_is_named(thermal: dict, needle: str):
    assert needle in _problems(_with_thermal(thermal))


def test_mqtt_ambient_needs_the_mqtt_section():
    raw = _with_thermal({**BASE, "ambient": {"mqtt": True}})
    assert parse_site_config(copy.deepcopy(raw)).transformer.thermal.ambient.source == "mqtt"
    raw.pop("mqtt")
    assert "transformer.thermal.ambient.mqtt: the ambient topic needs the mqtt section" in _problems(raw)


def test_check_config_shows_and_rejects(tmp_path: Path):
    r = youxu("check-config", "--skip-files", str(ROOT / "config" / "site.example.yaml"))
    assert r.returncode == 0, r.stderr
    assert "thermal iec60076-7: losses 6200 W load / 810 W no-load, hot-spot <= 98 °C" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with_thermal({**BASE, "ambient": {"fixed_c": 30, "mqtt": True}})))
    r = youxu("check-config", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "transformer.thermal.ambient: give exactly one of" in r.stderr
