"""`youxu sim study`: a study across many transformers on Ray (contract section 10).

Registered as a command module of its own: it adds `study` to the `sim` group that
`youxu.sim.cli.sim` made (listed before it in COMMAND_MODULES).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from youxu.config.errors import UserError


def _sim_group(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    sim = sub.choices.get("sim")
    if sim is None:
        raise RuntimeError("youxu.sim.cli.study registers after youxu.sim.cli.sim")
    return next(a for a in sim._actions if isinstance(a, argparse._SubParsersAction))


def register(sub: argparse._SubParsersAction) -> None:
    ssub = _sim_group(sub)
    p = ssub.add_parser("study", help="many transformers x strategies on Ray: KPIs, hosting capacity, summary, plots")
    p.add_argument("--sites", required=True, type=Path,
                   help="CSV with a row per transformer: site_id, transformer_kva, households, piles, ev_share, "
                        "preset (optional: seed)")
    p.add_argument("--strategies", required=True)
    p.add_argument("--out", required=True, type=Path, help="results.parquet, summary.md and plots (resumes here)")
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--season", choices=["summer", "winter", "shoulder"],
                   help="the season of every site (default: each preset's own)")
    p.add_argument("--step-s", type=int, default=60, help="simulation step (a multiple of 60 s that divides a day)")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: a local Ray instance on this machine)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON (no progress bar)")
    p.set_defaults(func=cmd_study)


def cmd_study(args: argparse.Namespace) -> int:
    from youxu.sim.cli.sim import _strategies
    from youxu.sim.study import study_cli
    from youxu.sim.study_tasks import StudyParams

    strategies = list(dict.fromkeys(_strategies(args.strategies)))
    if args.days < 1:
        raise UserError(f"--days: must be positive (got {args.days})")
    if args.step_s < 60 or args.step_s % 60 or 86400 % args.step_s:
        raise UserError(f"--step-s: must be a multiple of 60 that divides a day (got {args.step_s})")
    return study_cli(args.sites, strategies, args.out, StudyParams(days=args.days, season=args.season,
                                                                  step_s=args.step_s),
                     args.ray_address, args.json)
