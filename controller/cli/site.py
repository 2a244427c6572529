"""`youxu run` and `youxu check-config`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from youxu.config.errors import UserError

if TYPE_CHECKING:
    from youxu.controller.siteconfig import SiteConfig, TransformerSection


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the edge daemon for a site until SIGTERM/SIGINT")
    p.add_argument("--config", required=True, type=Path, help="site config (YAML)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a site config and print a summary")
    p.add_argument("file", type=Path)
    p.add_argument("--skip-files", action="store_true",
                   help="do not open the key, password and TLS files the config names (a config written "
                        "for another machine); without it they must be there, as `youxu run` needs them")
    p.set_defaults(func=cmd_check_config)


def load_runnable(path: Path, check_files: bool = True) -> SiteConfig:
    """The site config at `path` if the daemon can run it: valid, and (with `check_files`) the files
    it names readable as the daemon reads them; UserError listing every problem otherwise."""
    from youxu.config.errors import format_problems
    from youxu.controller.site_checks import startup_problems
    from youxu.controller.siteconfig import load_site_config

    cfg = load_site_config(path)
    problems = startup_problems(cfg) if check_files else []
    if problems:
        raise UserError(format_problems(str(path), problems))
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    from youxu.controller.daemon import run_site

    cfg = load_runnable(args.config)
    import asyncio

    asyncio.run(run_site(cfg))
    return 0


def config_summary(cfg) -> str:
    t = cfg.transformer
    phases: dict[str, int] = {}
    for p in cfg.piles:
        phases[p.phase] = phases.get(p.phase, 0) + 1
    rated = sum(p.rated_kw for p in cfg.piles)
    v2g = sum(1 for p in cfg.piles if p.v2g)
    lines = [
        f"site {cfg.site.id} ({cfg.site.timezone}): OK",
        f"  transformer {t.rated_kva:g} kVA, import limit {t.import_limit_kw:g} kW (margin {t.margin_kw:g} kW)"
        + (f", phase limits {dict(t.phase_limit_kw)}" if t.phase_limit_kw else ""),
        f"  meter {cfg.meter.profile} at {cfg.meter.url} "
        + (f"address {cfg.meter.address}" if cfg.meter.address else f"unit {cfg.meter.unit}"),
        *_thermal_lines(t),
        f"  {len(cfg.piles)} piles, {rated:.1f} kW rated in all, {v2g} V2G; by phase: "
        + ", ".join(f"{k} {v}" for k, v in sorted(phases.items())),
        f"  control: period {cfg.control.period_s:g} s, budget {cfg.control.budget_ms:g} ms, strategy "
        f"{cfg.control.strategy}, horizon {cfg.control.horizon_s // 3600} h in {cfg.control.step_s // 60} min steps",
        f"  mqtt: {cfg.mqtt.url if cfg.mqtt else 'none (transformer limits only)'}",
        f"  storage: {cfg.storage.database_url()}",
    ]
    return "\n".join(lines)


def _thermal_lines(t: TransformerSection) -> list[str]:
    th = t.thermal
    if th is None:
        return []
    above = f", above rated up to {th.above_rated_max_kw:g} kW" if th.allow_above_rated else ""
    return [f"  thermal {th.model}: losses {th.load_loss_w:g} W load / {th.no_load_loss_w:g} W no-load, hot-spot "
            f"<= {th.hotspot_max_c:g} °C, top-oil <= {th.top_oil_max_c:g} °C{above}; ambient {th.ambient.source}"]


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_runnable(args.file, check_files=not args.skip_files)
    except UserError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    print(config_summary(cfg))
    from youxu.controller.site_checks import failsafe_warnings, limit_warnings

    for w in limit_warnings(cfg) + failsafe_warnings(cfg):
        print(f"  warning: {w}")
    return 0

