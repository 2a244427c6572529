"""`youxu demo`: the main job on the embedded default."""

from __future__ import annotations

import argparse

from youxu.config.userfiles import out_dir_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="a simulated community controlled by the real daemon for one day")
    p.add_argument("--out", type=out_dir_arg, default="youxu-demo", help="output directory (default ./youxu-demo)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--preset", default="old-community",
                   help="scenario preset (default: old-community, a tight 315 kVA transformer in winter)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--serve", nargs="?", const="127.0.0.1:8080", default=None, metavar="HOST:PORT",
                   help="serve the status page and local API while the day runs (default 127.0.0.1:8080); "
                        "the address and a write token are printed")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from youxu.sim.demo import run_demo

    return run_demo(args.out, preset=args.preset, seed=args.seed, quiet=args.quiet, serve=args.serve)
