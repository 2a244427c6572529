"""Site configuration (YAML): typed, validated, with every problem reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from youxu.config.errors import UserError, validation_problems
from youxu.drivers.transport import parse_device_url
from youxu.scheduler.model import Piles, phase_matrix


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteSection(_Section):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class TransformerSection(_Section):
    rated_kva: float = Field(gt=0)
    import_limit_kw: float = Field(gt=0)
    export_limit_kw: float = Field(default=0.0, ge=0)
    phase_limit_kw: dict[Literal["L1", "L2", "L3"], float] | None = None
    margin_kw: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> TransformerSection:
        if self.import_limit_kw > self.rated_kva * 1.2:
            raise ValueError(
                f"import_limit_kw {self.import_limit_kw} is more than 120 % of rated_kva {self.rated_kva}"
            )
        if self.margin_kw >= self.import_limit_kw:
            raise ValueError("margin_kw must be below import_limit_kw")
        return self


class DeviceSection(_Section):
    """A device on a Modbus transport, driven through a shipped (or file) profile."""

    kind: ClassVar[str] = "meter"
    profile: str
    url: str
    unit: int | None = Field(default=None, ge=0, le=255)  # default: the profile's unit id
    timeout_s: float = Field(default=0.5, gt=0, le=30)

    def unit_id(self) -> int:
        from youxu.drivers.profiles import load_profile

        return self.unit if self.unit is not None else load_profile(self.profile).default_unit

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        from youxu.drivers.profiles import load_profile

        try:
            prof = load_profile(v)
        except UserError as exc:
            raise ValueError(str(exc)) from None
        if prof.kind != cls.kind:
            raise ValueError(f"{v!r} is a {prof.kind} profile, not a {cls.kind}")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_device_url(v)  # raises ValueError with the reason
        return v


class PileSection(DeviceSection):
    kind: ClassVar[str] = "pile"
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    phase: str = "L1"
    voltage_v: float = Field(default=230.0, gt=100, lt=300)
    min_a: float = Field(default=6.0, ge=0)
    max_a: float = Field(default=32.0, gt=0, le=80)
    max_kw: float | None = Field(default=None, gt=0)
    v2g: bool = False
    max_discharge_kw: float = Field(default=0.0, ge=0)
    failsafe_a: float | None = Field(default=None, ge=0)

    @field_validator("phase")
    @classmethod
    def _phase(cls, v: str) -> str:
        if v not in ("L1", "L2", "L3", "3P"):
            raise ValueError("must be L1, L2, L3 or 3P")
        return v

    @model_validator(mode="after")
    def _check(self) -> PileSection:
        if self.min_a > self.max_a:
            raise ValueError(f"min_a {self.min_a} is above max_a {self.max_a}")
        if self.max_discharge_kw > 0 and not self.v2g:
            raise ValueError("max_discharge_kw is set but v2g is false")
        return self

    @property
    def n_phases(self) -> int:
        return 3 if self.phase == "3P" else 1

    def amps_to_kw(self, amps: float) -> float:
        return amps * self.voltage_v * self.n_phases / 1000.0

    @property
    def rated_kw(self) -> float:
        return self.max_kw if self.max_kw is not None else self.amps_to_kw(self.max_a)

    @property
    def minimum_kw(self) -> float:
        return self.amps_to_kw(self.min_a)

    @property
    def safe_a(self) -> float:
        """The current the pile falls back to: its `failsafe_a`, else its minimum current."""
        return float(self.failsafe_a if self.failsafe_a is not None else self.min_a)

    @property
    def safe_kw(self) -> float:
        return self.amps_to_kw(self.safe_a)


class MqttSection(_Section):
    url: str = Field(pattern=r"^mqtts?://")
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    hmac_key_file: Path | None = None
    protocol: Literal["5", "3.1.1", "auto"] = "auto"
    clock_skew_s: float = Field(default=300.0, gt=0)
    link_loss_s: float = Field(default=120.0, gt=0)
    fallback_limit_kw: float | None = Field(default=None, gt=0)
    telemetry_period_s: float = Field(default=10.0, gt=0)
    strict: bool = False  # reject unknown fields in commands
    booking_window_s: float = Field(default=1800.0, ge=0)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=3600, ge=0)  # broker keeps our session (and QoS 1 commands) this long
    reconnect_max_s: int = Field(default=30, ge=1, le=600)  # longest wait between reconnect attempts
    apply_grace_s: float = Field(default=30.0, gt=0)  # after this, a command not yet met is acked INFEASIBLE
    setpoint_tolerance_kw: float = Field(default=2.0, gt=0)  # a setpoint counts as met within this band


class ControlSection(_Section):
    period_s: float = Field(default=1.0, gt=0)
    budget_ms: float = Field(default=150.0, gt=0)
    planning_period_s: float = Field(default=60.0, gt=0)
    horizon_s: int = Field(default=86400, gt=0)
    step_s: int = Field(default=900, gt=0)
    solver_time_limit_ms: float = Field(default=200.0, gt=0)
    strategy: Literal["mpc", "fairshare", "edf", "llf"] = "mpc"
    plan_in_thread: bool = True  # solve beside the fast loop (False: inline, deterministic, for simulation)
    default_dwell_s: float = Field(default=10 * 3600, gt=0)  # assumed stay when nobody booked a departure
    default_energy_kwh: float = Field(default=20.0, ge=0)  # assumed need when nobody booked one
    wear_yuan_per_kwh: float = Field(default=0.05, ge=0)
    overrun_safe_mode: int = Field(default=5, ge=1)  # consecutive overruns before safe mode
    failsafe: bool = True  # program the piles' own failsafe and keep it alive
    meter_grace_s: float = Field(default=5.0, ge=0)
    safe_mode_exit_ticks: int = Field(default=30, ge=1)  # healthy ticks in a row before safe mode ends
    pile_tolerance_kw: float = Field(default=0.7, gt=0)  # a pile above its setpoint by more is not obeying
    pile_ignore_ticks: int = Field(default=10, ge=1)  # ...for this many ticks in a row: alarm (cars may take 5 s)


class TariffPeriod(_Section):
    start: str = Field(pattern=r"^\d{2}:\d{2}$")
    end: str = Field(pattern=r"^\d{2}:\d{2}$")
    import_yuan_per_kwh: float = Field(ge=0)
    export_yuan_per_kwh: float | None = Field(default=None, ge=0)
    name: str = ""


class TariffSection(_Section):
    periods: list[TariffPeriod] = Field(min_length=1)

    def prices_at(self, local_minutes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Import and export price for each local minute-of-day."""
        imp = np.full(local_minutes.shape, self.periods[0].import_yuan_per_kwh)
        exp = imp.copy()
        for p in self.periods:
            a = int(p.start[:2]) * 60 + int(p.start[3:])
            b = int(p.end[:2]) * 60 + int(p.end[3:])
            inside = (local_minutes >= a) & (local_minutes < b) if a < b else (
                (local_minutes >= a) | (local_minutes < b))
            imp = np.where(inside, p.import_yuan_per_kwh, imp)
            e = p.export_yuan_per_kwh if p.export_yuan_per_kwh is not None else p.import_yuan_per_kwh
            exp = np.where(inside, e, exp)
        return imp, exp


