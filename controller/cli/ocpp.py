"""`youxu ocpp status --config site.yaml`: the charge points the running daemon's central system
knows, from its `/ocpp` page on `metrics.listen`."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from pathlib import Path

from youxu.config.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ocpp", help="OCPP charge points of a running daemon")
    osub = p.add_subparsers(dest="ocpp_command", required=True, parser_class=type(p), metavar="ACTION")
    s = osub.add_parser("status", help="which charge points are connected, their last message, rate unit, failsafe")
    s.add_argument("--config", required=True, type=Path, help="the site config the daemon runs with")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the daemon")
    s.set_defaults(func=cmd_status)


def status_url(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/ocpp"


def cmd_status(args: argparse.Namespace) -> int:
    from youxu.controller.siteconfig import load_site_config

    cfg = load_site_config(args.config)
    if cfg.ocpp is None:
        raise UserError(f"{args.config}: the site has no ocpp: section (no OCPP charge points)")
    if not cfg.metrics.listen:
        raise UserError(f"{args.config}: metrics.listen is off; the daemon shows its charge points there")
    url = status_url(cfg.metrics.listen)
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as r:
            body = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"no answer from the daemon at {url} ({reason}): is `youxu run` running?") from None
    cps = body.get("charge_points", [])
    if args.json:
        print(json.dumps(cps))
        return 0
    for cp in cps:
        seen = "never" if cp["last_message_s_ago"] is None else f"{cp['last_message_s_ago']:g} s ago"
        state = "connected" if cp["connected"] else "not connected"
        failsafe = "failsafe set" if cp["failsafe_set"] else "NO failsafe"
        rejected = ", REJECTS profiles" if cp["profiles_rejected"] else ""
        conns = "  ".join(f"#{n} {c['status']} {c['power_kw'] if c['power_kw'] is not None else '-'} kW"
                          for n, c in cp["connectors"].items())
        print(f"{cp['id']:<16} {state:<13} OCPP {cp['version'] or '-':<5} last message {seen}, limits in "
              f"{cp['rate_unit']}, {failsafe}{rejected}  {conns}")
    return 0
