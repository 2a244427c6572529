"""Modbus transports: device URLs and one shared connection ("bus") per endpoint.

`modbus-tcp://host:port` — one TCP connection per host:port, shared by the unit ids behind it
(a TCP-to-RS-485 gateway is a bus too).
`modbus-rtu:///dev/ttyUSB0?baud=9600&parity=N&stop=1&bits=8&spacing_ms=5` — one serial line
shared by every device on that RS-485 bus.

On every bus: one request at a time, in the order they were asked for (asyncio's lock is
first-come first-served, so devices polled together in one tick take turns request by
request and a device with many blocks cannot starve the others); an optional pause
between requests (`spacing_ms`); a timeout per request (each device has its own); and a
unit that keeps failing to answer is backed off — its requests fail at once, without
touching the line, until a probe is due — so one dead meter costs the loop at most one
timeout per back-off period instead of one per tick. `ModbusBus.health()` reports it all.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse

log = logging.getLogger(__name__)

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

TCP_OPTIONS = ("spacing_ms",)
RTU_OPTIONS = ("baud", "parity", "stop", "bits", "spacing_ms")


class DeviceError(Exception):
    """A device did not answer, answered with an exception code, or answered garbage."""


class DeviceTimeout(DeviceError):
    """A device did not answer in time (or the bus could not be opened)."""


class DeviceException(DeviceError):
    """A device answered with a Modbus exception code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class DeviceBackedOff(DeviceError):
    """A unit failed repeatedly; it is not asked again until its back-off ends."""


EXCEPTION_CODES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # modbus-tcp | modbus-rtu | dlt645-tcp | dlt645
    host: str = ""
    port: int = 502
    device: str = ""  # serial device path
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    spacing_ms: float = 0.0
    charge_point: str = ""  # ocpp: the charge point id
    connector: int = 1  # ocpp: the connector (EVSE) number

    @property
    def key(self) -> str:
        if self.scheme == "ocpp":
            return f"ocpp://{self.charge_point}/{self.connector}"
        family = "dlt645-" if self.scheme.startswith("dlt645") else ""
        return f"{family}tcp://{self.host}:{self.port}" if self.is_tcp else f"{family}rtu://{self.device}"

    @property
    def is_tcp(self) -> bool:
        return self.scheme in TCP_SCHEMES

    @property
    def protocol(self) -> str:
        if self.scheme == "ocpp":
            return "ocpp"
        return "dlt645-2007" if self.scheme.startswith("dlt645") else "modbus"


def _number(url: str, query: dict[str, str], key: str, default: float, kind: type = int) -> Any:
    text = query.get(key)
    if text is None:
        return kind(default)
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{url!r}: {key} must be a number, got {text!r}") from None


