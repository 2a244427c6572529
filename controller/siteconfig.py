"""Site configuration (YAML): typed, validated, with every problem reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from youxu.config.errors import UserError, format_problems, validation_problems
from youxu.config.userfiles import load_yaml
from youxu.drivers.mqtt_topics import SITE_ID_PATTERN
from youxu.drivers.transport import parse_device_url
from youxu.scheduler.model import Piles, phase_matrix
from youxu.scheduler.thermal import ThermalConstants, ThermalParams


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteSection(_Section):
    id: str = Field(min_length=1, pattern=SITE_ID_PATTERN)
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


class AmbientSection(_Section):
    """Where the ambient temperature comes from: exactly one of the four sources."""

    fixed_c: float | None = Field(default=None, ge=-60, le=60)
    monthly_c: list[float] | None = Field(default=None, min_length=12, max_length=12)
    meter_register: str | None = Field(default=None, min_length=1)
    mqtt: bool | None = None
    stale_s: float = Field(default=900.0, gt=0)  # a measured source older than this is stale: alarm, fallback
    fallback_c: float | None = Field(default=None, ge=-60, le=60)  # default: the hottest plausible, see below

    @field_validator("monthly_c")
    @classmethod
    def _months(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(not -60 <= c <= 60 for c in v):
            raise ValueError("every monthly value must be between -60 and 60 °C")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> AmbientSection:
        given = [k for k in ("fixed_c", "monthly_c", "meter_register") if getattr(self, k) is not None]
        if self.mqtt:
            given.append("mqtt")
        elif self.mqtt is False:
            raise ValueError("mqtt: give `mqtt: true` or another source")
        if len(given) != 1:
            raise ValueError("give exactly one of fixed_c, monthly_c, meter_register, mqtt: true"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self

    @property
    def source(self) -> str:
        if self.fixed_c is not None:
            return "fixed"
        if self.monthly_c is not None:
            return "monthly"
        return "meter_register" if self.meter_register is not None else "mqtt"

    def hottest_c(self) -> float:
        """The hottest ambient this source plausibly gives: a cold start assumes it, a stale source falls back
        to it (the configured `fallback_c` when given)."""
        if self.fallback_c is not None:
            return self.fallback_c
        if self.fixed_c is not None:
            return self.fixed_c
        if self.monthly_c is not None:
            return max(self.monthly_c)
        return DEFAULT_HOT_AMBIENT_C


DEFAULT_HOT_AMBIENT_C = 40.0  # a measured source with no fallback_c falls back to a hot summer afternoon


class ThermalConstantsSection(_Section):
    """Overrides of IEC 60076-7's constants for an ONAN distribution transformer (from the test report)."""

    top_oil_rise_k: float | None = Field(default=None, gt=0, le=100)
    hotspot_gradient_k: float | None = Field(default=None, gt=0, le=100)
    oil_exponent_x: float | None = Field(default=None, gt=0, le=2)
    winding_exponent_y: float | None = Field(default=None, gt=0, le=3)
    k11: float | None = Field(default=None, gt=0)
    k21: float | None = Field(default=None, ge=1)
    k22: float | None = Field(default=None, gt=0)
    tau_oil_min: float | None = Field(default=None, gt=0)
    tau_winding_min: float | None = Field(default=None, gt=0)
    ambient_surcharge_k: float | None = Field(default=None, ge=0, le=50)


class ThermalSection(_Section):
    model: Literal["iec60076-7"] = "iec60076-7"
    load_loss_w: float = Field(gt=0)
    no_load_loss_w: float = Field(gt=0)
    constants: ThermalConstantsSection = Field(default_factory=ThermalConstantsSection)
    hotspot_max_c: float = Field(default=98.0, gt=0, le=160)
    top_oil_max_c: float = Field(default=105.0, gt=0, le=130)
    power_factor: float = Field(default=0.95, gt=0, le=1)
    allow_above_rated: bool = False
    above_rated_max_kw: float | None = Field(default=None, gt=0)
    ambient: AmbientSection

    @model_validator(mode="after")
    def _check(self) -> ThermalSection:
        if self.allow_above_rated and self.above_rated_max_kw is None:
            raise ValueError("allow_above_rated needs above_rated_max_kw (the most the thermal limit may allow)")
        if self.above_rated_max_kw is not None and not self.allow_above_rated:
            raise ValueError("above_rated_max_kw is set but allow_above_rated is false")
        if self.no_load_loss_w >= self.load_loss_w:
            raise ValueError(f"no_load_loss_w {self.no_load_loss_w} is not below load_loss_w {self.load_loss_w} "
                             "(iron loss is a fraction of the copper loss on a distribution transformer)")
        return self