class StorageSection(_Section):
    url: str | None = None  # SQLAlchemy URL; default: SQLite file in state_dir
    state_dir: Path = Path("/var/lib/youxu")
    raw_retention_s: float = Field(default=7 * 86400, gt=0)
    minute_retention_s: float = Field(default=400 * 86400, gt=0)  # 1-min readings
    quarter_retention_s: float = Field(default=10 * 365 * 86400, gt=0)  # 15-min readings
    queue_size: int = Field(default=10000, gt=0)
    flush_s: float = Field(default=1.0, gt=0)  # the writer batches this long
    state_period_s: float = Field(default=10.0, gt=0)  # open sessions saved this often

    def database_url(self) -> str:
        return self.url or f"sqlite:///{self.state_dir / 'youxu.sqlite'}"


class MetricsSection(_Section):
    listen: str | None = "127.0.0.1:9108"


class ApiSection(_Section):
    """The local JSON API and status page (contract section 9)."""

    listen: str | None = "127.0.0.1:8080"  # None: no API and no page
    tokens_file: Path | None = None  # `name:token:role` lines; without it every /api/v1/ request is refused
    max_body_bytes: int = Field(default=16384, gt=0, le=1 << 20)  # larger request bodies get 413
    rate_per_s: float = Field(default=20.0, gt=0)  # requests per second per client, sustained ...
    rate_burst: int = Field(default=40, ge=1)  # ... and in a burst; beyond that 429
    max_streams: int = Field(default=16, ge=1)  # live-update connections open at once