def _check_options(url: str, query: dict[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise ValueError(f"{url!r}: unknown option {unknown[0]!r} (use {', '.join(allowed)})")


TCP_SCHEMES = {"modbus-tcp": 502, "dlt645-tcp": None}  # scheme -> default port (None: the URL must say)
SERIAL_SCHEMES = {"modbus-rtu": (9600, "N", 5.0), "dlt645": (2400, "E", 20.0)}  # baud, parity, spacing_ms
SCHEMES = (*TCP_SCHEMES, *SERIAL_SCHEMES, "ocpp")
OCPP_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,48}$")


def parse_device_url(url: str) -> Endpoint:
    """Parse a device URL; raise ValueError saying what is wrong.

    `modbus-tcp://host[:502]`, `modbus-rtu:///dev/ttyUSB0?baud=9600&parity=N`; DL/T 645 meters
    `dlt645:///dev/ttyUSB0?baud=2400&parity=E` (serial) or `dlt645-tcp://host:port` (a
    serial-to-Ethernet gateway in transparent mode)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    scheme = parts.scheme
    if scheme in TCP_SCHEMES:
        if not parts.hostname:
            raise ValueError(f"{url!r}: {scheme} needs a host ({scheme}://host:port)")
        try:
            port = parts.port or TCP_SCHEMES[scheme]
        except ValueError:
            raise ValueError(f"{url!r}: bad port") from None
        if port is None:
            raise ValueError(f"{url!r}: {scheme} needs the gateway's port ({scheme}://host:port)")
        _check_options(url, query, TCP_OPTIONS)
        spacing = _number(url, query, "spacing_ms", 0.0, float)
        if spacing < 0:
            raise ValueError(f"{url!r}: spacing_ms must not be negative")
        return Endpoint(scheme, host=parts.hostname, port=port, spacing_ms=spacing)
    if scheme in SERIAL_SCHEMES:
        if not parts.path or parts.path == "/":
            raise ValueError(f"{url!r}: {scheme} needs a serial device ({scheme}:///dev/ttyUSB0)")
        baud0, parity0, spacing0 = SERIAL_SCHEMES[scheme]
        _check_options(url, query, RTU_OPTIONS)
        parity = query.get("parity", parity0).upper()
        if parity not in ("N", "E", "O"):
            raise ValueError(f"{url!r}: parity must be N, E or O")
        baud = _number(url, query, "baud", baud0)
        stop = _number(url, query, "stop", 1)
        bits = _number(url, query, "bits", 8)
        spacing = _number(url, query, "spacing_ms", spacing0, float)
        if baud <= 0:
            raise ValueError(f"{url!r}: baud must be positive")
        if stop not in (1, 2):
            raise ValueError(f"{url!r}: stop must be 1 or 2")
        if bits not in (7, 8):
            raise ValueError(f"{url!r}: bits must be 7 or 8")
        if spacing < 0:
            raise ValueError(f"{url!r}: spacing_ms must not be negative")
        return Endpoint(scheme, device=parts.path, baud=baud, parity=parity, stopbits=stop,
                        bytesize=bits, spacing_ms=spacing)
    if scheme == "ocpp":
        return _ocpp_endpoint(url, parts.netloc, parts.path, query)
    raise ValueError(f"{url!r}: scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")


def _ocpp_endpoint(url: str, cp_id: str, path: str, query: dict[str, str]) -> Endpoint:
    """`ocpp://{charge_point_id}` (connector 1) or `ocpp://{charge_point_id}/{connector}`."""
    if not OCPP_ID.match(cp_id):
        raise ValueError(f"{url!r}: an OCPP charge point id is 1-48 letters, digits and ._:- (ocpp://CP001/1)")
    if query:
        raise ValueError(f"{url!r}: ocpp URLs take no options")
    connector = 1
    if path.strip("/"):
        try:
            connector = int(path.strip("/"))
        except ValueError:
            raise ValueError(f"{url!r}: the connector must be a number (ocpp://{cp_id}/1)") from None
        if connector < 1:
            raise ValueError(f"{url!r}: connectors count from 1")
    return Endpoint("ocpp", charge_point=cp_id, connector=connector)


@dataclass
class UnitHealth:
    """What one unit id on a bus has been doing (monotonic seconds)."""

    requests: int = 0
    failures: int = 0
    timeouts: int = 0
    exceptions: int = 0
    consecutive_failures: int = 0
    backoffs: int = 0
    backoff_s: float = 0.0
    backoff_until: float = 0.0
    last_error: str = ""
    last_ok: float | None = None

    def backed_off(self, now: float) -> bool:
        return now < self.backoff_until


class ModbusBus:
    """One connection to an endpoint, shared by every unit id behind it."""

    def __init__(self, endpoint: Endpoint, timeout_s: float = 0.5, reconnect_s: float = 2.0,
                 failures_before_backoff: int = 3, backoff_min_s: float = 5.0, backoff_max_s: float = 60.0) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.reconnect_s = reconnect_s
        self.failures_before_backoff = failures_before_backoff
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self._lock = asyncio.Lock()
        self._last_connect_try = -1e9
        self._last_request_end = 0.0
        self.requests = 0
        self.failures = 0
        self.busy_s = 0.0  # time the line spent on requests (incl. timeouts)
        self.silent_in_a_row = 0  # requests without any answer from any unit, in a row
        self.reconnects = 0
        self.units: dict[int, UnitHealth] = {}
        if endpoint.scheme == "modbus-tcp":
            self.client: AsyncModbusTcpClient | AsyncModbusSerialClient = AsyncModbusTcpClient(
                endpoint.host, port=endpoint.port, timeout=timeout_s, retries=0,
                reconnect_delay=0, reconnect_delay_max=0,
            )
        else:
            self.client = AsyncModbusSerialClient(
                endpoint.device, framer=FramerType.RTU, baudrate=endpoint.baud, parity=endpoint.parity,
                stopbits=endpoint.stopbits, bytesize=endpoint.bytesize, timeout=timeout_s, retries=0,
                reconnect_delay=0, reconnect_delay_max=0,
            )
        # a dead unit behind a gateway must not make pymodbus drop the link for the live ones;
        # the back-off below deals with dead units
        self.client.set_max_no_responses(1000)

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    def unit(self, unit: int) -> UnitHealth:
        h = self.units.get(unit)
        if h is None:
            h = self.units[unit] = UnitHealth()
        return h

    def health(self) -> dict[int, UnitHealth]:
        """Per-unit statistics: requests, failures, back-off state, last error."""
        return dict(self.units)

    def backed_off_units(self, now: float | None = None) -> list[int]:
        t = time.monotonic() if now is None else now
        return sorted(u for u, h in self.units.items() if h.backed_off(t))

    def _set_response_timeout(self, timeout_s: float) -> None:
        self.client.ctx.comm_params.timeout_connect = timeout_s

    async def _ensure_connected(self) -> None:
        if self.client.connected:
            return
        now = time.monotonic()
        if now - self._last_connect_try < self.reconnect_s:
            raise DeviceTimeout(f"{self.endpoint.key}: not connected (retrying)")
        self._last_connect_try = now
        self._set_response_timeout(max(self.timeout_s, 1.0))
        try:
            ok = await asyncio.wait_for(self.client.connect(), max(self.timeout_s * 2, 2.0))
        except (TimeoutError, OSError, ModbusException):
            ok = False
        if not ok:
            raise DeviceTimeout(f"{self.endpoint.key}: cannot connect")

    def _record_ok(self, h: UnitHealth, unit: int) -> None:
        self.silent_in_a_row = 0
        if h.backoffs and h.consecutive_failures >= self.failures_before_backoff:
            log.warning("%s unit %d answers again", self.endpoint.key, unit)
        h.consecutive_failures = 0
        h.backoff_s = 0.0
        h.backoff_until = 0.0
        h.last_ok = time.monotonic()

    def _record_failure(self, h: UnitHealth, unit: int, message: str, no_answer: bool) -> None:
        self.failures += 1
        h.failures += 1
        h.last_error = message
        if not no_answer:
            self.silent_in_a_row = 0
            h.exceptions += 1
            h.consecutive_failures = 0  # it answered: alive, the request was wrong
            return
        h.timeouts += 1
        h.consecutive_failures += 1
        self.silent_in_a_row += 1
        if (self.endpoint.scheme == "modbus-tcp" and self.silent_in_a_row >= self.failures_before_backoff
                and self.client.connected):
            # nobody behind this connection answers: it may be half-open (device rebooted,
            # gateway restarted); open a fresh one on the next request
            log.warning("%s: no answer to %d requests in a row, reconnecting", self.endpoint.key,
                        self.silent_in_a_row)
            self.client.close()
            self.reconnects += 1
            self.silent_in_a_row = 0
            self._last_connect_try = -1e9  # connect again at once
        if h.consecutive_failures >= self.failures_before_backoff:
            h.backoff_s = min(self.backoff_max_s, max(self.backoff_min_s, h.backoff_s * 2))
            h.backoff_until = time.monotonic() + h.backoff_s
            h.backoffs += 1
            log.warning("%s unit %d: %d failures in a row, backing off %.0f s (%s)", self.endpoint.key, unit,
                        h.consecutive_failures, h.backoff_s, message)

    async def _call(self, unit: int, coro_factory: Callable[[], Awaitable[Any]], what: str, timeout_s: float) -> Any:
        h = self.unit(unit)
        now = time.monotonic()
        if h.backed_off(now):
            raise DeviceBackedOff(
                f"{self.endpoint.key} {what}: not asked for {h.backoff_until - now:.0f} s more after "
                f"{h.consecutive_failures} failures ({h.last_error})"
            )
        async with self._lock:
            if h.backed_off(time.monotonic()):  # another request of this unit failed while we queued
                raise DeviceBackedOff(f"{self.endpoint.key} {what}: backed off ({h.last_error})")
            try:
                await self._ensure_connected()
            except DeviceTimeout as exc:
                self._record_failure(h, unit, str(exc), no_answer=True)
                raise
            if self.endpoint.spacing_ms > 0:
                wait = self._last_request_end + self.endpoint.spacing_ms / 1000.0 - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            self.requests += 1
            h.requests += 1
            self._set_response_timeout(timeout_s)
            start = time.monotonic()
            try:
                async with asyncio.timeout(timeout_s + 1.0):  # no extra task per request, unlike wait_for
                    resp = await coro_factory()
            except (TimeoutError, ModbusIOException):
                message = f"{self.endpoint.key} {what}: timeout after {timeout_s:.2f} s"
                self._record_failure(h, unit, message, no_answer=True)
                raise DeviceTimeout(message) from None
            except ModbusException as exc:
                message = f"{self.endpoint.key} {what}: {exc}"
                self._record_failure(h, unit, message, no_answer=True)
                raise DeviceTimeout(message) from None
            finally:
                self._last_request_end = time.monotonic()
                self.busy_s += self._last_request_end - start
        if isinstance(resp, ExceptionResponse) or resp.isError():
            code = int(getattr(resp, "exception_code", 0))
            message = (f"{self.endpoint.key} {what}: exception code {code} "
                       f"({EXCEPTION_CODES.get(code, 'unknown')})")
            self._record_failure(h, unit, message, no_answer=False)
            raise DeviceException(message, code)
        self._record_ok(h, unit)
        return resp

    async def read(self, fc: int, address: int, count: int, unit: int, timeout_s: float | None = None) -> list[int]:
        t = timeout_s or self.timeout_s
        what = f"unit {unit} read fc{fc} @{address}+{count}"
        if fc == 4:
            resp = await self._call(
                unit, lambda: self.client.read_input_registers(address, count=count, device_id=unit), what, t)
        elif fc == 3:
            resp = await self._call(
                unit, lambda: self.client.read_holding_registers(address, count=count, device_id=unit), what, t)
        else:
            raise ValueError(f"read function code must be 3 or 4, got {fc}")
        regs = list(getattr(resp, "registers", []))
        if len(regs) < count:
            message = f"{self.endpoint.key} {what}: short answer ({len(regs)} registers)"
            self._record_failure(self.unit(unit), unit, message, no_answer=False)
            raise DeviceError(message)
        return regs[:count]

    async def write(self, address: int, words: list[int], unit: int, fc: int = 16,
                    timeout_s: float | None = None) -> None:
        t = timeout_s or self.timeout_s
        what = f"unit {unit} write fc{fc} @{address}"
        if fc == 6:
            if len(words) != 1:
                raise ValueError(f"function code 6 writes one register, got {len(words)}")
            await self._call(unit, lambda: self.client.write_register(address, words[0], device_id=unit), what, t)
        elif fc == 16:
            await self._call(unit, lambda: self.client.write_registers(address, words, device_id=unit), what, t)
        else:
            raise ValueError(f"write function code must be 6 or 16, got {fc}")

    def close(self) -> None:
        self.client.close()


def shared_endpoint(opened: dict[str, Any], url: str, open_new: Callable[[Endpoint], Any]) -> Any:
    """The connection `opened` holds for `url`'s endpoint, opened with `open_new` on first use; a
    second URL for the same endpoint with other settings keeps the first (and says so)."""
    ep = parse_device_url(url)
    conn = opened.get(ep.key)
    if conn is None:
        conn = opened[ep.key] = open_new(ep)
    elif conn.endpoint != ep:
        log.warning("%s: %s is already open with other settings; keeping %s", url, ep.key, conn.endpoint)
    return conn


class BusPool:
    """The buses of a site, one per endpoint."""

    def __init__(self) -> None:
        self._buses: dict[str, ModbusBus] = {}

    def get(self, url: str, timeout_s: float = 0.5) -> ModbusBus:
        """The bus for `url` (created on first use). Per-device timeouts are passed to each
        read/write; `timeout_s` is only the bus's default."""
        return shared_endpoint(self._buses, url, lambda ep: ModbusBus(ep, timeout_s=timeout_s))

    def buses(self) -> list[ModbusBus]:
        return list(self._buses.values())

    def health(self) -> dict[str, dict[int, UnitHealth]]:
        """Per bus, per unit: requests, failures and back-off (for logs and metrics)."""
        return {key: bus.health() for key, bus in self._buses.items()}

    def close(self) -> None:
        for b in self._buses.values():
            b.close()
