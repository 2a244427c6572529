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
