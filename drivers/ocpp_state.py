"""What the central system knows of each charge point connector, as its messages report it.

Pure bookkeeping, kept across reconnects (a charge point that comes back after a network
outage keeps its transaction and readings): status, the latest meter values, the running
transaction and the limits in force. The OCPP sessions write it; the piles read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# OCPP 1.6 StatusNotification / 2.0.1 ConnectorStatus -> the pile status of the contract
STATUS_16 = {
    "Available": "available", "Preparing": "connected", "Charging": "charging", "SuspendedEV": "connected",
    "SuspendedEVSE": "connected", "Finishing": "connected", "Reserved": "available", "Unavailable": "fault",
    "Faulted": "fault",
}
STATUS_201 = {"Available": "available", "Occupied": "connected", "Reserved": "available", "Unavailable": "fault",
              "Faulted": "fault"}
ENERGY_UNITS = {"Wh": 1e-3, "kWh": 1.0}
POWER_UNITS = {"W": 1e-3, "kW": 1.0}


@dataclass
class ConnectorState:
    status: str = "unknown"
    power_kw: float | None = None
    power_at_s: float = -math.inf  # when the latest power reading arrived
    energy_register_kwh: float | None = None  # the charge point's energy counter
    energy_start_kwh: float | None = None  # the counter when the transaction started
    current_a: float | None = None
    soc: float | None = None
    transaction_id: int | str | None = None
    charging: bool = False  # 2.0.1: ChargingState Charging (1.6 has it in the status)

    @property
    def session_energy_kwh(self) -> float | None:
        if self.energy_register_kwh is None:
            return None
        start = self.energy_start_kwh if self.energy_start_kwh is not None else self.energy_register_kwh
        return max(0.0, self.energy_register_kwh - start)


@dataclass
class ChargePointState:
    id: str
    version: str = ""
    vendor: str = ""
    model: str = ""
    connected: bool = False
    booted: bool = False
    boots: int = 0  # BootNotifications seen: a charge point that booted again may have lost its profiles
    last_seen_s: float = -math.inf
    rate_unit: str = "A"  # the unit its charging schedules take: "A" or "W"
    profiles_rejected: bool = False
    failsafe_set: bool = False
    connectors: dict[int, ConnectorState] = field(default_factory=dict)

    def report(self, now_s: float) -> dict:
        """For commissioning (`youxu ocpp status`): plain JSON, copied so another thread may read it."""
        return {
            "id": self.id, "connected": self.connected, "version": self.version or None,
            "vendor": self.vendor or None, "model": self.model or None,
            "last_message_s_ago": None if self.last_seen_s == -math.inf else round(now_s - self.last_seen_s, 1),
            "rate_unit": self.rate_unit, "failsafe_set": self.failsafe_set,
            "profiles_rejected": self.profiles_rejected,
            "connectors": {str(n): {"status": c.status, "power_kw": c.power_kw, "transaction": c.transaction_id,
                                    "energy_kwh": c.session_energy_kwh}
                           for n, c in list(self.connectors.items())},
        }

    def connector(self, n: int) -> ConnectorState:
        c = self.connectors.get(n)
        if c is None:
            c = self.connectors[n] = ConnectorState()
        return c


def apply_sampled_values(c: ConnectorState, samples: list[dict], now_s: float) -> None:
    """Meter values (1.6 `sampled_value` / 2.0.1 `sampled_value`, snake_case keys) into the state."""
    total_kw: float | None = None
    phase_kw: list[float] = []
    currents: list[float] = []
    for s in samples:
        measurand = s.get("measurand") or "Energy.Active.Import.Register"
        unit = s.get("unit") or (s.get("unit_of_measure") or {}).get("unit")
        try:
            value = float(s.get("value", ""))
        except (TypeError, ValueError):
            continue
        if not math.isfinite(value):
            continue
        phase = s.get("phase")
        if measurand == "Energy.Active.Import.Register" and phase is None:
            c.energy_register_kwh = value * ENERGY_UNITS.get(unit or "Wh", 1e-3)
        elif measurand == "Power.Active.Import":
            kw = value * POWER_UNITS.get(unit or "W", 1e-3)
            if phase is None:
                total_kw = kw
            elif not str(phase).startswith("N"):
                phase_kw.append(kw)
        elif measurand == "Current.Import" and phase is not None:
            currents.append(value)
        elif measurand == "SoC":
            c.soc = value / 100.0 if 0 <= value <= 100 else None
    power = total_kw if total_kw is not None else (sum(phase_kw) if phase_kw else None)
    if power is not None:
        c.power_kw, c.power_at_s = power, now_s
    if currents:
        c.current_a = max(currents)


@dataclass(frozen=True)
class ChargePointSpec:
    """What the site config says of one charge point (its piles share it)."""

    id: str
    safe_a: float
    voltage_v: float = 230.0
    n_phases: int = 1


@dataclass(frozen=True)
class CentralSettings:
    host: str = "0.0.0.0"
    port: int = 8887
    versions: tuple[str, ...] = ("1.6", "2.0.1")
    security_profile: int = 1
    passwords: dict[str, str] | None = None  # charge point id -> password (profiles 1 and 2)
    cert_file: str | None = None
    key_file: str | None = None
    heartbeat_s: int = 60
    sample_interval_s: int = 10  # MeterValues while charging
    limit_validity_s: float = 180.0  # how long a controlling profile stays valid without renewal
    response_timeout_s: float = 10.0
