"""Builders shared by the dispatch tests: site configs, commands, a clock the test moves."""

from __future__ import annotations

import itertools
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from youxu.controller.grid.dispatch_schema import signed
from youxu.controller.gridlink import TickReport
from youxu.controller.siteconfig import SiteConfig, parse_site_config

CST = timezone(timedelta(hours=8))
_seq = itertools.count(1000)


class ManualClock:
    """Epoch seconds that move only when the test says so (thread-safe)."""

    def __init__(self, t_s: float) -> None:
        self._t = t_s
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, dt_s: float) -> float:
        with self._lock:
            self._t += dt_s
            return self._t


def rfc(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, CST).isoformat(timespec="seconds")


def site_config(site_id: str, url: str, **mqtt: Any) -> SiteConfig:
    raw = {
        "site": {"id": site_id, "timezone": "Asia/Shanghai"},
        "transformer": {"rated_kva": 630, "import_limit_kw": 560, "phase_limit_kw": {"L1": 190, "L2": 190, "L3": 190}},
        "meter": {"profile": "sdm630", "url": "modbus-tcp://127.0.0.1:5020"},
        "piles": [
            {"id": "P001", "profile": "youxu-sim-pile", "url": "modbus-tcp://127.0.0.1:5021", "phase": "L1"},
            {"id": "P002", "profile": "youxu-sim-pile", "url": "modbus-tcp://127.0.0.1:5021", "unit": 2,
             "phase": "L2", "v2g": True, "max_discharge_kw": 7.0},
        ],
        "mqtt": {"url": url, **mqtt},
    }
    return parse_site_config(raw, "test")


def command(now_s: float, *, kind: str = "limit", minutes: float = 60, import_max_kw: float | None = 420.0,
            export_max_kw: float | None = None, setpoint_kw: float | None = None, scope: str = "site",
            priority: int = 1, seq: int | None = None, issuer: str = "bj-dms", start_offset_s: float = 0.0,
            key: bytes | None = None, **extra: Any) -> dict[str, Any]:
    period: dict[str, Any] = {"offset_s": 0}
    if kind == "limit":
        if import_max_kw is not None:
            period["import_max_kw"] = import_max_kw
        if export_max_kw is not None:
            period["export_max_kw"] = export_max_kw
    elif kind == "setpoint":
        period["setpoint_kw"] = setpoint_kw if setpoint_kw is not None else 50.0
    cmd: dict[str, Any] = {
        "schema": "youxu.dispatch/1",
        "command_id": str(uuid.uuid4()),
        "issuer": issuer,
        "seq": next(_seq) if seq is None else seq,
        "issued_at": rfc(now_s),
        "type": kind,
        "scope": scope,
        "priority": priority,
        "valid_from": rfc(now_s + start_offset_s),
        "valid_until": rfc(now_s + start_offset_s + minutes * 60),
        "periods": [period],
        "response_required": True,
    }
    if kind == "cancel":
        del cmd["periods"], cmd["valid_from"], cmd["valid_until"]
    cmd.update(extra)
    cmd = {k: v for k, v in cmd.items() if v is not None}
    return signed(cmd, key) if key is not None else cmd


def report(t_s: float, total_kw: float, ev_kw: float, *, limit_kw: float = 550.0, safe_mode: bool = False,
           pile_status: dict[str, str] | None = None) -> TickReport:
    status = pile_status or {"P001": "charging", "P002": "available"}
    return TickReport(
        t_s=t_s, total_kw=total_kw, base_kw=total_kw - ev_kw, ev_kw=ev_kw,
        phase_kw=(total_kw / 3, total_kw / 3, total_kw / 3), limit_kw=limit_kw,
        setpoints_kw={p: 7.0 for p in status}, pile_status=status,
        pile_power_kw={p: (ev_kw if s == "charging" else 0.0) for p, s in status.items()},
        pile_session={p: None for p in status}, pile_energy_kwh={p: 1.0 for p in status}, safe_mode=safe_mode,
    )


def utc_now() -> float:
    return datetime.now(UTC).timestamp()
