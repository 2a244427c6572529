"""The planner's test matrix (`tests.planner_matrix`): in every cell `mpc` serves at least the energy `llf`
serves, and no step of either goes over a limit."""

from __future__ import annotations

import pytest

from tests.planner_matrix import ENERGY_TOL_KWH, FAST, SLOW, Cell, run

# cells where mpc still serves less than llf (measured, kWh short of llf): kept strict, so a fix shows up as XPASS
KNOWN_SHORT = {
    "hard-winter-150ev-s3-tight-cold": 0.12,
    "hard-winter-200ev-s1-tight-cold": 2.9,  # the physical limit: llf leaves 10 cars short, mpc 15
    # beyond the physical limit (offline cannot serve everyone either), big three-phase piles on an L1-bound night
    "old-community-winter-1.9pen-s1-tight-cold": 70.2,
    "old-community-winter-1.9pen-s1-hist": 56.4,
    "hard-winter-120ev-s4-tight-hist": 0.16,  # slow sweep
    "hard-winter-180ev-s4-tight-cold": 0.40,  # slow sweep
    "hard-summer-180ev-s1-hist": 0.07,  # slow sweep
    "hard-winter-100ev-s1-tight-cold-3ph-v2g": 0.16,  # slow sweep
    "hard-winter-200ev-s1-tight-cold-3ph-v2g": 44.35,  # slow sweep
    "hard-winter-150ev-s2-tight-cold-3ph-v2g": 0.23,  # slow sweep
    "hard-winter-200ev-s2-tight-cold-3ph-v2g": 62.72,  # slow sweep
    "hard-winter-100ev-s3-tight-cold-3ph-v2g": 0.23,  # slow sweep
    "hard-winter-200ev-s3-tight-cold-3ph-v2g": 68.57,  # slow sweep
    "old-community-winter-1.5pen-s1-tight-cold": 42.75,  # slow sweep
    "old-community-winter-1.5pen-s1-cold": 0.06,  # slow sweep
    "old-community-winter-2pen-s1-tight-cold": 66.02,  # slow sweep
    "old-community-winter-2pen-s1-tight-hist": 75.05,  # slow sweep
    "old-community-winter-2pen-s1-cold": 83.01,  # slow sweep
    "old-community-winter-2pen-s1-hist": 79.32,  # slow sweep
    "community-630-summer-0.2pen-s1-hist": 0.08,  # slow sweep
}


def cells(cs: list[Cell]) -> list:
    return [pytest.param(c, id=c.name, marks=pytest.mark.xfail(
        strict=True, reason=f"mpc serves {KNOWN_SHORT[c.name]} kWh less than llf")) if c.name in KNOWN_SHORT else
        pytest.param(c, id=c.name) for c in cs]


def check(cell: Cell) -> None:
    sc = cell.build()
    llf, mpc = run(sc, "llf"), run(sc, "mpc")
    assert llf["limit_violation_steps"] == 0, cell
    assert mpc["limit_violation_steps"] == 0, cell
    assert mpc["served_kwh"] >= llf["served_kwh"] - ENERGY_TOL_KWH, (cell.name, mpc["served_kwh"], llf["served_kwh"])


@pytest.mark.parametrize("cell", cells(FAST))
def test_mpc_serves_at_least_what_llf_serves(cell: Cell) -> None:
    check(cell)


@pytest.mark.slow
@pytest.mark.parametrize("cell", cells(SLOW))
def test_mpc_serves_at_least_what_llf_serves_sweep(cell: Cell) -> None:
    check(cell)
