"""Opening a configured device on its transport: Modbus (TCP or RTU) or DL/T 645 (serial or TCP)."""

from __future__ import annotations

import logging

from youxu.drivers.dlt645_link import Dlt645Link
from youxu.drivers.dlt645_meter import Dlt645Meter
from youxu.drivers.meter import Meter, ModbusMeter
from youxu.drivers.ocpp_central import CentralSystem
from youxu.drivers.ocpp_pile import OcppPile
from youxu.drivers.pile import ModbusPile, Pile
from youxu.drivers.profiles import Profile
from youxu.drivers.transport import BusPool, parse_device_url, shared_endpoint

log = logging.getLogger(__name__)


class LinePool:
    """A site's transports, one per endpoint: Modbus buses and DL/T 645 lines."""

    def __init__(self, buses: BusPool | None = None) -> None:
        self.buses = buses or BusPool()
        self._dlt645: dict[str, Dlt645Link] = {}

    def dlt645(self, url: str, timeout_s: float = 0.5) -> Dlt645Link:
        return shared_endpoint(self._dlt645, url, lambda ep: Dlt645Link(ep, timeout_s=timeout_s))

    def close(self) -> None:
        self.buses.close()
        for link in self._dlt645.values():
            link.close()


def open_pile(pool: LinePool, prof: Profile, url: str, *, unit: int | None = None, voltage_v: float = 230.0,
              n_phases: int = 1, min_a: float = 6.0, max_a: float = 32.0, timeout_s: float = 0.5,
              central: CentralSystem | None = None) -> Pile:
    """The pile behind `url` through its profile: a Modbus unit, or an OCPP charge point connector."""
    ep = parse_device_url(url)
    prof.check_endpoint(ep.scheme, ep.protocol)
    if prof.protocol == "ocpp":
        if central is None:
            raise ValueError(f"{url}: OCPP piles need the site's OCPP central system")
        return OcppPile(central, ep.charge_point, ep.connector, voltage_v, n_phases, min_a, max_a, timeout_s)
    return ModbusPile(prof, pool.buses.get(url, timeout_s), prof.default_unit if unit is None else unit, voltage_v,
                      n_phases, timeout_s)


def open_meter(pool: LinePool, prof: Profile, url: str, *, unit: int | None = None, address: str | None = None,
               timeout_s: float = 0.5) -> Meter:
    """The meter behind `url` through its profile: a Modbus unit, or a DL/T 645 meter by its address."""
    ep = parse_device_url(url)
    prof.check_endpoint(ep.scheme, ep.protocol)
    if prof.protocol == "dlt645-2007":
        if address is None:
            raise ValueError(f"profile {prof.name} needs the meter's 12-digit address")
        return Dlt645Meter(prof, pool.dlt645(url, timeout_s), address, timeout_s)
    return ModbusMeter(prof, pool.buses.get(url, timeout_s), prof.default_unit if unit is None else unit, timeout_s)
