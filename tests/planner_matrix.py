"""The planner's test matrix: where ordered charging matters, `mpc` must serve at least what `llf` serves.

Cells: the generator's communities (old coal-to-electric 315 kVA, the 630 kVA community) and the hand-built old
community of `tests.hard_sites` (tight phases, a heated winter night, every pile used once a day), in both seasons,
over seeds and fleets up to the physical limit, with and without tight per-phase limits, meter history,
three-phase and V2G piles; a day at 15-minute steps. `FAST` runs in CI, `SLOW` is the long sweep (marker `slow`).
`python -m tests.planner_matrix [slow]` prints every cell's figures, with offline and the gaps to the front.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tests.hard_sites import coarsened, old_community_day
from youxu.sim.engine import run_scenario
from youxu.sim.kpis import SERVED_FRACTION, session_targets_kwh
from youxu.sim.outputs import result_kpis
from youxu.sim.scenario import Scenario

ENERGY_TOL_KWH = 0.05  # rounding of what each step's physics delivers


@dataclass(frozen=True)
class Cell:
    name: str
    build: Callable[[], Scenario]

    def __str__(self) -> str:
        return self.name


def hard(n: int, seed: int = 1, season: str = "winter", tight: bool = True, history: bool = False,
         three_phase: float = 0.0, v2g: float = 0.0) -> Cell:
    name = (f"hard-{season}-{n}ev-s{seed}{'-tight' if tight else ''}{'-hist' if history else '-cold'}"
            f"{'-3ph' if three_phase else ''}{'-v2g' if v2g else ''}")
    return Cell(name, lambda: old_community_day(n, seed, season, tight, history, 900, three_phase, v2g))


def preset(name: str, penetration: float, seed: int = 1, season: str = "winter", tight: bool | None = True,
           history: bool = False) -> Cell:
    def build() -> Scenario:
        from youxu.sim.generate import scenario_at_penetration

        sc = scenario_at_penetration(name, penetration, seed=seed, season=season, history_days=7 if history else 0)
        return coarsened(sc, 900, tight_phases=tight, history=history)

    label = f"{name}-{season}-{penetration:g}pen-s{seed}{'-tight' if tight else ''}{'-hist' if history else '-cold'}"
    return Cell(label, build)


FAST: list[Cell] = [
    *[hard(n, seed, season) for season in ("winter", "summer") for seed in (1, 2, 3) for n in (80, 150)],
    hard(150, tight=False), hard(150, history=True), hard(150, three_phase=0.3), hard(150, v2g=0.2),
    hard(200),  # the physical limit: least-laxity-first starts leaving cars short
    *[preset("old-community", pen, season=season) for season in ("winter", "summer") for pen in (1.0, 1.9)],
    *[preset("community-630", pen, season=season) for season in ("winter", "summer") for pen in (0.3,)],
    preset("old-community", 1.9, tight=None, history=True),
]

SLOW: list[Cell] = [
    *[hard(n, seed, season, tight, history) for season in ("winter", "summer") for seed in (1, 2, 3, 4, 5)
      for n in (60, 100, 120, 180, 200) for tight in (True, False) for history in (False, True)],
    *[hard(n, seed, three_phase=0.3, v2g=0.2) for seed in (1, 2, 3) for n in (100, 150, 200)],
    *[preset(p, pen, seed, season, tight, history) for p, pens in (("old-community", (0.5, 1.5, 2.0)),
                                                                  ("community-630", (0.2, 0.5)))
      for pen in pens for seed in (1, 2, 3) for season in ("winter", "summer") for tight in (True, None)
      for history in (False, True)],
]


def run(sc: Scenario, strategy: str) -> dict:
    res = run_scenario(sc, strategy)
    target = session_targets_kwh(sc)
    k = result_kpis(res)
    k["served_kwh"] = float(np.minimum(np.clip(res.delivered_kwh, 0.0, None), target).sum())
    k["served_ok"] = res.delivered_kwh >= SERVED_FRACTION * target - 1e-9
    return k


def report(cells: list[Cell]) -> None:
    from youxu.sim.offline import pareto

    print("| cell | EVs | owed kWh | llf kWh | mpc kWh | offline kWh | mpc-llf kWh | short llf/mpc | viol mpc | "
          "mpc peak_gap | mpc cost_gap | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell in cells:
        t0 = time.perf_counter()
        sc = cell.build()
        owed = float(session_targets_kwh(sc).sum())
        k = {s: run(sc, s) for s in ("llf", "mpc", "offline")}
        front = pareto(sc, k["mpc"]) or {}
        short = "/".join(str(int((~k[s]["served_ok"]).sum())) for s in ("llf", "mpc"))
        print(f"| {cell} | {len(sc.sessions)} | {owed:.1f} | {k['llf']['served_kwh']:.1f} | "
              f"{k['mpc']['served_kwh']:.1f} | {k['offline']['served_kwh']:.1f} | "
              f"{k['mpc']['served_kwh'] - k['llf']['served_kwh']:+.2f} | {short} | "
              f"{k['mpc']['limit_violation_steps']} | {front.get('peak_gap')} | {front.get('cost_gap')} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    report(SLOW if sys.argv[1:] == ["slow"] else FAST)
