"""A pile behind an OCPP charge point connector: the same capability as a Modbus pile (a
reading in, a power limit out), from what the central system hears and through charging
profiles.

Reads never touch the network: they report the connector's state as its messages left it. A
charge point that is not connected, or that rejects charging profiles, reads as a device fault,
so the loop keeps that pile's full power in reserve. While a transaction runs without recent
meter values the pile is taken to draw the limit it was given (what it may draw), not zero.

Writes return at once: the profile is sent by a task of its own (a slow charge point never
delays a tick), the newest limit wins, and a limit is sent again only when it moved by a
meaningful step or its validity is running out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass

from youxu.drivers.ocpp_central import CentralSystem
from youxu.drivers.pile import PileReading
from youxu.drivers.transport import DeviceError

log = logging.getLogger(__name__)

STEP_A = 0.5  # a limit that moves less than this is not sent again (until its validity runs low)
RENEW_AT = 0.5  # share of the validity after which a limit is sent again anyway


@dataclass
class SentLimit:
    amps: float
    valid_to_s: float
    sent_at_s: float
    boots: int  # the charge point's boot count when it took the limit


class OcppPile:
    def __init__(self, central: CentralSystem, cp_id: str, connector: int = 1, voltage_v: float = 230.0,
                 n_phases: int = 1, min_a: float = 6.0, max_a: float = 32.0, timeout_s: float = 0.5) -> None:
        self.central = central
        self.cp_id = cp_id
        self.connector = connector
        self.voltage_v = voltage_v
        self.n_phases = n_phases
        self.min_a = min_a
        self.max_a = max_a
        self.timeout_s = timeout_s
        self.sent: SentLimit | None = None
        self._want: float | None = None
        self._sender: asyncio.Task | None = None

    @property
    def label(self) -> str:
        return f"ocpp://{self.cp_id}/{self.connector}"

    def kw_to_a(self, kw: float) -> float:
        return kw * 1000.0 / (self.voltage_v * self.n_phases)

    def a_to_kw(self, amps: float) -> float:
        return amps * self.voltage_v * self.n_phases / 1000.0

    @property
    def validity_s(self) -> float:
        return self.central.settings.limit_validity_s

    @property
    def refresh_s(self) -> float:
        """How often the loop should hand this pile its limit again, so that it never lapses."""
        return self.validity_s * RENEW_AT / 2

    async def read(self, timeout_s: float | None = None) -> PileReading:
        st = self.central.states[self.cp_id]
        if not st.connected:
            raise DeviceError(f"charge point {self.cp_id} is not connected")
        if st.profiles_rejected:
            raise DeviceError(f"charge point {self.cp_id} rejects charging profiles")
        c = st.connector(self.connector)
        now = self.central.clock.now()
        limit_a = self.sent.amps if self.in_force(now) and self.sent is not None else None
        power = c.power_kw
        stale = now - c.power_at_s > 3 * self.central.settings.sample_interval_s
        if c.status == "charging" and (power is None or stale):
            power = self.a_to_kw(limit_a if limit_a is not None else self.max_a)  # what it may draw
        return PileReading(status=c.status, power_kw=float(power or 0.0), energy_kwh=c.session_energy_kwh,
                           setpoint_kw=None if limit_a is None else self.a_to_kw(limit_a), setpoint_a=limit_a,
                           soc=c.soc)

    def quantise(self, kw: float) -> float:
        """The per-phase current for a power limit: 0 pauses; never above what was allowed,
        the pile's minimum excepted."""
        if kw <= 0:
            return 0.0
        amps = math.floor(self.kw_to_a(kw) * 10) / 10
        return min(max(amps, self.min_a), self.max_a)

    def in_force(self, now_s: float) -> bool:
        """The last limit sent still holds: not expired, and the charge point has not booted since."""
        s = self.sent
        return s is not None and s.valid_to_s > now_s and s.boots == self.central.states[self.cp_id].boots

    async def write_setpoint_kw(self, kw: float, timeout_s: float | None = None) -> None:
        """Queue the limit for the charge point; raises DeviceError while it is not connected (the loop
        then writes it again on the next tick, as for a Modbus pile that did not answer)."""
        st = self.central.states[self.cp_id]
        if not st.connected or self.central.session(self.cp_id) is None:
            raise DeviceError(f"charge point {self.cp_id} is not connected")
        amps = self.quantise(kw)
        now = self.central.clock.now()
        s = self.sent
        if s is not None and self.in_force(now) and abs(s.amps - amps) < STEP_A and (amps == 0) == (s.amps == 0) \
                and now - s.sent_at_s < self.validity_s * RENEW_AT:
            return
        self._want = amps
        if self._sender is None or self._sender.done():
            self._sender = self.central.spawn(self._send())

    async def _send(self) -> None:
        while self._want is not None:
            amps, self._want = self._want, None
            session = self.central.session(self.cp_id)
            if session is None:
                return
            now = self.central.clock.now()
            valid_to = now + self.validity_s
            boots = self.central.states[self.cp_id].boots
            try:
                status = await session.set_limit(self.connector, amps, valid_to)
            except (TimeoutError, OSError, ConnectionError) as exc:
                log.warning("%s: limit %.1f A not sent (%s)", self.label, amps, exc or type(exc).__name__)
                return
            except Exception as exc:  # the connection closed mid-call
                log.warning("%s: limit %.1f A not sent (%s)", self.label, amps, exc or type(exc).__name__)
                return
            if status == "Accepted":
                self.sent = SentLimit(amps, valid_to, now, boots)

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until the newest limit has been sent."""
        if self._sender is not None and not self._sender.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._sender), timeout_s)

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
