"""The `youxu.scenario/1` format: typed model, validation, loading and array views.

A scenario is what the simulator runs: a site, its household (base) load, a tariff,
piles, charging sessions and the grid's dispatch commands, on one time axis measured
in seconds from `start`.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from youxu.config.errors import UserError, format_validation_error
from youxu.config.userfiles import MIB, load_json
from youxu.scheduler.thermal import CONSTANT_NAMES, ThermalConstants, ThermalParams

SCENARIO_FORMAT = "youxu.scenario/1"
PHASES = ("L1", "L2", "L3")
REFERENCE_AMBIENT_C = 20.0  # IEC 60076-7's reference ambient
SCENARIO_MAX_BYTES = 512 * MIB  # a year of one-minute steps for a thousand piles is about 100 MiB


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=False)


class ScenarioThermal(_Strict):
    """`site.thermal`: the site config's `transformer.thermal` less `ambient` (IEC 60076-7, ONAN)."""

    model_config = ConfigDict(extra="forbid")
    model: Literal["iec60076-7"] = "iec60076-7"
    load_loss_w: float = Field(gt=0)
    no_load_loss_w: float = Field(gt=0)
    constants: dict[str, float] = Field(default_factory=dict)
    hotspot_max_c: float = Field(default=98.0, gt=0, le=160)
    top_oil_max_c: float = Field(default=105.0, gt=0, le=130)
    power_factor: float = Field(default=0.95, gt=0, le=1)
    allow_above_rated: bool = False
    above_rated_max_kw: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ScenarioThermal:
        unknown = sorted(set(self.constants) - set(CONSTANT_NAMES))
        if unknown:
            raise ValueError(f"constants: unknown {', '.join(unknown)} (known: {', '.join(CONSTANT_NAMES)})")
        if self.allow_above_rated != (self.above_rated_max_kw is not None):
            raise ValueError("allow_above_rated and above_rated_max_kw go together")
        return self


class ScenarioSite(_Strict):
    transformer_kva: float = Field(gt=0)
    limit_kw: float = Field(gt=0)
    export_limit_kw: float = Field(default=0.0, ge=0)
    phase_limit_kw: dict[Literal["L1", "L2", "L3"], float] | None = None
    margin_kw: float = Field(default=0.0, ge=0)
    thermal: ScenarioThermal | None = None

    def thermal_params(self) -> ThermalParams | None:
        th = self.thermal
        if th is None:
            return None
        return ThermalParams(rated_kva=self.transformer_kva, load_loss_w=th.load_loss_w,
                             no_load_loss_w=th.no_load_loss_w, constants=ThermalConstants(**th.constants),
                             hotspot_max_c=th.hotspot_max_c, top_oil_max_c=th.top_oil_max_c,
                             power_factor=th.power_factor)

    @property
    def hard_limit_kw(self) -> float:
        """The import the site may take at most: `limit_kw`, or `above_rated_max_kw` where the thermal limit
        is allowed above it."""
        th = self.thermal
        if th is not None and th.allow_above_rated and th.above_rated_max_kw is not None:
            return th.above_rated_max_kw
        return self.limit_kw


class AmbientSeries(_Strict):
    """`ambient_c`: the ambient temperature at the transformer, one value per `resolution_s`."""

    resolution_s: int = Field(gt=0)
    c: list[float] = Field(min_length=1)


class BaseLoad(_Strict):
    resolution_s: int = Field(gt=0)
    kw: list[float] | None = None
    phases: dict[Literal["L1", "L2", "L3"], list[float]] | None = None

    def phase_values(self) -> np.ndarray:
        """(n, 3) kW per phase as given (a total is split evenly over the phases)."""
        if self.phases is not None:
            return np.stack([np.asarray(self.phases[p], dtype=float) for p in PHASES], axis=1)
        return np.repeat(np.asarray(self.kw, dtype=float)[:, None] / 3.0, 3, axis=1)

    @model_validator(mode="after")
    def _one_form(self) -> BaseLoad:
        if (self.kw is None) == (self.phases is None):
            raise ValueError("give either 'kw' or 'phases'")
        if self.phases is not None:
            if set(self.phases) != set(PHASES):
                raise ValueError("'phases' needs L1, L2 and L3")
            lengths = {len(v) for v in self.phases.values()}
            if len(lengths) != 1:
                raise ValueError("'phases' arrays must have the same length")
        return self


