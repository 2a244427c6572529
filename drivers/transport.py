"""Modbus transports: device URLs and one shared connection ("bus") per endpoint.

`modbus-tcp://host:port` — one TCP connection per host:port, shared by the unit ids behind it.
`modbus-rtu:///dev/ttyUSB0?baud=9600&parity=N&stop=1&spacing_ms=5` — one serial line shared by
every device on that RS-485 bus: one request at a time, with a pause between requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse

log = logging.getLogger(__name__)

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class DeviceError(Exception):
    """A device did not answer, answered with an exception code, or answered garbage."""


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
    scheme: str  # modbus-tcp | modbus-rtu
    host: str = ""
    port: int = 502
    device: str = ""  # serial device path
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    spacing_ms: float = 0.0

    @property
    def key(self) -> str:
        return f"tcp://{self.host}:{self.port}" if self.scheme == "modbus-tcp" else f"rtu://{self.device}"


def parse_device_url(url: str) -> Endpoint:
    """Parse a device URL; raise ValueError saying what is wrong."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "modbus-tcp":
        if not parts.hostname:
            raise ValueError(f"{url!r}: modbus-tcp needs a host (modbus-tcp://host:port)")
        try:
            port = parts.port or 502
        except ValueError:
            raise ValueError(f"{url!r}: bad port") from None
        return Endpoint("modbus-tcp", host=parts.hostname, port=port,
                        spacing_ms=float(query.get("spacing_ms", 0)))
    if parts.scheme == "modbus-rtu":
        if not parts.path:
            raise ValueError(f"{url!r}: modbus-rtu needs a serial device (modbus-rtu:///dev/ttyUSB0)")
        parity = query.get("parity", "N").upper()
        if parity not in ("N", "E", "O"):
            raise ValueError(f"{url!r}: parity must be N, E or O")
        try:
            return Endpoint(
                "modbus-rtu",
                device=parts.path,
                baud=int(query.get("baud", 9600)),
                parity=parity,
                stopbits=int(query.get("stop", 1)),
                bytesize=int(query.get("bits", 8)),
                spacing_ms=float(query.get("spacing_ms", 5)),
            )
        except ValueError:
            raise ValueError(f"{url!r}: baud, stop, bits and spacing_ms must be numbers") from None
    raise ValueError(f"{url!r}: scheme must be modbus-tcp:// or modbus-rtu://")


class ModbusBus:
    """One connection to an endpoint, shared by every unit id behind it."""

    def __init__(self, endpoint: Endpoint, timeout_s: float = 0.5, reconnect_s: float = 2.0) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.reconnect_s = reconnect_s
        self._lock = asyncio.Lock()
        self._last_connect_try = -1e9
        self._last_request_end = 0.0
        self.requests = 0
        self.failures = 0
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

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    async def _ensure_connected(self) -> None:
        if self.client.connected:
            return
        now = time.monotonic()
        if now - self._last_connect_try < self.reconnect_s:
            raise DeviceError(f"{self.endpoint.key}: not connected (retrying)")
        self._last_connect_try = now
        try:
            ok = await asyncio.wait_for(self.client.connect(), self.timeout_s * 2)
        except (TimeoutError, OSError, ModbusException):
            ok = False
        if not ok:
            raise DeviceError(f"{self.endpoint.key}: cannot connect")

    async def _call(self, coro_factory, what: str, timeout_s: float):
        async with self._lock:
            await self._ensure_connected()
            if self.endpoint.spacing_ms > 0:
                wait = self._last_request_end + self.endpoint.spacing_ms / 1000.0 - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            self.requests += 1
            try:
                resp = await asyncio.wait_for(coro_factory(), timeout_s)
            except TimeoutError:
                self.failures += 1
                raise DeviceError(f"{self.endpoint.key} {what}: timeout after {timeout_s:.2f} s") from None
            except ModbusException as exc:
                self.failures += 1
                raise DeviceError(f"{self.endpoint.key} {what}: {exc}") from None
            finally:
                self._last_request_end = time.monotonic()
        if isinstance(resp, ExceptionResponse) or resp.isError():
            code = getattr(resp, "exception_code", 0)
            self.failures += 1
            raise DeviceError(
                f"{self.endpoint.key} {what}: exception code {code} ({EXCEPTION_CODES.get(code, 'unknown')})"
            )
        return resp

    async def read(self, fc: int, address: int, count: int, unit: int, timeout_s: float | None = None) -> list[int]:
        t = timeout_s or self.timeout_s
        what = f"unit {unit} read fc{fc} @{address}+{count}"
        if fc == 4:
            resp = await self._call(
                lambda: self.client.read_input_registers(address, count=count, device_id=unit), what, t)
        else:
            resp = await self._call(
                lambda: self.client.read_holding_registers(address, count=count, device_id=unit), what, t)
        if len(resp.registers) < count:
            raise DeviceError(f"{self.endpoint.key} {what}: short answer ({len(resp.registers)} registers)")
        return list(resp.registers[:count])

    async def write(self, address: int, words: list[int], unit: int, fc: int = 16,
                    timeout_s: float | None = None) -> None:
        t = timeout_s or self.timeout_s
        what = f"unit {unit} write fc{fc} @{address}"
        if fc == 6 and len(words) == 1:
            await self._call(lambda: self.client.write_register(address, words[0], device_id=unit), what, t)
        else:
            await self._call(lambda: self.client.write_registers(address, words, device_id=unit), what, t)

    def close(self) -> None:
        self.client.close()


class BusPool:
    """The buses of a site, one per endpoint."""

    def __init__(self) -> None:
        self._buses: dict[str, ModbusBus] = {}

    def get(self, url: str, timeout_s: float = 0.5) -> ModbusBus:
        ep = parse_device_url(url)
        bus = self._buses.get(ep.key)
        if bus is None:
            bus = self._buses[ep.key] = ModbusBus(ep, timeout_s=timeout_s)
        return bus

    def buses(self) -> list[ModbusBus]:
        return list(self._buses.values())

    def close(self) -> None:
        for b in self._buses.values():
            b.close()
