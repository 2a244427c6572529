"""A resident's booking (`youxu.session/1` on `sessions/{pile}/request`) turned into a `Booking`.

Pure: payload, pile and the site's clock in; a `Booking` or a `BookingRejection` (reason, field,
detail) out, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from youxu.config.errors import error_path
from youxu.controller.grid.dispatch_schema import Rejection, decode_json_object, parse_rfc3339
from youxu.controller.gridlink import Booking

SESSION_SCHEMA = "youxu.session/1"
MAX_AHEAD_S = 7 * 86400.0
MAX_ENERGY_KWH = 300.0


@dataclass(frozen=True)
class PileInfo:
    pile_id: str
    v2g: bool


class SessionRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

    schema_: Literal["youxu.session/1"] = Field(alias="schema")
    departure: Annotated[float, BeforeValidator(parse_rfc3339)]
    energy_kwh: float = Field(ge=0, le=MAX_ENERGY_KWH)
    v2g: bool = False
    min_soc: float = Field(default=0.2, ge=0, le=1)
    priority: Literal["normal", "urgent"] = "normal"
    battery_kwh: float | None = Field(default=None, gt=0, le=500)
    soc_arrival: float | None = Field(default=None, ge=0, le=1)
    max_kw: float | None = Field(default=None, gt=0, le=1000)  # the car's own charging limit (on-board charger)


def parse_booking(
    payload: bytes | str, pile_id: str, piles: dict[str, PileInfo], now_s: float, *, strict: bool = False
) -> Booking | Rejection:
    """Validate one booking for `pile_id` against the site's piles and clock."""
    if pile_id not in piles:
        return Rejection("UNKNOWN_PILE", "pile", f"no pile {pile_id!r} at this site")
    obj = decode_json_object(payload)
    if isinstance(obj, Rejection):
        return obj
    try:
        req = SessionRequest.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        return Rejection("BAD_SCHEMA", error_path(tuple(err["loc"])), err["msg"].removeprefix("Value error, "))
    except (RecursionError, OverflowError) as exc:
        return Rejection("BAD_SCHEMA", "(root)", type(exc).__name__)
    if strict and req.model_extra:
        return Rejection("BAD_SCHEMA", sorted(req.model_extra)[0], "unknown field (strict mode)")
    if req.departure <= now_s:
        return Rejection("BAD_SCHEMA", "departure", "is not in the future")
    if req.departure - now_s > MAX_AHEAD_S:
        return Rejection("BAD_SCHEMA", "departure", f"more than {MAX_AHEAD_S / 86400:g} days ahead")
    if req.v2g and not piles[pile_id].v2g:
        return Rejection("UNSUPPORTED", "v2g", f"pile {pile_id} cannot discharge")
    return Booking(
        pile_id=pile_id, departure_s=req.departure, energy_kwh=req.energy_kwh, v2g=req.v2g, min_soc=req.min_soc,
        priority=req.priority, received_s=now_s, battery_kwh=req.battery_kwh, soc_arrival=req.soc_arrival,
        car_max_kw=req.max_kw,
    )