def default_tariff() -> TariffSection:
    """Beijing residential time-of-use shape: valley 23-07, peak 10-15 and 18-21."""
    return TariffSection(periods=[
        TariffPeriod(start="23:00", end="07:00", import_yuan_per_kwh=0.3, name="valley"),
        TariffPeriod(start="07:00", end="10:00", import_yuan_per_kwh=0.6, name="flat"),
        TariffPeriod(start="10:00", end="15:00", import_yuan_per_kwh=0.95, name="peak"),
        TariffPeriod(start="15:00", end="18:00", import_yuan_per_kwh=0.6, name="flat"),
        TariffPeriod(start="18:00", end="21:00", import_yuan_per_kwh=0.95, name="peak"),
        TariffPeriod(start="21:00", end="23:00", import_yuan_per_kwh=0.6, name="flat"),
    ])


class SiteConfig(_Section):
    site: SiteSection
    transformer: TransformerSection
    meter: DeviceSection
    piles: list[PileSection] = Field(min_length=1)
    mqtt: MqttSection | None = None
    control: ControlSection = Field(default_factory=ControlSection)
    tariff: TariffSection = Field(default_factory=default_tariff)
    storage: StorageSection = Field(default_factory=StorageSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    api: ApiSection = Field(default_factory=ApiSection)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.site.timezone)

    def pile_model(self) -> Piles:
        """The planner's static view of the piles."""
        ps = self.piles
        return Piles(
            ids=tuple(p.id for p in ps),
            max_kw=np.array([p.rated_kw for p in ps]),
            min_kw=np.array([p.minimum_kw for p in ps]),
            phase_share=phase_matrix([p.phase for p in ps], [p.n_phases for p in ps]),
            v2g=np.array([p.v2g for p in ps], dtype=bool),
            max_discharge_kw=np.array([p.max_discharge_kw if p.v2g else 0.0 for p in ps]),
        )

    def phase_limits_kw(self) -> np.ndarray | None:
        pl = self.transformer.phase_limit_kw
        if pl is None:
            return None
        return np.array([pl.get(p, np.inf) for p in ("L1", "L2", "L3")])


def duplicate_problems(raw_piles: object) -> list[str]:
    """Duplicate pile ids and devices at the same address, read from the raw config."""
    if not isinstance(raw_piles, list):
        return []
    problems: list[str] = []
    ids: dict[object, int] = {}
    endpoints: dict[tuple[object, object], int] = {}
    for i, p in enumerate(raw_piles):
        if not isinstance(p, dict):
            continue
        if p.get("id") in ids:
            problems.append(f"piles[{i}].id: duplicate {p.get('id')!r} (also piles[{ids[p.get('id')]}])")
        ids.setdefault(p.get("id"), i)
        key = (p.get("url"), p.get("unit", 1))
        if key in endpoints:
            problems.append(f"piles[{i}].unit: same url and unit as piles[{endpoints[key]}]")
        endpoints.setdefault(key, i)
    return problems


def parse_site_config(raw: object, source: str = "config") -> SiteConfig:
    """Validate; raise UserError listing every problem, one per line."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a YAML mapping at the top level")
    problems = duplicate_problems(raw.get("piles"))
    cfg = None
    try:
        cfg = SiteConfig.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc) + problems
    if problems or cfg is None:
        raise UserError(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))
    return cfg


def load_site_config(path: str | Path) -> SiteConfig:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{p}: no such file") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: not valid YAML ({exc})") from None
    return parse_site_config(raw, str(p))
