"""The site's OCPP central system, from its config: the charge points its piles name, their
safe currents and passwords."""

from __future__ import annotations

from youxu.controller.siteconfig import SiteConfig
from youxu.drivers.clock import Clock
from youxu.drivers.ocpp_central import CentralSettings, CentralSystem, ChargePointSpec, EventFn
from youxu.drivers.transport import parse_device_url


def ocpp_charge_points(cfg: SiteConfig) -> list[ChargePointSpec]:
    """One spec per charge point; its failsafe (one default profile for all its connectors) is the
    lowest safe current of its piles."""
    specs: dict[str, ChargePointSpec] = {}
    for p in cfg.piles:
        ep = parse_device_url(p.url)
        if ep.protocol != "ocpp":
            continue
        old = specs.get(ep.charge_point)
        safe = p.safe_a if old is None else min(old.safe_a, p.safe_a)
        specs[ep.charge_point] = ChargePointSpec(ep.charge_point, safe, p.voltage_v, p.n_phases)
    return list(specs.values())


def build_central(cfg: SiteConfig, clock: Clock, on_event: EventFn | None = None) -> CentralSystem | None:
    cps = ocpp_charge_points(cfg)
    if not cps:
        return None
    o = cfg.ocpp
    assert o is not None  # the config validator asks for the section when a pile speaks OCPP
    passwords = o.passwords([cp.id for cp in cps])
    o.check_tls()
    host, port = o.host_port
    settings = CentralSettings(host=host, port=port, versions=tuple(o.versions), security_profile=o.security_profile,
                               passwords=passwords, cert_file=str(o.cert_file) if o.cert_file else None,
                               key_file=str(o.key_file) if o.key_file else None, heartbeat_s=o.heartbeat_s,
                               sample_interval_s=o.sample_interval_s, limit_validity_s=o.limit_validity_s)
    return CentralSystem(settings, cps, clock, on_event)