class TransformerSection(_Section):
    rated_kva: float = Field(gt=0)
    import_limit_kw: float = Field(gt=0)
    export_limit_kw: float = Field(default=0.0, ge=0)
    phase_limit_kw: dict[Literal["L1", "L2", "L3"], float] | None = None
    margin_kw: float = Field(default=10.0, ge=0)
    thermal: ThermalSection | None = None

    @model_validator(mode="after")
    def _check(self) -> TransformerSection:
        if self.import_limit_kw > self.rated_kva * 1.2:
            raise ValueError(
                f"import_limit_kw {self.import_limit_kw} is more than 120 % of rated_kva {self.rated_kva}"
            )
        if self.margin_kw >= self.import_limit_kw:
            raise ValueError("margin_kw must be below import_limit_kw")
        th = self.thermal
        if th is not None and th.above_rated_max_kw is not None:
            if th.above_rated_max_kw <= self.import_limit_kw:
                raise ValueError(f"thermal.above_rated_max_kw {th.above_rated_max_kw} must be above "
                                 f"import_limit_kw {self.import_limit_kw}")
            if th.above_rated_max_kw > 2.0 * self.rated_kva:
                raise ValueError(f"thermal.above_rated_max_kw {th.above_rated_max_kw} is more than twice rated_kva "
                                 f"{self.rated_kva} (IEC 60076-7 allows at most 1.5 per unit on distribution "
                                 "transformers)")
        return self

    def thermal_params(self) -> ThermalParams | None:
        th = self.thermal
        if th is None:
            return None
        given = {k: v for k, v in th.constants.model_dump().items() if v is not None}
        return ThermalParams(rated_kva=self.rated_kva, load_loss_w=th.load_loss_w, no_load_loss_w=th.no_load_loss_w,
                             constants=ThermalConstants(**given), hotspot_max_c=th.hotspot_max_c,
                             top_oil_max_c=th.top_oil_max_c, power_factor=th.power_factor)


class DeviceSection(_Section):
    """A device on a Modbus transport, driven through a shipped (or file) profile."""

    kind: ClassVar[str] = "meter"
    profile: str
    url: str
    unit: int | None = Field(default=None, ge=0, le=255)  # default: the profile's unit id
    address: str | None = None  # DL/T 645 meters: the 12-digit meter address, instead of a unit
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

    @model_validator(mode="after")
    def _transport(self) -> DeviceSection:
        from youxu.drivers.dlt645 import check_address
        from youxu.drivers.profiles import load_profile

        prof = load_profile(self.profile)
        ep = parse_device_url(self.url)
        try:
            prof.check_endpoint(ep.scheme, ep.protocol)
        except ValueError as exc:
            raise ValueError(f"url: {exc}") from None
        if prof.protocol == "dlt645-2007":
            if self.address is None:
                raise ValueError("address: a DL/T 645 meter needs its 12-digit address (printed on the meter)")
            check_address(self.address)
            if self.unit is not None:
                raise ValueError("unit: a DL/T 645 meter is named by its address, not a Modbus unit")
        elif prof.protocol == "ocpp" and self.unit is not None:
            raise ValueError("unit: an OCPP pile is named by its url (ocpp://{charge_point_id}/{connector})")
        elif self.address is not None:
            raise ValueError(f"address: only DL/T 645 meters have one; {prof.name} is a Modbus device (use unit)")
        return self


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

    def hmac_key(self) -> bytes | None:
        """The dispatch HMAC key: the key file's content without surrounding whitespace (None: unsigned)."""
        if self.hmac_key_file is None:
            return None
        try:
            key = self.hmac_key_file.read_bytes().strip()
        except OSError as exc:
            raise UserError(f"mqtt.hmac_key_file {self.hmac_key_file}: {exc.strerror or exc}") from None
        if not key:
            raise UserError(f"mqtt.hmac_key_file {self.hmac_key_file}: empty")
        return key


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

    @field_validator("step_s")
    @classmethod
    def _step_within_horizon(cls, v: int, info: ValidationInfo) -> int:
        horizon_s = info.data.get("horizon_s")
        if horizon_s is not None and v > horizon_s:
            raise ValueError(f"longer than horizon_s {horizon_s}: the planner needs a horizon of at least one step")
        return v


