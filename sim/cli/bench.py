"""`youxu bench solve` and `youxu bench loop`: benchmarks that print JSON."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (print JSON)")
    bsub = bench.add_subparsers(dest="bench_command", required=True, parser_class=type(bench), metavar="BENCH")

    p = bsub.add_parser("solve", help="time the planner on a synthetic site")
    p.add_argument("--piles", type=int, required=True)
    p.add_argument("--horizon", type=int, required=True, help="planning steps")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_solve)

    p = bsub.add_parser("loop", help="run the real daemon against simulated devices in another process")
    p.add_argument("--piles", type=int, required=True)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--budget-ms", type=float)
    p.add_argument("--api-rps", type=float, default=0.0, metavar="R",
                   help="also serve the local API, polled R times a second with a status page open")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_loop)

    p = bsub.add_parser("chunked", help="a long run as weekly chunks in parallel against one sequential run")
    p.add_argument("--preset", default="community-630")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--households", type=int)
    p.add_argument("--piles", type=int)
    p.add_argument("--days", type=int, default=28)
    p.add_argument("--step-s", type=int, default=60, help="simulation step (a multiple of 60 s that divides a day)")
    p.add_argument("--strategy", default="llf")
    p.add_argument("--chunk-days", type=float, default=7.0)
    p.add_argument("--warmup-hours", type=float, default=24.0)
    p.add_argument("--workers", type=int, help="processes for the chunks (default: one per core)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_chunked)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>16}: {v}")


def cmd_solve(args: argparse.Namespace) -> int:
    from youxu.config.errors import UserError
    from youxu.scheduler.bench import bench_solve

    if args.piles <= 0 or args.horizon <= 0 or args.repeat <= 0:
        raise UserError("--piles, --horizon and --repeat must be positive")
    _print(bench_solve(args.piles, args.horizon, args.repeat), args.json)
    return 0


def cmd_loop(args: argparse.Namespace) -> int:
    from youxu.sim.bench_loop import bench_loop

    _print(bench_loop(args.piles, args.seconds, args.budget_ms, api_rps=args.api_rps), args.json)
    return 0


def cmd_chunked(args: argparse.Namespace) -> int:
    from youxu.config.errors import UserError
    from youxu.sim.chunked import compare_chunked
    from youxu.sim.engine import SIM_STRATEGIES
    from youxu.sim.generate import generate_scenario, preset_names

    if args.preset not in preset_names():
        raise UserError(f"--preset: unknown {args.preset!r}; use one of {', '.join(preset_names())}")
    if args.strategy not in SIM_STRATEGIES:
        raise UserError(f"--strategy: unknown {args.strategy!r}; use one of {', '.join(SIM_STRATEGIES)}")
    bad_workers = args.workers is not None and args.workers < 1
    if args.days < 1 or args.chunk_days <= 0 or args.warmup_hours < 0 or bad_workers:
        raise UserError("--days, --chunk-days and --workers must be positive, --warmup-hours not negative")
    try:
        sc = generate_scenario(args.preset, seed=args.seed, households=args.households, piles=args.piles,
                               days=args.days, step_s=args.step_s)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    out = compare_chunked(sc, args.strategy, round(args.chunk_days * 86400), round(args.warmup_hours * 3600),
                          args.workers)
    if args.json:
        print(json.dumps(out))
        return 0
    for k, v in out.items():
        if k != "kpis":
            print(f"{k:>18}: {v}")
    for k, v in out["kpis"].items():
        print(f"{k:>28}: sequential {v['sequential']}, chunked {v['chunked']} ({v['rel_diff']:+.4%})")
    return 0
