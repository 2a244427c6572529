"""What `youxu check-config` warns about beyond the schema: how each pile falls back on its own."""

from __future__ import annotations

from youxu.controller.siteconfig import PileSection, SiteConfig
from youxu.drivers.profiles import load_profile


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
