"""One connected charge point, in OCPP 1.6J or 2.0.1 (the `ocpp` package's `ChargePoint`).

Both versions do the same things in their own words: accept the boot, learn the unit the charge
point's schedules take, ask for meter values while charging, set the failsafe default profile,
keep each connector's status, transaction and readings in its `ConnectorState`, and send the
controlling limit when a pile asks (`set_limit`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from youxu.drivers.clock import Clock
from youxu.drivers.ocpp_state import (
    STATUS_16,
    STATUS_201,
    CentralSettings,
    ChargePointSpec,
    ChargePointState,
    ConnectorState,
    apply_sampled_values,
)

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

log = logging.getLogger(__name__)

FAILSAFE_PROFILE_ID = 1
CONTROL_PROFILE_ID = 100  # + connector: one controlling profile per connector, replaced on every send
MEASURANDS = "Power.Active.Import,Energy.Active.Import.Register,Current.Import,SoC"
_tx_ids = itertools.count(int(datetime.now(UTC).timestamp()) % 1_000_000)


def rfc3339(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def rfc3339_to_s(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class CentralSystem(Protocol):
    """What a session needs of the central system it belongs to (`ocpp_central.CentralSystem`)."""

    settings: CentralSettings
    clock: Clock
    on_event: Callable[..., None]

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task: ...


class Session:
    """What the central system and the piles use of a connected charge point."""

    version = ""

    def __init__(self, cp_id: str, connection: ServerConnection, central: CentralSystem, state: ChargePointState,
                 spec: ChargePointSpec) -> None:
        self.connection = connection
        self.central = central
        self.state = state
        self.spec = spec

    def limit_value(self, amps: float) -> tuple[str, float]:
        """(unit, value) of a per-phase current limit in the unit the charge point takes."""
        if self.state.rate_unit == "W":
            return "W", round(amps * self.spec.voltage_v * self.spec.n_phases, 1)
        return "A", round(amps, 1)

    def seen(self) -> None:
        self.state.last_seen_s = self.central.clock.now()

    async def set_limit(self, connector: int, amps: float, valid_to_s: float) -> str:
        raise NotImplementedError

    async def after_boot(self) -> None:
        """Learn the rate unit, ask for meter values, set the failsafe (in a task of its own)."""
        try:
            await self.configure()
            status = await self.set_failsafe()
        except (TimeoutError, OSError) as exc:
            log.warning("charge point %s: setting it up failed (%s); retried at its next boot", self.state.id, exc)
            return
        self.state.failsafe_set = status == "Accepted"
        if not self.state.failsafe_set:
            self.central.on_event("ocpp_failsafe_refused", f"charge point {self.state.id} refuses the failsafe "
                                  f"profile ({status}); it keeps its last limit if youxu stops",
                                  charge_point=self.state.id, status=status)

    async def configure(self) -> None:
        raise NotImplementedError

    async def set_failsafe(self) -> str:
        raise NotImplementedError

    def note_profile_status(self, status: str) -> None:
        rejected = status != "Accepted"
        if rejected and not self.state.profiles_rejected:
            self.central.on_event("ocpp_profile_rejected", f"charge point {self.state.id} rejects charging profiles "
                                  f"({status}): youxu keeps its full power in reserve", charge_point=self.state.id,
                                  status=status)
        elif not rejected and self.state.profiles_rejected:
            self.central.on_event("ocpp_profile_accepted", f"charge point {self.state.id} takes charging profiles "
                                  "again", charge_point=self.state.id)
        self.state.profiles_rejected = rejected


# ---- OCPP 1.6J ---------------------------------------------------------------------------------
class Session16(Session, ChargePoint16):
    version = "1.6"

    def __init__(self, cp_id: str, connection: ServerConnection, central: CentralSystem, state: ChargePointState,
                 spec: ChargePointSpec) -> None:
        Session.__init__(self, cp_id, connection, central, state, spec)
        ChargePoint16.__init__(self, cp_id, connection, response_timeout=central.settings.response_timeout_s)

    @on(Action16.boot_notification)
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> result16.BootNotification:
        self.seen()
        self.state.vendor, self.state.model, self.state.booted = charge_point_vendor, charge_point_model, True
        self.state.boots += 1
        self.central.spawn(self.after_boot())
        return result16.BootNotification(current_time=rfc3339(self.central.clock.now()),
                                         interval=self.central.settings.heartbeat_s, status="Accepted")

    @on(Action16.heartbeat)
    def on_heartbeat(self, **_: Any) -> result16.Heartbeat:
        self.seen()
        return result16.Heartbeat(current_time=rfc3339(self.central.clock.now()))

    @on(Action16.authorize)
    def on_authorize(self, id_tag: str, **_: Any) -> result16.Authorize:
        self.seen()
        return result16.Authorize(id_tag_info={"status": "Accepted"})

    @on(Action16.status_notification)
    def on_status(self, connector_id: int, status: str, error_code: str = "NoError", **_: Any
                  ) -> result16.StatusNotification:
        self.seen()
        if connector_id > 0:
            c = self.state.connector(connector_id)
            c.status = STATUS_16.get(status, "unknown")
            c.charging = status == "Charging"
        return result16.StatusNotification()

    @on(Action16.start_transaction)
    def on_start(self, connector_id: int, meter_start: int, **_: Any) -> result16.StartTransaction:
        self.seen()
        c = self.state.connector(connector_id)
        c.transaction_id = next(_tx_ids)
        c.energy_start_kwh = c.energy_register_kwh = meter_start / 1000.0
        return result16.StartTransaction(transaction_id=int(c.transaction_id), id_tag_info={"status": "Accepted"})

    @on(Action16.stop_transaction)
    def on_stop(self, transaction_id: int, meter_stop: int, **_: Any) -> result16.StopTransaction:
        self.seen()
        for c in self.state.connectors.values():
            if c.transaction_id == transaction_id:
                c.energy_register_kwh = meter_stop / 1000.0
                c.transaction_id, c.power_kw, c.charging = None, 0.0, False
                c.power_at_s = self.central.clock.now()
        return result16.StopTransaction(id_tag_info={"status": "Accepted"})

    @on(Action16.meter_values)
    def on_meter_values(self, connector_id: int, meter_value: list[dict], **_: Any) -> result16.MeterValues:
        self.seen()
        if connector_id > 0:
            c = self.state.connector(connector_id)
            for mv in meter_value:
                apply_sampled_values(c, mv.get("sampled_value", []), self.central.clock.now())
        return result16.MeterValues()

    @on(Action16.data_transfer)
    def on_data_transfer(self, **_: Any) -> result16.DataTransfer:
        return result16.DataTransfer(status="UnknownVendorId")

    async def configure(self) -> None:
        conf = await self.call(call16.GetConfiguration(key=["ChargingScheduleAllowedChargingRateUnit"]))
        for kv in (getattr(conf, "configuration_key", None) or []):
            if kv.get("key") == "ChargingScheduleAllowedChargingRateUnit":
                units = str(kv.get("value", "Current"))
                self.state.rate_unit = "A" if "Current" in units else "W"
        s = self.central.settings
        for key, value in (("MeterValueSampleInterval", str(s.sample_interval_s)),
                           ("MeterValuesSampledData", MEASURANDS)):
            await self.call(call16.ChangeConfiguration(key=key, value=value))

    def _profile(self, profile_id: int, stack: int, purpose: str, amps: float, valid_to_s: float | None,
                 transaction_id: int | str | None = None) -> dict:
        unit, value = self.limit_value(amps)
        profile: dict[str, Any] = {
            "chargingProfileId": profile_id, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": unit, "chargingSchedulePeriod": [{"startPeriod": 0,
                                                                                       "limit": value}]},
        }
        if valid_to_s is not None:
            profile["validTo"] = rfc3339(valid_to_s)
        if transaction_id is not None:
            profile["transactionId"] = int(transaction_id)
        return profile

    async def set_failsafe(self) -> str:
        profile = self._profile(FAILSAFE_PROFILE_ID, 0, "TxDefaultProfile", self.spec.safe_a, None)
        r = await self.call(call16.SetChargingProfile(connector_id=0, cs_charging_profiles=profile))
        return str(getattr(r, "status", "Rejected"))

    async def set_limit(self, connector: int, amps: float, valid_to_s: float) -> str:
        c: ConnectorState = self.state.connector(connector)
        if c.transaction_id is not None:
            profile = self._profile(CONTROL_PROFILE_ID + connector, 1, "TxProfile", amps, valid_to_s,
                                    c.transaction_id)
        else:
            profile = self._profile(CONTROL_PROFILE_ID + connector, 1, "TxDefaultProfile", amps, valid_to_s)
        r = await self.call(call16.SetChargingProfile(connector_id=connector, cs_charging_profiles=profile))
        status = str(getattr(r, "status", "Rejected"))
        self.note_profile_status(status)
        return status


# ---- OCPP 2.0.1 --------------------------------------------------------------------------------
class Session201(Session, ChargePoint201):
    version = "2.0.1"

    def __init__(self, cp_id: str, connection: ServerConnection, central: CentralSystem, state: ChargePointState,
                 spec: ChargePointSpec) -> None:
        Session.__init__(self, cp_id, connection, central, state, spec)
        ChargePoint201.__init__(self, cp_id, connection, response_timeout=central.settings.response_timeout_s)

    @on(Action201.boot_notification)
    def on_boot(self, charging_station: dict, reason: str, **_: Any) -> result201.BootNotification:
        self.seen()
        self.state.vendor = str(charging_station.get("vendor_name", ""))
        self.state.model = str(charging_station.get("model", ""))
        self.state.booted = True
        self.state.boots += 1
        self.central.spawn(self.after_boot())
        return result201.BootNotification(current_time=rfc3339(self.central.clock.now()),
                                          interval=self.central.settings.heartbeat_s, status="Accepted")

    @on(Action201.heartbeat)
    def on_heartbeat(self, **_: Any) -> result201.Heartbeat:
        self.seen()
        return result201.Heartbeat(current_time=rfc3339(self.central.clock.now()))

    @on(Action201.authorize)
    def on_authorize(self, id_token: dict, **_: Any) -> result201.Authorize:
        self.seen()
        return result201.Authorize(id_token_info={"status": "Accepted"})

    @on(Action201.status_notification)
    def on_status(self, connector_status: str, evse_id: int, **_: Any) -> result201.StatusNotification:
        self.seen()
        if evse_id > 0:
            c = self.state.connector(evse_id)
            status = STATUS_201.get(connector_status, "unknown")
            c.status = "charging" if status == "connected" and c.charging else status
        return result201.StatusNotification()

    @on(Action201.transaction_event)
    def on_transaction_event(self, event_type: str, transaction_info: dict, evse: dict | None = None,
                             meter_value: list[dict] | None = None, id_token: dict | None = None,
                             **_: Any) -> result201.TransactionEvent:
        self.seen()
        now = self.central.clock.now()
        evse_id = int((evse or {}).get("id", 1))
        c = self.state.connector(evse_id)
        state = transaction_info.get("charging_state")
        if event_type == "Started" or (c.transaction_id is None and event_type == "Updated"):
            c.transaction_id = str(transaction_info.get("transaction_id"))
            c.energy_start_kwh = None
        for mv in meter_value or []:
            apply_sampled_values(c, mv.get("sampled_value", []), now)
            if c.energy_start_kwh is None and c.energy_register_kwh is not None:
                c.energy_start_kwh = c.energy_register_kwh
        if state is not None:
            c.charging = state == "Charging"
            if c.status in ("connected", "charging"):
                c.status = "charging" if c.charging else "connected"
        if event_type == "Ended":
            c.transaction_id, c.charging, c.power_kw, c.power_at_s = None, False, 0.0, now
            if c.status == "charging":
                c.status = "connected"
        return result201.TransactionEvent(id_token_info={"status": "Accepted"} if id_token is not None else None)

    @on(Action201.meter_values)
    def on_meter_values(self, evse_id: int, meter_value: list[dict], **_: Any) -> result201.MeterValues:
        self.seen()
        if evse_id > 0:
            c = self.state.connector(evse_id)
            for mv in meter_value:
                apply_sampled_values(c, mv.get("sampled_value", []), self.central.clock.now())
        return result201.MeterValues()

    @on(Action201.notify_event)
    def on_notify_event(self, **_: Any) -> result201.NotifyEvent:
        return result201.NotifyEvent()

    @on(Action201.notify_report)
    def on_notify_report(self, **_: Any) -> result201.NotifyReport:
        return result201.NotifyReport()

    async def configure(self) -> None:
        r = await self.call(call201.GetVariables(get_variable_data=[
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}}]))
        for res in (getattr(r, "get_variable_result", None) or []):
            if res.get("attribute_status") == "Accepted":
                self.state.rate_unit = "A" if "A" in str(res.get("attribute_value", "A")).split(",") else "W"
        s = self.central.settings
        await self.call(call201.SetVariables(set_variable_data=[
            {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"},
             "attribute_value": str(s.sample_interval_s)},
            {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedMeasurands"},
             "attribute_value": MEASURANDS},
        ]))

    def _profile(self, profile_id: int, stack: int, purpose: str, amps: float, valid_to_s: float | None,
                 transaction_id: int | str | None = None) -> dict:
        unit, value = self.limit_value(amps)
        profile: dict[str, Any] = {
            "id": profile_id, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative",
            "chargingSchedule": [{"id": profile_id, "chargingRateUnit": unit,
                                  "chargingSchedulePeriod": [{"startPeriod": 0, "limit": value}]}],
        }
        if valid_to_s is not None:
            profile["validTo"] = rfc3339(valid_to_s)
        if transaction_id is not None:
            profile["transactionId"] = str(transaction_id)
        return profile

    async def set_failsafe(self) -> str:
        profile = self._profile(FAILSAFE_PROFILE_ID, 0, "TxDefaultProfile", self.spec.safe_a, None)
        r = await self.call(call201.SetChargingProfile(evse_id=0, charging_profile=profile))
        return str(getattr(r, "status", "Rejected"))

    async def set_limit(self, connector: int, amps: float, valid_to_s: float) -> str:
        c = self.state.connector(connector)
        if c.transaction_id is not None:
            profile = self._profile(CONTROL_PROFILE_ID + connector, 1, "TxProfile", amps, valid_to_s,
                                    c.transaction_id)
        else:
            profile = self._profile(CONTROL_PROFILE_ID + connector, 1, "TxDefaultProfile", amps, valid_to_s)
        r = await self.call(call201.SetChargingProfile(evse_id=connector, charging_profile=profile))
        status = str(getattr(r, "status", "Rejected"))
        self.note_profile_status(status)
        return status


SESSIONS: dict[str, type[Session16] | type[Session201]] = {"1.6": Session16, "2.0.1": Session201}
