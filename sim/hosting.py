"""`youxu sim hosting-capacity`: the largest EV fleet a transformer hosts under each strategy.

The preset's community is simulated at rising EV penetration (cars per home, everything else
the same: `youxu.sim.generate.scenario_at_penetration`). A fleet is hosted when the run has no step
over a limit and serves at least 99 % of the energy the sessions were owed (their requests, or
what their windows allowed if less). A strategy's hosting capacity is the largest fleet below
the first one it fails: a coarse scan upwards, then bisection between the last fleet hosted and
the first one failed until they differ by one car or `RESOLUTION` cars per home. Every step
reported is a real run; runs go to parallel processes, one per core.

With `limit="thermal"` the transformer is judged by its thermal limit instead of its kW cap
(`sim.thermal.with_thermal_limit`: IEC 60076-7 with the size's typical losses, above-rated power
allowed up to 1.5 per unit): a fleet is hosted when no step is over that ceiling or a phase limit,
the winding hot-spot stays at or below its maximum (98 °C) and 99 % of the energy is served.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing as mp
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from youxu.config.errors import UserError
from youxu.sim.progress import ProgressBar

if TYPE_CHECKING:
    from youxu.sim.scenario import Scenario

SERVED_MIN = 0.99
COARSE_STEP = 0.2  # cars per home between the first runs
MAX_PENETRATION = 3.0  # the generator models up to three cars per home
RESOLUTION = 0.01  # cars per home: bisection stops here at the latest
LIMITS = ("kw", "thermal")
HOTSPOT_TOL_C = 0.5  # the hot-spot may pass its maximum by this much (the model's step against the plan's)


@dataclass(frozen=True)
class Step:
    penetration: float
    evs: int
    violations: int
    served_fraction: float
    peak_kw: float
    hotspot_c: float | None = None  # the highest hot-spot, judged against `hotspot_max_c` (thermal limit)
    hotspot_max_c: float | None = None

    @property
    def hosted(self) -> bool:
        hot_ok = self.hotspot_c is None or self.hotspot_max_c is None or \
            self.hotspot_c <= self.hotspot_max_c + HOTSPOT_TOL_C
        return self.violations == 0 and self.served_fraction >= SERVED_MIN and hot_ok

    def to_json(self) -> dict:
        # rounded down, so that a fleet shown at 0.99 is one that was hosted
        served = math.floor(self.served_fraction * 1e4 + 1e-6) / 1e4
        out = {"penetration": self.penetration, "evs": self.evs, "violations": self.violations,
               "served_fraction": served, "peak_kw": self.peak_kw}
        if self.hotspot_c is not None:
            out["hotspot_max_c"] = self.hotspot_c
        return out


@dataclass
class Search:
    """One strategy's search: runs done, the last fleet hosted and the first fleet failed."""

    strategy: str
    steps: dict[float, Step] = field(default_factory=dict)
    lo: float = 0.0  # largest penetration hosted with everything below it hosted (0: no car)
    hi: float | None = None  # smallest penetration failed

    def record(self, step: Step) -> None:
        self.steps[step.penetration] = step
        ps = sorted(self.steps)
        self.lo, self.hi = 0.0, None
        for p in ps:
            if not self.steps[p].hosted:
                self.hi = p
                break
            self.lo = p

    def done(self, evs_at: Callable[[float], int]) -> bool:
        if self.hi is None:
            return self.lo >= MAX_PENETRATION
        return self.hi - self.lo <= RESOLUTION + 1e-9 or evs_at(self.hi) - evs_at(self.lo) <= 1

    def next_points(self, k: int) -> list[float]:
        """Up to k untried penetrations that narrow the search most: coarse steps up, else the bracket split."""
        if self.hi is None:
            pts = [round(self.lo + COARSE_STEP * (i + 1), 4) for i in range(k)]
            pts = [min(p, MAX_PENETRATION) for p in pts]
        else:
            width = (self.hi - self.lo) / (k + 1)
            pts = [round(self.lo + width * (i + 1), 4) for i in range(k)]
        return sorted({p for p in pts if p not in self.steps and self.lo < p and (self.hi is None or p < self.hi)})

    def result(self) -> dict:
        return {"max_evs": self.steps[self.lo].evs if self.lo in self.steps else 0, "max_penetration": self.lo,
                "steps": [self.steps[p].to_json() for p in sorted(self.steps)]}


def fleet_size(preset: str, seed: int, penetration: float, households: int | None = None) -> int:
    """How many EVs the preset's community (of `households` homes, if given) has at `penetration` cars per home.

    As the generator draws them."""
    from youxu.sim.ev import draw_fleet
    from youxu.sim.generate import STREAM_FLEET
    from youxu.sim.presets import resolve_preset

    p, _ = resolve_preset(preset)
    homes = p.households if households is None else households
    return int(draw_fleet(homes, p.ev, np.random.default_rng([seed, STREAM_FLEET])).owned(penetration).size)


