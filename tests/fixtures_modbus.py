"""Modbus test fixtures: devices served from register images over loopback TCP and over a
virtual RS-485 line (a socat pty pair), on an event loop of their own in a background thread,
so both async tests and the real `youxu` command line (which runs its own loop) can talk to them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from youxu.drivers.failsafe import fallback_active
from youxu.drivers.profiles import load_profile
from youxu.sim.register_image import RegisterImage, serve_image

WriteLog = list[tuple[int, int, list[int]]]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ModbusServers:
    """pymodbus servers running on a private event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="modbus-servers", daemon=True)
        self.thread.start()
        self.servers: list[ModbusTcpServer | ModbusSerialServer] = []
        self.tasks: list[asyncio.Task] = []

    def call(self, coro, timeout_s: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def tcp(self, devices: list[SimDevice], port: int | None = None) -> str:
        """Serve `devices` on a loopback port (a free one by default); return the device URL."""
        port = port or free_tcp_port()

        async def start() -> None:
            srv = ModbusTcpServer(devices, address=("127.0.0.1", port))
            self.servers.append(srv)
            self.tasks.append(asyncio.create_task(srv.serve_forever()))

        self.call(start())
        deadline = time.monotonic() + 5.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        return f"modbus-tcp://127.0.0.1:{port}"

    def rtu(self, devices: list[SimDevice], tty: str, baud: int = 38400) -> None:
        """Serve `devices` as RTU slaves on serial device `tty` (units not served stay silent)."""

        async def start() -> None:
            srv = ModbusSerialServer(devices, framer=FramerType.RTU, port=tty, baudrate=baud,
                                     ignore_missing_devices=True)
            self.servers.append(srv)
            self.tasks.append(asyncio.create_task(srv.serve_forever()))
            await asyncio.sleep(0.2)

        self.call(start())

    def close(self) -> None:
        async def stop() -> None:
            for srv in self.servers:
                with contextlib.suppress(Exception):
                    await srv.shutdown()
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def modbus_servers() -> Iterator[ModbusServers]:
    servers = ModbusServers()
    yield servers
    servers.close()


@pytest.fixture
def serial_pair() -> Iterator[tuple[str, str]]:
    """Two connected pseudo-terminals (a virtual RS-485 line): (device side, youxu side)."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    proc = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    text = b""
    ptys: list[str] = []
    deadline = time.monotonic() + 5.0
    try:
        while len(ptys) < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                text += chunk
                ptys = re.findall(r"PTY is (\S+)", text.decode(errors="replace"))
        if len(ptys) < 2:
            pytest.skip("socat did not open a pty pair")
        yield ptys[0], ptys[1]
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def silent_device(unit: int) -> SimDevice:
    """A unit that never answers (a dead device on the bus, or a wrong unit id)."""

    async def never(fc: int, start: int, address: int, count: int, registers: list[int],
                    values: list[int] | list[bool] | None) -> ExcCodes | None:
        await asyncio.sleep(3600)
        return None

    return _raw_device(unit, never)


def slow_device(unit: int, delay_s: float, inner: SimDevice) -> SimDevice:
    """`inner`'s answers, but each after `delay_s` (a device slower than its timeout)."""

    async def late(fc: int, start: int, address: int, count: int, registers: list[int],
                   values: list[int] | list[bool] | None) -> ExcCodes | None:
        await asyncio.sleep(delay_s)
        return await inner.action(fc, start, address, count, registers, values)  # type: ignore[misc]

    return SimDevice(id=unit, simdata=inner.simdata, action=late)  # type: ignore[arg-type]


def _raw_device(unit: int, action: Callable) -> SimDevice:
    blocks = (
        [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
        [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
        [SimData(0, count=65535, values=0, datatype=DataType.UINT16)],
        [SimData(0, count=65535, values=0, datatype=DataType.UINT16)],
    )
    return SimDevice(id=unit, simdata=blocks, action=action)  # type: ignore[arg-type]


class FastClock:
    """Epoch seconds running `speed` times faster than real time (thread-safe: read only)."""

    def __init__(self, speed: float = 20.0, start_s: float = 1_782_900_000.0) -> None:
        self.speed = speed
        self.start_s = start_s
        self.origin = time.monotonic()

    def now(self) -> float:
        return self.start_s + (time.monotonic() - self.origin) * self.speed

    async def sleep_until(self, t_s: float) -> None:
        delay = (t_s - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class FailsafePileModel:
    """The simulated pile (youxu-sim-pile map) honouring its failsafe registers: it draws its
    setpoint (the car takes all it is given) until nothing has been written for the failsafe
    timeout, then the failsafe power."""

    clock: FastClock
    image: RegisterImage = field(default_factory=lambda: RegisterImage(load_profile("youxu-sim-pile")))
    setpoint_kw: float = 0.0
    failsafe_kw: float = 0.0
    timeout_s: float = 0.0
    last_write_s: float = 0.0
    writes: WriteLog = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last_write_s = self.clock.now()

    @property
    def fallen_back(self) -> bool:
        return fallback_active(self.clock.now(), self.last_write_s, self.timeout_s)

    def applied_kw(self) -> float:
        return self.failsafe_kw if self.fallen_back else self.setpoint_kw

    def on_read(self) -> None:
        kw = self.applied_kw()
        self.image.set("power", kw)
        self.image.set("status", 2 if kw > 0 else 1)

    def on_write(self, name: str, value: float) -> None:
        self.last_write_s = self.clock.now()
        if name == "setpoint":
            self.setpoint_kw = value
        elif name == "failsafe_current":
            self.failsafe_kw = value
        elif name == "failsafe_timeout":
            self.timeout_s = value

    def device(self, unit: int = 1) -> SimDevice:
        return serve_image(self.image, unit, on_read=self.on_read, on_write=self.on_write, write_log=self.writes)
