"""`youxu sim ...`: generate, run, serve, compare, hosting-capacity."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from youxu.config.errors import UserError
from youxu.config.userfiles import cli_type, out_dir_arg, out_file_arg
from youxu.drivers.mqtt_topics import check_site_id
from youxu.sim.progress import ProgressBar


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("sim", help="the household-load and EV simulator")
    ssub = sim.add_subparsers(dest="sim_command", required=True, parser_class=type(sim), metavar="SIMCOMMAND")

    p = ssub.add_parser("generate", help="write a scenario from the household-load and EV model")
    p.add_argument("--preset", default="small")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--piles", type=int)
    p.add_argument("--households", type=int)
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--season", choices=["summer", "winter"])
    p.add_argument("--penetration", type=float, help="EVs per household (0..1)")
    p.add_argument("--history-days", type=int, default=7,
                   help="days of household load before the start, the meter history the forecast learns from")
    p.add_argument("--out", required=True, type=out_file_arg)
    p.set_defaults(func=cmd_generate)

    p = ssub.add_parser("run", help="simulate a scenario with a strategy and write the outputs")
    p.add_argument("--scenario", required=True, type=Path)
    p.add_argument("--strategy", required=True)
    p.add_argument("--out", required=True, type=out_dir_arg)
    p.add_argument("--json", action="store_true", help="also print kpis.json to stdout (no progress bar)")
    p.add_argument("--chunk-days", type=float,
                   help="run as chunks of this many days in parallel processes (a long run; README: long runs "
                        "split in time)")
    p.add_argument("--warmup-hours", type=float, default=24.0, help="with --chunk-days: each chunk's warm-up")
    p.set_defaults(func=cmd_run)

    p = ssub.add_parser("serve", help="serve a scenario's meter and piles over Modbus TCP (and dispatch over MQTT)")
    p.add_argument("--scenario", required=True, type=Path)
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    p.add_argument("--modbus-port", type=int, default=5020)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--layout", choices=["units", "ports"], default="units",
                   help="piles as unit ids behind one port (default) or each on a port of its own")
    p.add_argument("--units-per-port", type=int,
                   help="with --layout units: at most this many piles behind a port, then the next port "
                        "(as RS-485 gateways of 8 to 32 devices; default: as many as unit ids allow)")
    p.add_argument("--mqtt", help="broker URL to publish the scenario's dispatch commands on")
    p.add_argument("--site-id", default="sim-site", type=cli_type(check_site_id))
    p.add_argument("--write-config", type=out_file_arg,
                   help="write a site config for `youxu run` pointing at these devices")
    p.add_argument("--out", type=out_dir_arg, help="write the simulator outputs here when the scenario ends")
    p.set_defaults(func=cmd_serve)

    p = ssub.add_parser("compare", help="run several strategies on one scenario and compare them")
    p.add_argument("--scenario", required=True, type=Path)
    p.add_argument("--strategies", required=True)
    p.add_argument("--out", required=True, type=out_dir_arg)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)

    p = ssub.add_parser("hosting-capacity", help="the largest EV fleet each strategy hosts without violations")
    p.add_argument("--preset", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--strategies", required=True)
    p.add_argument("--limit", default="kw", help="judge by the kW cap (kw, default) or by the transformer's "
                   "thermal limit (thermal: IEC 60076-7 hot-spot <= 98 °C, up to 1.5 per unit)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_hosting_capacity)


def _strategies(text: str) -> list[str]:
    from youxu.sim.engine import SIM_STRATEGIES

    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SIM_STRATEGIES]
    if bad or not names:
        raise UserError(f"--strategies: unknown {', '.join(bad) or '(none)'}; use {', '.join(SIM_STRATEGIES)}")
    return names


def cmd_generate(args: argparse.Namespace) -> int:
    from youxu.sim.generate import generate_scenario, preset_names
    from youxu.sim.scenario import save_scenario

    if args.preset not in preset_names():
        raise UserError(f"--preset: unknown {args.preset!r}; use one of {', '.join(preset_names())}")
    if not 0 <= args.history_days <= 28:
        raise UserError(f"--history-days: must be between 0 and 28 (got {args.history_days})")
    for name in ("piles", "households", "days"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            raise UserError(f"--{name}: must be positive (got {v})")
    if args.penetration is not None and not 0 <= args.penetration <= 3:
        raise UserError(f"--penetration: must be between 0 and 3 EVs per household (got {args.penetration})")
    sc = generate_scenario(args.preset, seed=args.seed, piles=args.piles, households=args.households,
                           days=args.days, season=args.season, penetration=args.penetration,
                           history_days=args.history_days)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_scenario(sc, args.out)
    print(f"wrote {args.out}: {sc.name}, {len(sc.piles)} piles, {len(sc.sessions)} sessions, "
          f"{sc.duration_s // 3600} h, {len(sc.dispatch)} dispatch commands")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from youxu.sim.engine import SIM_STRATEGIES
    from youxu.sim.outputs import run_and_write
    from youxu.sim.scenario import load_scenario

    if args.strategy not in SIM_STRATEGIES:
        raise UserError(f"--strategy: unknown {args.strategy!r}; use one of {', '.join(SIM_STRATEGIES)}")
    sc = load_scenario(args.scenario)
    bar = ProgressBar(f"{args.strategy:>12}", quiet=args.json or not sys.stderr.isatty())
    if args.chunk_days is not None:
        from youxu.sim.chunked import run_chunked
        from youxu.sim.outputs import write_outputs

        if args.chunk_days <= 0 or args.warmup_hours < 0:
            raise UserError("--chunk-days must be positive and --warmup-hours not negative")
        res = run_chunked(sc, args.strategy, round(args.chunk_days * 86400), round(args.warmup_hours * 3600),
                          progress=bar)
        kpis = write_outputs(args.out, res)
    else:
        _, kpis = run_and_write(sc, args.strategy, args.out, progress=bar)
    if args.json:
        print(json.dumps(kpis, ensure_ascii=False))
    else:
        print(f"{args.strategy}: delivered {kpis['energy_delivered_kwh']:.1f}/{kpis['energy_requested_kwh']:.1f} kWh, "
              f"peak {kpis['peak_total_kw']:.1f} kW, {kpis['limit_violation_steps']} violation steps, "
              f"cost {kpis['import_cost_yuan']:.0f} yuan -> {args.out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from youxu.sim.devices import MAX_UNITS_PER_PORT
    from youxu.sim.scenario import load_scenario
    from youxu.sim.serve import serve

    sc = load_scenario(args.scenario)
    if args.speed <= 0:
        raise UserError(f"--speed: must be positive (got {args.speed})")
    units_per_port = MAX_UNITS_PER_PORT if args.units_per_port is None else args.units_per_port
    if not 1 <= units_per_port <= MAX_UNITS_PER_PORT:
        raise UserError(f"--units-per-port: must be 1..{MAX_UNITS_PER_PORT} (got {units_per_port})")
    return serve(sc, speed=args.speed, host=args.host, port=args.modbus_port, layout=args.layout,
                 mqtt_url=args.mqtt, site_id=args.site_id, write_config=args.write_config, out=args.out,
                 units_per_port=units_per_port)


def cmd_compare(args: argparse.Namespace) -> int:
    from youxu.sim.compare import compare

    return compare(args.scenario, _strategies(args.strategies), args.out, args.json)


def cmd_hosting_capacity(args: argparse.Namespace) -> int:
    from youxu.sim.hosting import hosting_capacity_cli

    return hosting_capacity_cli(args.preset, args.seed, _strategies(args.strategies), args.json, args.limit)
