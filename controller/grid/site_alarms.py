"""Alarms the grid hears about, derived from what each tick measured (pure).

Each alarm is reported once when it starts and once when it clears: the site over its import
limit (or a phase over its phase limit), the site exporting more than its export limit, a pile
reporting a fault, the controller in safe mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from youxu.controller.gridlink import TickReport

OVERLOAD_TOLERANCE_KW = 0.1  # as the contract counts violations


@dataclass(frozen=True)
class Alarm:
    kind: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class AlarmWatch:
    phase_limits_kw: np.ndarray | None = None  # (3,) or None
    overload: bool = False
    export_overload: bool = False
    safe_mode: bool = False
    faulted: set[str] = field(default_factory=set)

    def observe(self, r: TickReport) -> list[Alarm]:
        return self._safe_mode(r) + self._overload(r) + self._export_overload(r) + self._pile_faults(r)

    def _safe_mode(self, r: TickReport) -> list[Alarm]:
        if r.safe_mode == self.safe_mode:
            return []
        self.safe_mode = r.safe_mode
        if r.safe_mode:
            return [Alarm("safe_mode", "the controller entered safe mode: piles at their safe current")]
        return [Alarm("safe_mode_cleared", "the controller left safe mode")]

    def _overload(self, r: TickReport) -> list[Alarm]:
        if not r.meter_ok:  # the site's load is an assumption this tick: neither an overload nor its end
            return []
        over = math.isfinite(r.limit_kw) and r.total_kw > r.limit_kw + OVERLOAD_TOLERANCE_KW
        phases: list[str] = []
        if r.phase_kw is not None and self.phase_limits_kw is not None:
            phases = [f"L{i + 1}" for i in range(3) if r.phase_kw[i] > self.phase_limits_kw[i] + OVERLOAD_TOLERANCE_KW]
        now_over = over or bool(phases)
        out: list[Alarm] = []
        if now_over and not self.overload:
            out.append(Alarm("overload", f"site at {r.total_kw:.1f} kW, limit {r.limit_kw:.1f} kW"
                             + (f"; phases over: {', '.join(phases)}" if phases else ""),
                             {"total_kw": r.total_kw, "limit_kw": r.limit_kw, "phases": phases}))
        elif self.overload and not now_over:
            out.append(Alarm("overload_cleared", f"site back within its limit ({r.total_kw:.1f} kW)",
                             {"total_kw": r.total_kw}))
        self.overload = now_over
        return out

    def _export_overload(self, r: TickReport) -> list[Alarm]:
        """Reverse power: the site (negative kW) exporting more than the export limit in force."""
        limit = r.export_limit_kw
        now_over = math.isfinite(limit) and -r.total_kw > limit + OVERLOAD_TOLERANCE_KW
        out: list[Alarm] = []
        if now_over and not self.export_overload:
            out.append(Alarm("export_overload", f"site exporting {-r.total_kw:.1f} kW, export limit {limit:.1f} kW",
                             {"total_kw": r.total_kw, "export_limit_kw": limit}))
        elif self.export_overload and not now_over:
            out.append(Alarm("export_overload_cleared", f"site back within its export limit ({r.total_kw:.1f} kW)",
                             {"total_kw": r.total_kw}))
        self.export_overload = now_over
        return out

    def _pile_faults(self, r: TickReport) -> list[Alarm]:
        out: list[Alarm] = []
        for pid, status in r.pile_status.items():
            fault = status == "fault"
            if fault and pid not in self.faulted:
                self.faulted.add(pid)
                out.append(Alarm("pile_fault", f"pile {pid} reports a fault", {"pile": pid}))
            elif not fault and pid in self.faulted:
                self.faulted.discard(pid)
                out.append(Alarm("pile_fault_cleared", f"pile {pid} no longer reports a fault", {"pile": pid}))
        return out
