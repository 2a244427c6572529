"""Simulated devices in a process of their own, on a virtual clock shared through memory.

The controlling process owns the time: it moves the shared clock forward while it sleeps
between ticks; the device process reads the same clock on every Modbus request. Both sides
run in parallel, as a gateway and its field devices do, and a simulated day takes as long as
the Modbus traffic needs, not a day.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized

import numpy as np

from youxu.config.errors import UserError
from youxu.sim.devices import DeviceAddress, SimulatedSite
from youxu.sim.scenario import Scenario, parse_scenario


class SharedClock:
    """A virtual clock whose time is a double in shared memory."""

    speed = float("inf")

    def __init__(self, value: Synchronized) -> None:
        self._v = value

    def now(self) -> float:
        return float(self._v.value)

    def set(self, t_s: float) -> None:
        if t_s > self._v.value:
            self._v.value = float(t_s)

    async def sleep_until(self, t_s: float) -> None:
        self.set(t_s)
        await asyncio.sleep(0)


async def _child_main(scenario_json: str, port: int, layout: str, value: Synchronized, conn: Connection) -> None:
    sc = parse_scenario(__import__("json").loads(scenario_json), "scenario")
    site = SimulatedSite(sc, SharedClock(value))
    try:
        await site.start(port=port, layout=layout)
    except OSError as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ready", {k: (a.url, a.unit) for k, a in site.addresses.items()}))
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_reader(conn.fileno(), stopped.set)
    await stopped.wait()
    loop.remove_reader(conn.fileno())
    conn.recv()
    await site.stop()
    conn.send(("outcome", site.outcome()))


def _child(scenario_json: str, port: int, layout: str, value: Synchronized, conn: Connection) -> None:
    asyncio.run(_child_main(scenario_json, port, layout, value, conn))


class DeviceProcess:
    """Start with `start()`, read the clock with `clock`, end with `stop()` for the outcome."""

    def __init__(self, sc: Scenario, port: int, layout: str = "units") -> None:
        ctx = mp.get_context("spawn")
        self.sc = sc
        self._value = ctx.Value("d", sc.start.timestamp(), lock=False)
        self.clock = SharedClock(self._value)
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(sc.to_json(), port, layout, self._value, child_conn),
                                 daemon=True, name="youxu-sim-devices")
        self.addresses: dict[str, DeviceAddress] = {}

    def start(self, timeout_s: float = 60.0) -> dict[str, DeviceAddress]:
        self._proc.start()
        if not self._conn.poll(timeout_s):
            self._proc.kill()
            raise UserError("simulated devices did not start in time")
        kind, payload = self._conn.recv()
        if kind != "ready":
            self._proc.join(5)
            raise UserError(f"simulated devices could not start: {payload}")
        self.addresses = {k: DeviceAddress(url, unit) for k, (url, unit) in payload.items()}
        return self.addresses

    def stop(self, timeout_s: float = 60.0) -> dict[str, np.ndarray]:
        self._conn.send("stop")
        if not self._conn.poll(timeout_s):
            self._proc.kill()
            raise UserError("simulated devices did not stop")
        _kind, outcome = self._conn.recv()
        self._proc.join(timeout_s)
        return outcome

    def kill(self) -> None:
        if self._proc.is_alive():
            self._proc.kill()