def minute_of_day(text: str, *, end: bool = False) -> int:
    """Minutes after local midnight of an `HH:MM` time (`24:00` allowed as an end); ValueError otherwise."""
    hh, sep, mm = text.partition(":")
    if not (sep and len(hh) == 2 and len(mm) == 2 and hh.isdigit() and mm.isdigit() and hh.isascii()
            and mm.isascii()):
        raise ValueError("not a time of day HH:MM")
    minutes = int(hh) * 60 + int(mm)
    if int(mm) > 59 or minutes > (1440 if end else 1439):
        raise ValueError(f"not a time of day (00:00 to {'24:00' if end else '23:59'})")
    return minutes


class TariffPeriod(_Section):
    start: str
    end: str
    import_yuan_per_kwh: float = Field(ge=0)
    export_yuan_per_kwh: float | None = Field(default=None, ge=0)
    name: str = ""

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, v: object) -> object:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 100 * 60:
            # YAML 1.1 reads an unquoted 23:00 as the base-60 number 1380
            raise ValueError(f'write the time in quotes, "{v // 60:02d}:{v % 60:02d}" (unquoted, YAML reads HH:MM '
                             "as a number)")
        return v

    @field_validator("start")
    @classmethod
    def _start(cls, v: str) -> str:
        minute_of_day(v)
        return v

    @field_validator("end")
    @classmethod
    def _end(cls, v: str) -> str:
        minute_of_day(v, end=True)
        return v


