"""The config's `tariff` section (contract section 5: time-of-use periods and prices) as the daemon uses
it: local periods, periods over midnight, export prices, and the site's time zone with its daylight
saving, checked minute by minute against the local time the standard library gives for each instant."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from youxu.controller.daemon import make_controller
from youxu.controller.gridlink import NoGridLink
from youxu.controller.siteconfig import load_site_config, parse_site_config

ROOT = Path(__file__).resolve().parent.parent


def config(timezone: str, tariff: dict | None = None):
    raw = {
        "site": {"id": "tariff-test", "timezone": timezone},
        "transformer": {"rated_kva": 630, "import_limit_kw": 560},
        "meter": {"profile": "sdm630", "url": "modbus-tcp://127.0.0.1:5020"},
        "piles": [{"id": "P001", "profile": "youxu-sim-pile", "url": "modbus-tcp://127.0.0.1:5021", "phase": "L1"}],
    }
    if tariff is not None:
        raw["tariff"] = tariff
    return parse_site_config(raw, "test")


def prices(cfg, t_s: list[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prices the daemon's controller plans with."""
    imp, exp = make_controller(cfg, NoGridLink()).tariff(np.asarray(t_s, dtype=float))
    return np.asarray(imp), np.asarray(exp)


def at(local: str, tz: str) -> float:
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_the_default_tariff_is_beijing_time_of_use_over_midnight() -> None:
    cfg = config("Asia/Shanghai")
    table = [("2026-07-01T06:59", 0.3), ("2026-07-01T07:00", 0.6), ("2026-07-01T09:59", 0.6),
             ("2026-07-01T10:00", 0.95), ("2026-07-01T14:59", 0.95), ("2026-07-01T15:00", 0.6),
             ("2026-07-01T18:00", 0.95), ("2026-07-01T20:59", 0.95), ("2026-07-01T21:00", 0.6),
             ("2026-07-01T22:59", 0.6), ("2026-07-01T23:00", 0.3), ("2026-07-02T00:00", 0.3),
             ("2026-07-02T03:30", 0.3)]
    imp, exp = prices(cfg, [at(local, "Asia/Shanghai") for local, _ in table])
    assert imp.tolist() == [p for _, p in table]
    assert exp.tolist() == imp.tolist()  # no export price given: export at the import price


def test_the_example_configs_tariff_with_its_export_prices() -> None:
    cfg = load_site_config(ROOT / "config" / "site.example.yaml")
    # config/site.example.yaml: valley 23-07 exports at 0.30, flat 07-10 has no export price, peak 18-21 0.95
    times = [at(f"2026-07-01T{hm}", "Asia/Shanghai") for hm in ("02:00", "08:30", "19:15", "23:30")]
    imp, exp = prices(cfg, times)
    assert imp.tolist() == [0.3, 0.6, 0.95, 0.3]
    assert exp.tolist() == [0.3, 0.6, 0.95, 0.3]


# a day cut at times that are not whole hours, one period over midnight, export prices of their own
PERIODS = [("22:30", "02:40", 0.21, 0.11), ("02:40", "06:15", 0.18, 0.10), ("06:15", "11:45", 0.52, 0.12),
           ("11:45", "17:30", 0.93, 0.13), ("17:30", "22:30", 0.64, 0.14)]


def reference(local_minute: int) -> tuple[float, float]:
    for start, end, imp, exp in PERIODS:
        a = int(start[:2]) * 60 + int(start[3:])
        b = int(end[:2]) * 60 + int(end[3:])
        if (a <= local_minute < b) if a < b else (local_minute >= a or local_minute < b):
            return imp, exp
    raise AssertionError(local_minute)


@pytest.mark.parametrize(("tz", "day"), [
    ("Asia/Shanghai", "2026-07-01"),
    ("Europe/Berlin", "2026-03-29"),  # clocks forward at 01:00 UTC
    ("Europe/Berlin", "2026-10-25"),  # and back
    ("America/New_York", "2026-03-08"),
    ("Asia/Kolkata", "2026-07-01"),  # UTC+05:30
    ("Asia/Kathmandu", "2026-07-01"),  # UTC+05:45
    ("Australia/Lord_Howe", "2026-10-04"),  # a half-hour step, at 15:30 UTC
    ("Australia/Lord_Howe", "2026-04-05"),
])
def test_local_periods_follow_the_sites_time_zone_minute_by_minute(tz: str, day: str) -> None:
    cfg = config(tz, {"periods": [{"start": s, "end": e, "import_yuan_per_kwh": i, "export_yuan_per_kwh": x}
                                  for s, e, i, x in PERIODS]})
    t0 = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo("UTC")).timestamp() - 86400
    t = t0 + 60.0 * np.arange(3 * 24 * 60)  # three days around the day, every minute
    imp, exp = prices(cfg, t)
    zone = ZoneInfo(tz)
    want = [reference(d.hour * 60 + d.minute) for d in (datetime.fromtimestamp(x, zone) for x in t)]
    bad = [(datetime.fromtimestamp(x, zone).isoformat(), got, w[0]) for x, got, w in zip(t, imp, want, strict=True)
           if got != w[0]]
    assert not bad, f"{len(bad)} minutes priced as the wrong period, first {bad[:3]}"
    assert exp.tolist() == [w[1] for w in want]
