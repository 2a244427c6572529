"""What `youxu check-config` checks beyond the schema: the files the daemon opens at start-up (an
error: `youxu run` would refuse them), how each pile falls back on its own and limits that cannot
be what was meant (warnings)."""

from __future__ import annotations

from youxu.config.errors import UserError
from youxu.controller.siteconfig import PileSection, SiteConfig
from youxu.drivers.mqtt_link import MqttSettings, tls_context
from youxu.drivers.mqtt_topics import parse_broker_url
from youxu.drivers.profiles import load_profile
from youxu.drivers.transport import parse_device_url


def startup_problems(cfg: SiteConfig) -> list[str]:
    """What `youxu run` would refuse at start-up in the files the config names (the HMAC key, the
    broker password and TLS files, the OCPP passwords and certificate), read the way the daemon
    reads them; empty when it can start."""
    problems: list[str] = []
    o = cfg.ocpp
    if o is not None:
        ids = sorted({parse_device_url(p.url).charge_point for p in cfg.piles if p.url.startswith("ocpp:")})
        for check in (lambda: o.passwords(ids), o.check_tls):
            try:
                check()
            except UserError as exc:
                problems.append(str(exc))
    m = cfg.mqtt
    if m is None:
        return problems
    try:
        m.hmac_key()
    except UserError as exc:
        problems.append(str(exc))
    try:
        settings = MqttSettings.from_section(m, cfg.site.id)
        if parse_broker_url(m.url).tls:
            tls_context(settings)
    except UserError as exc:
        problems.append(str(exc))
    return problems


def limit_warnings(cfg: SiteConfig) -> list[str]:
    """Phase limits that cannot be what was meant: one phase of a transformer carries a third of its
    rating (with the same 20 % tolerance the import limit has), and a phase limit above the import
    limit never binds. Phases with the same limit share one line."""
    t = cfg.transformer
    if not t.phase_limit_kw:
        return []
    per_phase_kw = 1.2 * t.rated_kva / 3.0
    by_limit: dict[float, list[str]] = {}
    for phase, limit_kw in sorted(t.phase_limit_kw.items()):
        if limit_kw > per_phase_kw:
            by_limit.setdefault(limit_kw, []).append(phase)
    out = []
    for limit_kw, phases in by_limit.items():
        where = f"transformer.phase_limit_kw.{phases[0]}" if len(phases) == 1 else \
            f"transformer.phase_limit_kw ({', '.join(phases)})"
        if limit_kw > t.import_limit_kw:
            out.append(f"{where}: {limit_kw:g} kW is above the import limit ({t.import_limit_kw:g} kW) and "
                       f"never binds; one phase carries about a third of rated_kva {t.rated_kva:g}")
        else:
            out.append(f"{where}: {limit_kw:g} kW is more than 120 % of a third of rated_kva {t.rated_kva:g} "
                       f"({per_phase_kw:.0f} kW); check the phase limits")
    return out


def failsafe_warnings(cfg: SiteConfig) -> list[str]:
    """What `youxu check-config` should warn about: piles that cannot fall back on their own,
    piles whose safe current is set outside youxu, and a failsafe total the transformer
    cannot carry. Piles with the same profile and the same problem share one line."""
    groups: dict[tuple[str, str], list[str]] = {}
    total_kw = 0.0

    def warn(i: int, p: PileSection, message: str) -> None:
        groups.setdefault((p.profile, message), []).append(f"piles[{i}] {p.id}")

    for i, p in enumerate(cfg.piles):
        fs = load_profile(p.profile).failsafe
        total_kw += p.safe_kw
        if fs is None:
            warn(i, p, "the pile has no failsafe registers; if youxu stops it keeps its last setpoint "
                       "(configure a fallback current in the pile itself)")
            continue
        if p.failsafe_a is None:
            warn(i, p, f"failsafe_a not set; the pile falls back to min_a {p.min_a:g} A")
        if fs.current is None:
            warn(i, p, "the pile's fallback value is not readable; check it in the vendor's tool")
        elif not fs.current.writable:
            warn(i, p, f"the safe current is set in the vendor's installer tool, not by youxu; set it to "
                       f"{p.safe_a:g} A or less (youxu checks it at start-up)")
        if fs.keepalive is None and fs.timeout is None:
            warn(i, p, "no communication timeout: the pile may never fall back")
        if 0 < p.safe_a < p.min_a:
            warn(i, p, f"failsafe_a {p.failsafe_a:g} A is below min_a {p.min_a:g} A; cars may stop")
    out = []
    for (profile, message), where in groups.items():
        if len(where) == 1:
            out.append(f"{where[0]} ({profile}): {message}")
        else:
            shown = ", ".join(w.split(" ", 1)[1] for w in where[:6]) + (", ..." if len(where) > 6 else "")
            out.append(f"{len(where)} {profile} piles ({shown}): {message}")
    limit = cfg.transformer.import_limit_kw - cfg.transformer.margin_kw
    if total_kw > limit:
        out.append(f"piles: failsafe total {total_kw:.1f} kW is above the transformer's import limit less margin "
                   f"({limit:.1f} kW) even before household load; lower failsafe_a")
    return out