class Tariff(_Strict):
    resolution_s: int = Field(gt=0)
    import_yuan_per_kwh: list[float] = Field(min_length=1)
    export_yuan_per_kwh: list[float] | None = None


class ScenarioPile(_Strict):
    id: str = Field(min_length=1)
    max_kw: float = Field(gt=0)
    min_kw: float = Field(default=0.0, ge=0)
    phases: Literal[1, 3] = 1
    phase: Literal["L1", "L2", "L3"] | None = None
    v2g: bool = False
    max_discharge_kw: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> ScenarioPile:
        if self.min_kw > self.max_kw:
            raise ValueError(f"min_kw {self.min_kw} is above max_kw {self.max_kw}")
        if self.phases == 1 and self.phase is None:
            raise ValueError("a single-phase pile needs 'phase'")
        return self


class ScenarioSession(_Strict):
    id: str = Field(min_length=1)
    pile: str
    arrival_s: int = Field(ge=0)
    departure_s: int = Field(gt=0)
    energy_kwh: float = Field(ge=0)
    battery_kwh: float = Field(default=60.0, gt=0)
    soc_arrival: float = Field(default=0.3, ge=0, le=1)
    v2g: bool = False
    min_soc: float = Field(default=0.2, ge=0, le=1)
    priority: Literal["normal", "urgent"] = "normal"
    max_kw: float | None = Field(default=None, gt=0)  # the car's on-board charger, if below the pile

    @model_validator(mode="after")
    def _check(self) -> ScenarioSession:
        if self.departure_s <= self.arrival_s:
            raise ValueError(f"departure_s {self.departure_s} is not after arrival_s {self.arrival_s}")
        return self


class DispatchEntry(_Strict):
    at_s: int = Field(ge=0)
    command: dict


