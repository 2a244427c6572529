"""The pieces of `youxu sim study` that run anywhere: the sites file and one task per site and strategy.

A task is a plain function of plain values (a `SiteRow`, a strategy, the `StudyParams`), so it
runs the same in a Ray worker on any node as in this process; it returns one results row:
the `youxu.kpis/1` fields of the site's scenario under the strategy, plus the site's columns,
its hosting capacity under the strategy (`max_evs`, `max_penetration`) and the peak against
uncontrolled charging of the same scenario (`peak_uncontrolled_kw`, `peak_reduction`).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from youxu.config.errors import UserError

if TYPE_CHECKING:
    from youxu.sim.scenario import Scenario

SITE_COLUMNS = ("site_id", "transformer_kva", "households", "piles", "ev_share", "preset")
OPTIONAL_COLUMNS = ("seed",)
STUDY_STEP_S = 60
HISTORY_STRATEGIES = ("mpc",)  # the strategies whose forecast learns from the meter history before the start


@dataclass(frozen=True)
class SiteRow:
    """One transformer of the sites file (`ev_share`: EVs per household, as `sim generate --penetration`)."""

    site_id: str
    transformer_kva: float
    households: int
    piles: int
    ev_share: float
    preset: str
    seed: int
    line: int = 0  # line in the sites file, for messages


@dataclass(frozen=True)
class StudyParams:
    days: int = 1
    season: str | None = None
    step_s: int = STUDY_STEP_S


@dataclass(frozen=True)
class BadRow:
    line: int
    site_id: str
    error: str


def task_key(row: SiteRow, strategy: str, params: StudyParams) -> str:
    """What a results row was computed from: a rerun keeps a row only when this is unchanged."""
    what = {k: v for k, v in asdict(row).items() if k != "line"}
    blob = json.dumps({"site": what, "strategy": strategy, "params": asdict(params)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def default_seed(site_id: str) -> int:
    return zlib.crc32(site_id.encode("utf-8")) % 1_000_000


def read_sites(path: Path) -> tuple[list[SiteRow], list[BadRow]]:
    """The sites file: rows that parse, and the lines that do not (each with its problem).

    A file that cannot be read, lacks a column or repeats a site id is a UserError (nothing runs)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    reader = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in SITE_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"(need {', '.join(SITE_COLUMNS)})")
    rows: list[SiteRow] = []
    bad: list[BadRow] = []
    seen: dict[str, int] = {}
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if line.strip() and not line.lstrip().startswith("#")]
    for n, raw in enumerate(reader):
        line = lines[n + 1] if n + 1 < len(lines) else 0
        rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        site_id = rec.get("site_id", "")
        if not site_id:
            bad.append(BadRow(line, "", "site_id: empty"))
            continue
        if site_id in seen:
            raise UserError(f"{path}: line {line}: site_id {site_id!r} repeats line {seen[site_id]}")
        seen[site_id] = line
        try:
            rows.append(SiteRow(
                site_id=site_id,
                transformer_kva=_number(rec, "transformer_kva", float),
                households=_number(rec, "households", int),
                piles=_number(rec, "piles", int),
                ev_share=_number(rec, "ev_share", float),
                preset=rec["preset"],
                seed=_number(rec, "seed", int) if rec.get("seed") else default_seed(site_id),
                line=line,
            ))
        except ValueError as exc:
            bad.append(BadRow(line, site_id, str(exc)))
    return rows, bad


def _number(rec: dict[str, str], name: str, kind: type) -> float | int:
    text = rec.get(name, "")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}: not {'an integer' if kind is int else 'a number'} ({text!r})") from None


def site_scenario(row: SiteRow, params: StudyParams, penetration: float | None = None,
                  history: bool = True) -> Scenario:
    """The site's community as a scenario: its own fleet (`ev_share`, `piles`), or at `penetration`
    cars per home with the piles following the fleet (the hosting-capacity search).

    The transformer's own limits only, no grid dispatch commands: what the site hosts by itself.
    `history=False` leaves out the meter history before the start, which only `mpc` reads."""
    from youxu.sim.generate import HISTORY_DAYS, generate_scenario, scenario_at_penetration

    _check_row(row)
    common = {"seed": row.seed, "days": params.days, "season": params.season, "households": row.households,
              "transformer_kva": row.transformer_kva, "step_s": params.step_s, "dispatch": False,
              "history_days": HISTORY_DAYS if history else 0}
    if penetration is None:
        return generate_scenario(row.preset, piles=row.piles, penetration=row.ev_share, **common)
    return scenario_at_penetration(row.preset, penetration, **common)


def _check_row(row: SiteRow) -> None:
    from youxu.sim.ev import MAX_CARS_PER_HOME
    from youxu.sim.presets import preset_names

    problems = []
    if not row.transformer_kva > 0:
        problems.append(f"transformer_kva: must be positive (got {row.transformer_kva:g})")
    if row.households < 1:
        problems.append(f"households: must be at least 1 (got {row.households})")
    if row.piles < 1:
        problems.append(f"piles: must be at least 1 (got {row.piles})")
    if not 0 <= row.ev_share <= MAX_CARS_PER_HOME:
        problems.append(f"ev_share: must be 0..{MAX_CARS_PER_HOME} EVs per household (got {row.ev_share:g})")
    if row.preset not in preset_names():
        problems.append(f"preset: unknown {row.preset!r}")
    if problems:
        raise ValueError("; ".join(problems))


def run_site(row: SiteRow, strategy: str, params: StudyParams) -> dict:
    """One task: the site's scenario under `strategy`, its hosting capacity, and the peak reduction."""
    from youxu.sim.engine import run_scenario
    from youxu.sim.hosting import fleet_size, search_capacity
    from youxu.sim.outputs import result_kpis
    from youxu.sim.presets import resolve_preset

    t0 = time.perf_counter()
    history = strategy in HISTORY_STRATEGIES
    sc = site_scenario(row, params, history=history)
    kpis = result_kpis(run_scenario(sc, strategy))
    if strategy == "uncontrolled":
        peak_unc = float(kpis["peak_total_kw"])
    else:
        peak_unc = float(result_kpis(run_scenario(sc, "uncontrolled"))["peak_total_kw"])
    hosting = search_capacity(strategy, functools.partial(_at_penetration, row, params, history),
                              functools.partial(fleet_size, row.preset, row.seed, households=row.households))
    return {
        **kpis,
        "site_id": row.site_id,
        "max_evs": int(hosting["max_evs"]),
        "max_penetration": float(hosting["max_penetration"]),
        "hosting_runs": len(hosting["steps"]),
        "peak_uncontrolled_kw": peak_unc,
        "peak_reduction": 1.0 - float(kpis["peak_total_kw"]) / peak_unc if peak_unc > 0 else 0.0,
        "transformer_kva": row.transformer_kva,
        "households": row.households,
        "piles": row.piles,
        "ev_share": row.ev_share,
        "preset": row.preset,
        "seed": row.seed,
        "days": params.days,
        "season": resolve_preset(row.preset, params.season)[1],
        "step_s": params.step_s,
        "task_key": task_key(row, strategy, params),
        "task_s": time.perf_counter() - t0,
        "finished_at": time.time(),
    }



def _at_penetration(row: SiteRow, params: StudyParams, history: bool, penetration: float) -> Scenario:
    return site_scenario(row, params, penetration, history=history)