class TariffSection(_Section):
    periods: list[TariffPeriod] = Field(min_length=1)

    def prices_at(self, local_minutes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Import and export price for each local minute-of-day."""
        imp = np.full(local_minutes.shape, self.periods[0].import_yuan_per_kwh)
        exp = imp.copy()
        for p in self.periods:
            a = minute_of_day(p.start)
            b = minute_of_day(p.end, end=True)
            inside = (local_minutes >= a) & (local_minutes < b) if a < b else (
                (local_minutes >= a) | (local_minutes < b))
            imp = np.where(inside, p.import_yuan_per_kwh, imp)
            e = p.export_yuan_per_kwh if p.export_yuan_per_kwh is not None else p.import_yuan_per_kwh
            exp = np.where(inside, e, exp)
        return imp, exp


SUPPORTED_DATABASES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")  # what storage/database opens


class StorageSection(_Section):
    url: str | None = None  # SQLAlchemy URL; default: SQLite file in state_dir
    state_dir: Path = Path("/var/lib/youxu")
    raw_retention_s: float = Field(default=7 * 86400, gt=0)
    minute_retention_s: float = Field(default=400 * 86400, gt=0)  # 1-min readings
    quarter_retention_s: float = Field(default=10 * 365 * 86400, gt=0)  # 15-min readings
    queue_size: int = Field(default=10000, gt=0)
    flush_s: float = Field(default=1.0, gt=0)  # the writer batches this long
    state_period_s: float = Field(default=10.0, gt=0)  # open sessions saved this often

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        scheme = v.split("://", 1)[0] if "://" in v else ""
        if scheme not in SUPPORTED_DATABASES:
            raise ValueError(f"{scheme + '://' if scheme else 'no scheme'}: not a supported database; use "
                             "sqlite:///PATH or postgresql://USER@HOST/DB (or postgresql+psycopg://)")
        if scheme == "sqlite" and (not v.startswith("sqlite:///") or v == "sqlite:///"):
            raise ValueError("a SQLite URL names its file: sqlite:///PATH (sqlite:////abs/path)")
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(v)
        except (ArgumentError, ValueError) as exc:
            raise ValueError(f"not a database URL ({exc})") from None
        return v

    def database_url(self) -> str:
        return self.url or f"sqlite:///{self.state_dir / 'youxu.sqlite'}"


class MetricsSection(_Section):
    listen: str | None = "127.0.0.1:9108"


class OcppSection(_Section):
    """The OCPP central system for charge points on the site's LAN (contract section 8)."""

    listen: str = "0.0.0.0:8887"
    versions: list[Literal["1.6", "2.0.1"]] = Field(default_factory=lambda: ["1.6", "2.0.1"], min_length=1)
    security_profile: Literal[0, 1, 2] = 1  # 0 plain, 1 basic auth, 2 TLS and basic auth
    password_file: Path | None = None  # charge_point_id:password per line
    cert_file: Path | None = None
    key_file: Path | None = None
    heartbeat_s: int = Field(default=60, ge=1, le=86400)
    sample_interval_s: int = Field(default=10, ge=1, le=3600)  # MeterValues while charging
    limit_validity_s: float = Field(default=180.0, gt=0)  # a limit lapses to the failsafe after this

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen must be host:port, got {v!r}")
        return v

    @model_validator(mode="after")
    def _security(self) -> OcppSection:
        if self.security_profile in (1, 2) and self.password_file is None:
            raise ValueError(f"security_profile {self.security_profile} needs password_file "
                             "(charge_point_id:password per line)")
        if self.security_profile == 2 and (self.cert_file is None or self.key_file is None):
            raise ValueError("security_profile 2 (TLS) needs cert_file and key_file")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host or "0.0.0.0", int(port)

    def passwords(self, charge_points: list[str]) -> dict[str, str] | None:
        """The charge points' passwords from `password_file`, read as the daemon reads them at start;
        UserError when the file is unreadable or, with authentication on, a charge point has none."""
        from youxu.drivers.ocpp_central import parse_passwords

        if self.password_file is None:
            return None
        try:
            text = self.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"ocpp.password_file {self.password_file}: {getattr(exc, 'strerror', None) or exc}") \
                from None
        try:
            out = parse_passwords(text, str(self.password_file))
        except ValueError as exc:
            raise UserError(f"ocpp.password_file {exc}") from None
        missing = [cp for cp in charge_points if cp not in out]
        if self.security_profile in (1, 2) and missing:
            raise UserError(f"ocpp.password_file {self.password_file}: no password for {', '.join(missing)}")
        return out

    def check_tls(self) -> None:
        """Security profile 2: the certificate and key load (UserError naming the file otherwise)."""
        import ssl

        if self.security_profile != 2:
            return
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(self.cert_file),
                                                                                 str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise UserError(f"ocpp.cert_file {self.cert_file} / key_file {self.key_file}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None


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
    ocpp: OcppSection | None = None
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


def ocpp_problems(raw: dict) -> list[str]:
    """OCPP piles need the central system's section."""
    piles = raw.get("piles")
    if not isinstance(piles, list) or raw.get("ocpp") is not None:
        return []
    uses = [i for i, p in enumerate(piles) if isinstance(p, dict) and str(p.get("url", "")).startswith("ocpp:")]
    if not uses:
        return []
    more = f" and {len(uses) - 1} more piles" if len(uses) > 1 else ""
    return [f"piles[{uses[0]}].url: an OCPP charge point{more}; add an ocpp: section (listen, security_profile, "
            "password_file)"]


def thermal_problems(cfg: SiteConfig) -> list[str]:
    """What the thermal section asks of the other sections: the meter register, the grid link."""
    th = cfg.transformer.thermal
    if th is None:
        return []
    where = "transformer.thermal.ambient"
    problems = []
    reg = th.ambient.meter_register
    if reg is not None:
        from youxu.drivers.profiles import load_profile

        known = load_profile(cfg.meter.profile).registers
        if reg not in known:
            problems.append(f"{where}.meter_register: {reg!r} is not a register of meter profile "
                            f"{cfg.meter.profile!r} (it has {', '.join(sorted(known))})")
        elif known[reg].unit != "°C":
            problems.append(f"{where}.meter_register: register {reg!r} of meter profile {cfg.meter.profile!r} "
                            f"is in {known[reg].unit or 'no unit'!r}, not °C")
    if th.ambient.mqtt and cfg.mqtt is None:
        problems.append(f"{where}.mqtt: the ambient topic needs the mqtt section")
    return problems


def parse_site_config(raw: object, source: str = "config") -> SiteConfig:
    """Validate; raise UserError listing every problem, one per line."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a YAML mapping at the top level")
    problems = duplicate_problems(raw.get("piles")) + ocpp_problems(raw)
    cfg = None
    try:
        cfg = SiteConfig.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(exc) + problems
    if cfg is not None:
        problems += thermal_problems(cfg)
    if problems or cfg is None:
        raise UserError(format_problems(source, problems))
    return cfg


def load_site_config(path: str | Path) -> SiteConfig:
    p = Path(path)
    return parse_site_config(load_yaml(p), str(p))
