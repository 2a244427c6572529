"""Named communities for `youxu sim generate --preset NAME`.

Each preset is a transformer with its homes, EVs and piles, in its default season; every
preset also exists as `<name>-summer` and `<name>-winter` (and `<name>-shoulder`). The
numbers and their reasoning are in sim/PARAMETERS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from youxu.sim.ev import EvParams
from youxu.sim.grid_events import GridEventParams
from youxu.sim.household import APPLIANCES, HOUSEHOLD_TYPES, Appliance, Heating, HouseholdParams, HouseholdType

CST = timezone(timedelta(hours=8))
SEASON_START = {  # a Wednesday at local noon in each season
    "summer": datetime(2026, 7, 1, 12, 0, tzinfo=CST),
    "winter": datetime(2026, 1, 14, 12, 0, tzinfo=CST),
    "shoulder": datetime(2026, 4, 15, 12, 0, tzinfo=CST),
}
POWER_FACTOR = 0.9
PHASE_LIMIT_FACTOR = 1.05  # a phase may carry a little more than a third of the total
EXPORT_SHARE = 0.15  # reverse power the transformer's protection and the feeder accept, of kVA


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    households: int
    piles: int
    transformer_kva: float
    season: str
    penetration: float  # cars per home
    types: tuple[HouseholdType, ...] = HOUSEHOLD_TYPES
    ownership: dict[str, float] = field(default_factory=dict)  # appliance name -> ownership override
    ac_scale: float = 1.0
    activity_scale: float = 1.0
    ac_rated_kw: tuple[float, float] = (0.8, 1.3)
    phase_shares: tuple[float, float, float] = (0.35, 0.33, 0.32)
    heating: Heating = field(default_factory=Heating)  # used in winter only
    ev: EvParams = field(default_factory=EvParams)
    events: GridEventParams = field(default_factory=GridEventParams)

    def household_params(self, n: int, season: str) -> HouseholdParams:
        appliances: tuple[Appliance, ...] = tuple(
            replace(a, ownership=self.ownership[a.name]) if a.name in self.ownership else a for a in APPLIANCES
        )
        return HouseholdParams(
            n=n,
            season=season,
            types=self.types,
            appliances=appliances,
            phase_shares=self.phase_shares,
            ac_scale=self.ac_scale,
            ac_rated_kw=self.ac_rated_kw,
            activity_scale=self.activity_scale,
            heating=self.heating if season == "winter" else Heating(),
        )

    def start(self, season: str) -> datetime:
        return SEASON_START[season]


def _mix(**shares: float) -> tuple[HouseholdType, ...]:
    return tuple(replace(t, share=shares.get(t.name, t.share)) for t in HOUSEHOLD_TYPES)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "small", "100 homes and 20 piles on a comfortable 400 kVA transformer", 100, 20, 400.0,
            "summer", 0.25,
        ),
        Preset(
            "community-630", "a 1990s-2000s Beijing community of two-bedroom flats: 600 homes, 100 piles, 630 kVA",
            600, 100, 630.0, "summer", 0.30,
            types=_mix(single=0.20, couple=0.32, family=0.28, elderly=0.20),
            ac_scale=0.6,
            ev=EvParams(private_spot_share=0.45),
        ),
        Preset(
            "large", "a new rental-apartment complex of small flats with central hot water: 1500 homes, "
            "400 piles, 1000 kVA", 1500, 400, 1000.0, "summer", 0.30,
            types=_mix(single=0.45, couple=0.35, family=0.15, elderly=0.05),
            ownership={"water_heater": 0.10, "cooking": 0.6},
            ac_scale=0.6,
            ac_rated_kw=(0.6, 0.9),
            activity_scale=0.75,
        ),
        Preset(
            "old-community", "an old low-rise community converted from coal to electric heating (煤改电): "
            "140 homes, 48 piles, 315 kVA", 140, 48, 315.0, "winter", 0.45,
            types=_mix(single=0.12, couple=0.28, family=0.25, elderly=0.35),
            heating=Heating(share=0.35),
        ),
    )
}
PRESETS["demo"] = replace(PRESETS["small"], name="demo", description="the demo community (same as small)")

SEASONS = ("summer", "winter", "shoulder")


def preset_names() -> list[str]:
    """Every name `resolve_preset` accepts."""
    names = []
    for name in PRESETS:
        names.append(name)
        names.extend(f"{name}-{s}" for s in SEASONS)
    return names


def resolve_preset(name: str, season: str | None = None) -> tuple[Preset, str]:
    """The preset and the season for a name like `community-630` or `community-630-winter`."""
    base, suffix_season = name, None
    for s in SEASONS:
        if name.endswith("-" + s) and name[: -len(s) - 1] in PRESETS:
            base, suffix_season = name[: -len(s) - 1], s
    if base not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(preset_names())}")
    preset = PRESETS[base]
    chosen = season or suffix_season or preset.season
    if chosen not in SEASONS:
        raise ValueError(f"unknown season {chosen!r}; use one of {', '.join(SEASONS)}")
    return preset, chosen
