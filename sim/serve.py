"""`youxu sim serve`: a scenario's devices on Modbus TCP (and its dispatch on MQTT) in real or
accelerated time, for hardware-in-the-loop tests of a `youxu run` daemon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

import numpy as np

from youxu.config.errors import UserError
from youxu.drivers.clock import ScaledClock
from youxu.sim.devices import MAX_UNITS_PER_PORT, SimulatedSite
from youxu.sim.scenario import Scenario
from youxu.sim.site_config import scenario_site_config, write_site_config

log = logging.getLogger(__name__)


async def serve_async(sc: Scenario, speed: float, host: str, port: int, layout: str, mqtt_url: str | None,
                      site_id: str, write_config: Path | None, out: Path | None,
                      stop: asyncio.Event | None = None, units_per_port: int = MAX_UNITS_PER_PORT) -> SimulatedSite:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    clock = ScaledClock(sc.start.timestamp(), speed)
    site = SimulatedSite(sc, clock)
    try:
        await site.start(host=host, port=port, layout=layout, units_per_port=units_per_port)
    except OSError as exc:
        raise UserError(f"--modbus-port {port}: {exc}") from None
    t_wall = time.perf_counter()
    tasks: list[asyncio.Task] = []
    if mqtt_url and sc.dispatch:
        from youxu.sim.dispatch_publisher import publish_scenario_dispatch

        # a daemon on the wall clock checks issued_at against its own time: at real speed the commands
        # are moved from the scenario's calendar to today; faster, they keep the scenario's times
        shift_s = time.time() - sc.start.timestamp() if speed == 1.0 else 0.0
        if speed != 1.0:
            log.warning("at speed %g the dispatch commands carry scenario times; a daemon on the wall clock "
                        "will reject them as STALE", speed)
        tasks.append(asyncio.create_task(publish_scenario_dispatch(mqtt_url, site_id, sc, clock, stop,
                                                                   shift_s=shift_s)))
    if write_config is not None:
        cfg = scenario_site_config(sc, site.addresses, site_id=site_id, mqtt_url=mqtt_url)
        write_site_config(write_config, cfg)
    n_ports = len({a.url for a in site.addresses.values()})
    print(f"youxu sim serve: ready — {sc.name}: meter and {len(sc.piles)} piles on modbus-tcp://{host}:{port}"
          f" ({n_ports} port{'s' if n_ports > 1 else ''}, layout {layout}), speed {speed:g}x"
          + (f", config {write_config}" if write_config else ""), flush=True)
    end_epoch = sc.start.timestamp() + sc.duration_s
    try:
        while not stop.is_set() and clock.now() < end_epoch:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            site.state_now()  # keep physics moving even when nobody reads
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await site.stop()
    if out is not None:
        from youxu.sim.dispatch_arrays import scenario_dispatch_fn
        from youxu.sim.outputs import write_outputs

        epoch = sc.start.timestamp() + sc.step_times_s()
        limit = np.minimum(sc.site.limit_kw, scenario_dispatch_fn(sc)(epoch).site_import_max_kw)
        write_outputs(out, site.result("external", limit, [], 0, time.perf_counter() - t_wall))
    return site


def serve(sc: Scenario, speed: float, host: str, port: int, layout: str, mqtt_url: str | None, site_id: str,
          write_config: Path | None, out: Path | None, units_per_port: int = MAX_UNITS_PER_PORT) -> int:
    asyncio.run(serve_async(sc, speed, host, port, layout, mqtt_url, site_id, write_config, out,
                            units_per_port=units_per_port))
    print("youxu sim serve: stopped", flush=True)
    return 0
