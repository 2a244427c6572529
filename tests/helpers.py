"""Small builders for hand-made sites in tests."""

from __future__ import annotations

import numpy as np

from youxu.scheduler.model import Piles, Sessions, Snapshot, phase_matrix


def piles(n: int, max_kw: float = 7.0, min_kw: float = 1.4, phases: list[str] | None = None,
          v2g: list[bool] | None = None, discharge_kw: float = 7.0) -> Piles:
    phases = phases or [("L1", "L2", "L3")[i % 3] for i in range(n)]
    v = np.array(v2g if v2g is not None else [False] * n, dtype=bool)
    return Piles(
        ids=tuple(f"P{i:03d}" for i in range(n)),
        max_kw=np.full(n, max_kw),
        min_kw=np.full(n, min_kw),
        phase_share=phase_matrix(phases, [3 if p == "3P" else 1 for p in phases]),
        v2g=v,
        max_discharge_kw=np.where(v, discharge_kw, 0.0),
    )


def sessions(n: int, active: list[bool] | None = None, remaining_kwh: float = 20.0, t0: float = 0.0,
             departure_h: list[float] | None = None, urgent: list[bool] | None = None) -> Sessions:
    s = Sessions.empty(n)
    act = np.array(active if active is not None else [True] * n, dtype=bool)
    dep = np.array(departure_h if departure_h is not None else [8.0] * n) * 3600 + t0
    return Sessions(
        active=act, ids=tuple(f"S{i}" if a else None for i, a in enumerate(act)),
        arrival_s=np.full(n, t0), departure_s=dep,
        energy_requested_kwh=np.where(act, remaining_kwh, 0.0), energy_delivered_kwh=np.zeros(n),
        battery_kwh=s.battery_kwh, soc_arrival=s.soc_arrival, min_soc=s.min_soc, v2g=s.v2g,
        urgent=np.array(urgent if urgent is not None else [False] * n, dtype=bool), car_max_kw=s.car_max_kw,
    )


def snapshot(p: Piles, base_kw: float, pile_kw: np.ndarray | None = None, base_phase: np.ndarray | None = None,
             sess: Sessions | None = None, fixed_kw: np.ndarray | None = None, t_s: float = 0.0) -> Snapshot:
    pk = np.zeros(p.n) if pile_kw is None else np.asarray(pile_kw, dtype=float)
    bp = np.full(3, base_kw / 3) if base_phase is None else np.asarray(base_phase, dtype=float)
    return Snapshot(t_s=t_s, meter_kw=base_kw + pk.sum(), meter_phase_kw=bp + pk @ p.phase_share, pile_kw=pk,
                    pile_online=np.ones(p.n, dtype=bool), pile_plugged=np.ones(p.n, dtype=bool),
                    sessions=sess or sessions(p.n), fixed_kw=fixed_kw)


def site_total_kw(site) -> float:
    """What the simulated transformer carries now: households plus what the piles draw."""
    _, p = site.state_now()
    k = int(site.sim_t() // site.sc.step_s)
    return float(site.base_phase[k].sum() + p.sum())
