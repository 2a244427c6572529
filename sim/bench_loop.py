"""`youxu bench loop`: the real daemon against simulated devices in another process, over
loopback Modbus TCP, ticking in real time; reports tick-time percentiles and deadline misses."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from youxu.config.errors import UserError
from youxu.controller.daemon import Daemon, start_api
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
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    line = proc.stdout.readline() if proc.stdout else ""
    if "ready" not in line:
        err = proc.stderr.read() if proc.stderr else ""
        proc.kill()
        raise UserError(f"simulated devices did not start: {line.strip()} {err.strip()[-300:]}")
    return proc


def _start_load(url: str, token: str, rps: float, seconds: float) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "youxu.sim.api_load", "--url", url, "--token", token, "--rps", str(rps),
           "--seconds", str(seconds)]
    # the clients are phones and laptops elsewhere: here they run at the lowest priority, so that what is
    # measured is the daemon serving them, not the load generator's own CPU
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=lambda: os.nice(19))


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")]))


async def _run(cfg, seconds: float, api_rps: float = 0.0, token: str = "") -> tuple[Daemon, dict]:
    load: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.sqlite")
        daemon = Daemon.build(cfg, clock=RealClock(), link=NoGridLink(), store=store)
        api = start_api(daemon) if api_rps > 0 else None
        client = _start_load(api.url, token, api_rps, seconds) if api is not None else None
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        try:
            await daemon.loop.run(stop)
        finally:
            if client is not None:
                done = asyncio.get_running_loop().run_in_executor(None, lambda: client.communicate(timeout=30))
                out, err = await done
                load = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err.strip()[-300:]}
            if api is not None:
                api.stop()
            daemon.close()
    return daemon, load


def bench_loop(piles: int, seconds: float, budget_ms: float | None = None, period_s: float = 1.0,
               api_rps: float = 0.0) -> dict:
    """`api_rps` > 0: the daemon also serves its local API, polled at that rate with a status page open."""
    if piles <= 0 or seconds <= 0 or api_rps < 0:
        raise UserError("--piles and --seconds must be positive, --api-rps not negative")
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
            token = secrets.token_urlsafe(18)
            raw["api"] = {"listen": None}
            if api_rps > 0:
                (Path(tmp) / "tokens").write_text(f"bench:{token}:read\n", encoding="utf-8")
                raw["api"] = {"listen": "127.0.0.1:0", "tokens_file": str(Path(tmp) / "tokens"),
                              "rate_per_s": max(20.0, 2 * api_rps), "rate_burst": max(40, int(4 * api_rps))}
            cfg = parse_site_config(raw, "bench config")
            daemon, load = asyncio.run(_run(cfg, seconds, api_rps, token))
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
        **({"api_rps": api_rps, "api_requests": load.get("requests"), "api_errors": load.get("errors"),
            "live_messages": load.get("live_messages")} if api_rps > 0 else {}),
    }
