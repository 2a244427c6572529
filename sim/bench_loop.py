"""`youxu bench loop`: the real daemon against simulated devices in another process, over
loopback Modbus TCP, ticking in real time; reports tick-time percentiles and deadline misses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from youxu.config.errors import UserError
from youxu.controller.daemon import Daemon
from youxu.controller.gridlink import NoGridLink
from youxu.controller.siteconfig import parse_site_config
from youxu.controller.store.storage import Store
from youxu.drivers.clock import RealClock
from youxu.sim.devices import METER_UNIT, DeviceAddress
from youxu.sim.ports import free_port_block
from youxu.sim.scenario import save_scenario
from youxu.sim.site_config import scenario_site_config
from youxu.sim.synthetic import busy_site


def _start_devices(scenario_path: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "youxu.controller.cli", "sim", "serve", "--scenario", str(scenario_path),
           "--modbus-port", str(port), "--layout", "ports", "--speed", "1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline() if proc.stdout else ""
    if "ready" not in line:
        err = proc.stderr.read() if proc.stderr else ""
        proc.kill()
        raise UserError(f"simulated devices did not start: {line.strip()} {err.strip()[-300:]}")
    return proc


async def _run(cfg, seconds: float) -> Daemon:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.sqlite")
        daemon = Daemon.build(cfg, clock=RealClock(), link=NoGridLink(), store=store)
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        try:
            await daemon.loop.run(stop)
        finally:
            daemon.close()
    return daemon


def bench_loop(piles: int, seconds: float, budget_ms: float | None = None, period_s: float = 1.0) -> dict:
    if piles <= 0 or seconds <= 0:
        raise UserError("--piles and --seconds must be positive")
    sc = busy_site(piles, duration_s=int(seconds) + 600)
    port = free_port_block(piles + 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenario.json"
        save_scenario(sc, path)
        proc = _start_devices(path, port)
        try:
            addresses = {"meter": DeviceAddress(f"modbus-tcp://127.0.0.1:{port}", METER_UNIT)}
            for i, p in enumerate(sc.piles):
                addresses[p.id] = DeviceAddress(f"modbus-tcp://127.0.0.1:{port + 1 + i}", 1)
            control = {"period_s": period_s}
            if budget_ms is not None:
                control["budget_ms"] = budget_ms
            raw = scenario_site_config(sc, addresses, site_id="bench", state_dir=tmp, control=control)
            cfg = parse_site_config(raw, "bench config")
            daemon = asyncio.run(_run(cfg, seconds))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    st = daemon.loop.stats
    ticks = np.asarray(st.tick_ms) if st.tick_ms else np.zeros(1)
    return {
        "piles": piles,
        "ticks": st.ticks,
        "tick_ms_p50": round(float(np.percentile(ticks, 50)), 2),
        "tick_ms_p99": round(float(np.percentile(ticks, 99)), 2),
        "deadline_misses": st.deadline_misses,
        "budget_ms": cfg.control.budget_ms,
        "strategy": cfg.control.strategy,
        "plan_ms_p99": round(float(np.percentile(st.plan_ms, 99)), 2) if st.plan_ms else None,
        "fallbacks": st.fallbacks,
        **{f"{k}_ms_p50": round(float(np.percentile(v, 50)), 2) for k, v in st.phase_ms.items() if v},
    }
