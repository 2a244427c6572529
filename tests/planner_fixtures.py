"""Small hand-made sites for the planner tests: a few piles, a few hour-long steps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from youxu.scheduler.model import Piles, PlanInput, Sessions, phase_matrix

T0 = 1_782_900_000.0  # a quarter-hour boundary


@dataclass
class Car:
    pile: int
    need_kwh: float
    depart_h: float  # hours after T0
    max_kw: float = 7.0
    urgent: bool = False
    v2g: bool = False
    battery_kwh: float = 60.0
    soc: float = 0.5
    min_soc: float = 0.2
    delivered_kwh: float = 0.0
    sid: str | None = None


@dataclass
class Site:
    base_kw: list[float]
    cars: list[Car]
    n_piles: int | None = None
    step_h: float = 1.0
    pile_max_kw: float = 7.0
    pile_min_kw: float = 1.4
    v2g_piles: bool = False
    phases: list[str] | None = None
    import_limit_kw: float | list[float] = np.inf
    export_limit_kw: float | list[float] = 0.0
    phase_limit_kw: list[float] | None = None
    ev_import_limit_kw: float | list[float] = np.inf
    ev_export_limit_kw: float | list[float] = np.inf
    setpoint_kw: list[float] | None = None
    setpoint_scope: str = "ev"
    price: float | list[float] = 0.5
    export_price: float | list[float] | None = None
    online: list[bool] | None = None
    extra: dict = field(default_factory=dict)

    def piles(self) -> Piles:
        n = self.n_piles or max([c.pile for c in self.cars] + [0]) + 1
        phases = self.phases or [("L1", "L2", "L3")[i % 3] for i in range(n)]
        return Piles(
            ids=tuple(f"P{i}" for i in range(n)),
            max_kw=np.full(n, self.pile_max_kw),
            min_kw=np.full(n, self.pile_min_kw),
            phase_share=phase_matrix(phases, [3 if p == "3P" else 1 for p in phases]),
            v2g=np.full(n, self.v2g_piles),
            max_discharge_kw=np.full(n, self.pile_max_kw if self.v2g_piles else 0.0),
        )

    def input(self, t0: float = T0) -> PlanInput:
        p = self.piles()
        n, h = p.n, len(self.base_kw)
        s = Sessions.empty(n)
        f = {k: getattr(s, k).copy() for k in ("active", "arrival_s", "departure_s", "energy_requested_kwh",
                                                 "energy_delivered_kwh", "battery_kwh", "soc_arrival", "min_soc",
                                                 "v2g", "urgent", "car_max_kw")}
        ids: list[str | None] = [None] * n
        for i, c in enumerate(self.cars):
            k = c.pile
            ids[k] = c.sid or f"S{i}"
            f["active"][k] = True
            f["arrival_s"][k] = t0 - 600
            f["departure_s"][k] = T0 + c.depart_h * 3600
            f["energy_requested_kwh"][k] = c.need_kwh + c.delivered_kwh
            f["energy_delivered_kwh"][k] = c.delivered_kwh
            f["battery_kwh"][k] = c.battery_kwh
            f["soc_arrival"][k] = c.soc - c.delivered_kwh / c.battery_kwh
            f["min_soc"][k] = c.min_soc
            f["v2g"][k] = c.v2g
            f["urgent"][k] = c.urgent
            f["car_max_kw"][k] = c.max_kw
        base = np.asarray(self.base_kw, dtype=float)

        def arr(v: float | list[float]) -> np.ndarray:
            return np.broadcast_to(np.asarray(v, dtype=float), (h,)).copy()

        return PlanInput(
            t0_s=t0,
            step_s=np.full(h, self.step_h * 3600.0),
            base_kw=base,
            base_phase_kw=np.repeat(base[:, None] / 3.0, 3, axis=1),
            import_limit_kw=arr(self.import_limit_kw),
            export_limit_kw=arr(self.export_limit_kw),
            phase_limit_kw=None if self.phase_limit_kw is None else np.asarray(self.phase_limit_kw, dtype=float),
            ev_import_limit_kw=arr(self.ev_import_limit_kw),
            ev_export_limit_kw=arr(self.ev_export_limit_kw),
            setpoint_kw=np.full(h, np.nan) if self.setpoint_kw is None else np.asarray(self.setpoint_kw, float),
            setpoint_scope=self.setpoint_scope,
            import_price=arr(self.price),
            export_price=arr(self.price if self.export_price is None else self.export_price),
            piles=p,
            sessions=Sessions(ids=tuple(ids), **f),
            pile_online=np.ones(n, dtype=bool) if self.online is None else np.asarray(self.online),
            **self.extra,
        )
