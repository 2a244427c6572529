"""`youxu` command line. Bad input gives one line naming the problem and exit code 2."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from youxu.config.errors import UserError

# modules that add their own command groups with `register(subparsers)`
# (the simulator's groups by name only: the daemon never imports the simulator, and runs without it)
COMMAND_MODULES = ("youxu.controller.cli.site", "youxu.sim.cli.demo", "youxu.sim.cli.sim", "youxu.sim.cli.study",
                   "youxu.sim.cli.bench", "youxu.controller.cli.device", "youxu.controller.cli.ocpp",
                   "youxu.controller.cli.dispatch")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> Parser:
    p = Parser(prog="youxu", description="youxu — ordered EV charging at the residential transformer")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mod.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except UserError as exc:
        sys.stderr.write(f"youxu: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `youxu device list | head`: the reader left, nothing is wrong
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