class Scenario(_Strict):
    format: Literal["youxu.scenario/1"]
    name: str
    start: datetime
    step_s: int = Field(gt=0)
    duration_s: int = Field(gt=0)
    site: ScenarioSite
    base_load: BaseLoad
    tariff: Tariff
    piles: list[ScenarioPile]
    sessions: list[ScenarioSession] = Field(default_factory=list)
    dispatch: list[DispatchEntry] = Field(default_factory=list)
    timezone: str | None = None
    # youxu extension: the household load over the days before `start` (its last value ends at `start`),
    # what the transformer meter's history would hold; the `mpc` strategy's forecast starts from it
    base_load_history: BaseLoad | None = None
    ambient_c: AmbientSeries | None = None  # the transformer's ambient (°C); 20 °C, the IEC reference, if absent

    @model_validator(mode="after")
    def _consistency(self) -> Scenario:
        problems: list[str] = []
        if self.start.tzinfo is None:
            problems.append("start: needs a UTC offset (RFC 3339)")
        if self.duration_s % self.step_s:
            problems.append(f"duration_s: {self.duration_s} is not a multiple of step_s {self.step_s}")
        n_base = len(self.base_load.kw if self.base_load.kw is not None else self.base_load.phases["L1"])
        if n_base * self.base_load.resolution_s < self.duration_s:
            problems.append(
                f"base_load: {n_base} values of {self.base_load.resolution_s} s do not cover "
                f"duration_s {self.duration_s}"
            )
        for name in ("import_yuan_per_kwh", "export_yuan_per_kwh"):
            arr = getattr(self.tariff, name)
            if arr is not None and len(arr) > 1 and len(arr) * self.tariff.resolution_s < self.duration_s:
                problems.append(f"tariff.{name}: does not cover duration_s")
        if self.ambient_c is not None and len(self.ambient_c.c) > 1 and \
                len(self.ambient_c.c) * self.ambient_c.resolution_s < self.duration_s:
            problems.append("ambient_c: does not cover duration_s")
        th = self.site.thermal
        if th is not None and th.above_rated_max_kw is not None and th.above_rated_max_kw <= self.site.limit_kw:
            problems.append(f"site.thermal.above_rated_max_kw: {th.above_rated_max_kw} is not above limit_kw "
                            f"{self.site.limit_kw}")
        pile_ids = [p.id for p in self.piles]
        if len(set(pile_ids)) != len(pile_ids):
            problems.append("piles: pile ids are not unique")
        known = set(pile_ids)
        by_pile: dict[str, list[ScenarioSession]] = {}
        seen: set[str] = set()
        for i, s in enumerate(self.sessions):
            if s.id in seen:
                problems.append(f"sessions[{i}].id: duplicate {s.id!r}")
            seen.add(s.id)
            if s.pile not in known:
                problems.append(f"sessions[{i}].pile: unknown pile {s.pile!r}")
            if s.departure_s > self.duration_s:
                problems.append(f"sessions[{i}].departure_s: {s.departure_s} is after duration_s")
            by_pile.setdefault(s.pile, []).append(s)
        for pile, sessions in by_pile.items():
            sessions = sorted(sessions, key=lambda s: s.arrival_s)
            for a, b in itertools.pairwise(sessions):
                if b.arrival_s < a.departure_s:
                    problems.append(f"sessions: {a.id} and {b.id} overlap on pile {pile}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ---- array views -------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        return self.duration_s // self.step_s

    def step_times_s(self) -> np.ndarray:
        return np.arange(self.n_steps, dtype=np.int64) * self.step_s

    def _resample(self, values: list[float], resolution_s: int) -> np.ndarray:
        arr = np.asarray(values, dtype=float)
        if arr.size == 1:
            return np.full(self.n_steps, arr[0])
        idx = np.minimum(self.step_times_s() // resolution_s, arr.size - 1)
        return arr[idx]

    def base_phase_kw(self) -> np.ndarray:
        """Household load per phase at every step, shape (n_steps, 3)."""
        bl = self.base_load
        values = bl.phase_values()
        return values[np.minimum(self.step_times_s() // bl.resolution_s, values.shape[0] - 1)]

    def base_kw(self) -> np.ndarray:
        return self.base_phase_kw().sum(axis=1)

    def history_phase_kw(self) -> tuple[np.ndarray, np.ndarray]:
        """(t_s, (n, 3) kW) of `base_load_history`: each value at the middle of its interval, t_s < 0."""
        h = self.base_load_history
        if h is None:
            return np.zeros(0), np.zeros((0, 3))
        ph = h.phase_values()
        n = ph.shape[0]
        t_s = (np.arange(n) - n + 0.5) * h.resolution_s
        return t_s, ph

    def ambient_per_step_c(self) -> np.ndarray:
        """Ambient °C at every step (the IEC reference 20 °C where the scenario gives none)."""
        if self.ambient_c is None:
            return np.full(self.n_steps, REFERENCE_AMBIENT_C)
        return self._resample(self.ambient_c.c, self.ambient_c.resolution_s)

    def import_price(self) -> np.ndarray:
        return self._resample(self.tariff.import_yuan_per_kwh, self.tariff.resolution_s)

    def export_price(self) -> np.ndarray:
        prices = self.tariff.export_yuan_per_kwh or self.tariff.import_yuan_per_kwh
        return self._resample(prices, self.tariff.resolution_s)

    def phase_limits_kw(self) -> np.ndarray | None:
        if self.site.phase_limit_kw is None:
            return None
        return np.array([self.site.phase_limit_kw.get(p, np.inf) for p in PHASES], dtype=float)

    def epoch_s(self, t_s: float) -> float:
        return self.start.timestamp() + t_s

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), ensure_ascii=False)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise UserError naming the problem."""
    p = Path(path)
    return parse_scenario(load_json(p, max_bytes=SCENARIO_MAX_BYTES), source=str(p))


def parse_scenario(raw: object, source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{source}: {format_validation_error(exc)}") from None


def save_scenario(scenario: Scenario, path: str | Path) -> None:
    Path(path).write_text(scenario.to_json(), encoding="utf-8")