@functools.lru_cache(maxsize=4)
def _scenario(preset: str, seed: int, penetration: float, limit: str = "kw") -> Scenario:
    from youxu.sim.generate import scenario_at_penetration

    sc = scenario_at_penetration(preset, penetration, seed=seed)
    if limit == "thermal":
        from youxu.sim.thermal import with_thermal_limit

        sc = with_thermal_limit(sc)
    return sc


def evaluate_step(sc: Scenario, strategy: str, penetration: float, evs: int) -> Step:
    """One run of the community `sc` (at `penetration`, with `evs` cars) under `strategy`."""
    from youxu.sim.engine import run_scenario
    from youxu.sim.kpis import session_targets_kwh
    from youxu.sim.outputs import result_kpis

    res = run_scenario(sc, strategy)
    kpis = result_kpis(res)
    target = session_targets_kwh(sc)
    owed = float(target.sum())
    served = float(np.minimum(np.clip(res.delivered_kwh, 0.0, None), target).sum() / owed) if owed > 0 else 1.0
    return Step(penetration=penetration, evs=evs, violations=int(kpis["limit_violation_steps"]),
                served_fraction=served, peak_kw=float(kpis["peak_total_kw"]), hotspot_c=kpis.get("hotspot_max_c"),
                hotspot_max_c=None if sc.site.thermal is None else sc.site.thermal.hotspot_max_c)


def hosting_step(preset: str, seed: int, strategy: str, penetration: float, limit: str = "kw") -> tuple[str, Step]:
    """One run (in a worker process): the community at `penetration` under `strategy`."""
    sc = _scenario(preset, seed, penetration, limit)
    return strategy, evaluate_step(sc, strategy, penetration, fleet_size(preset, seed, penetration))


def search_capacity(strategy: str, scenario_at: Callable[[float], Scenario], evs_at: Callable[[float], int],
                    on_step: Callable[[Step], None] | None = None) -> dict:
    """One strategy's hosting capacity, one run after the other (`{"max_evs", "max_penetration", "steps"}`).

    The same search as `hosting_capacity`, a point at a time: for a caller that runs many
    communities in parallel itself (`youxu sim study`)."""
    search = Search(strategy)
    while not search.done(evs_at):
        points = search.next_points(1)
        if not points:  # bracket too narrow to split further
            break
        p = points[0]
        step = evaluate_step(scenario_at(p), strategy, p, evs_at(p))
        search.record(step)
        if on_step is not None:
            on_step(step)
    return search.result()


def hosting_capacity(preset: str, seed: int, strategies: list[str], progress: ProgressBar | None = None,
                     limit: str = "kw") -> dict:
    """`{"preset", "results": {strategy: {"max_evs", "max_penetration", "steps": [...]}}}` (and `"limit"` when
    judged by the thermal limit)."""
    searches = {s: Search(s) for s in dict.fromkeys(strategies)}
    evs_at = functools.partial(fleet_size, preset, seed)
    workers = max(1, os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        while True:
            open_ = [s for s in searches.values() if not s.done(evs_at)]
            if not open_:
                break
            per = max(1, -(-workers // len(open_)))  # keep every core busy
            jobs = [(s.strategy, p) for s in open_ for p in s.next_points(per)]
            if not jobs:  # brackets too narrow to split further
                break
            args = [(preset, seed, s, p, limit) for s, p in jobs]
            for strategy, step in pool.map(hosting_step, *zip(*args, strict=True)):
                searches[strategy].record(step)
                if progress is not None:
                    progress.note(f"{strategy:>12} {step.penetration:6.4g} cars/home {step.evs:5d} EVs: "
                                  f"{step.violations} violation steps, {step.served_fraction:.1%} served, "
                                  f"peak {step.peak_kw:.0f} kW"
                                  + ("" if step.hotspot_c is None else f", hot-spot {step.hotspot_c:.1f} °C"))
    out: dict = {"preset": preset, "results": {s: search.result() for s, search in searches.items()}}
    if limit != "kw":
        out["limit"] = limit
    return out


def hosting_capacity_cli(preset: str, seed: int, strategies: list[str], as_json: bool, limit: str = "kw") -> int:
    from youxu.sim.presets import preset_names

    if preset not in preset_names():
        raise UserError(f"--preset: unknown {preset!r}; use one of {', '.join(preset_names())}")
    if limit not in LIMITS:
        raise UserError(f"--limit: unknown {limit!r}; use one of {', '.join(LIMITS)}")
    bar = ProgressBar("hosting capacity", quiet=as_json)
    out = hosting_capacity(preset, seed, strategies, progress=bar, limit=limit)
    if as_json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    judged = "the kW cap" if limit == "kw" else "the thermal limit (hot-spot <= 98 °C, up to 1.5 per unit)"
    print(f"hosting capacity of {preset} (seed {seed}) under {judged}: no step over a limit and >= "
          f"{SERVED_MIN:.0%} of the energy served")
    for s, r in out["results"].items():
        print(f"  {s:<12} {r['max_evs']:5d} EVs ({r['max_penetration']:.2f} cars per home) "
              f"after {len(r['steps'])} runs")
    sys.stdout.flush()
    return 0
