"""`youxu demo`: a simulated community, served over Modbus TCP on loopback, controlled by the
real daemon for one day on a virtual clock, stored in SQLite; writes the simulator outputs."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from pathlib import Path

import numpy as np

from youxu.controller.daemon import Daemon, start_api
from youxu.controller.siteconfig import parse_site_config
from youxu.controller.store.storage import Store
from youxu.sim.app_link import ScenarioLink
from youxu.sim.device_process import DeviceProcess
from youxu.sim.devices import outcome_result
from youxu.sim.dispatch_arrays import scenario_dispatch_fn
from youxu.sim.outputs import write_outputs
from youxu.sim.ports import free_port_block
from youxu.sim.scenario import Scenario, save_scenario
from youxu.sim.site_config import scenario_site_config, write_site_config


def demo_scenario(preset: str, seed: int) -> Scenario:
    from youxu.sim.generate import generate_scenario

    return generate_scenario(preset, seed=seed)


class Progress:
    def __init__(self, total_s: float, quiet: bool) -> None:
        # a bar redrawn in place only makes sense on a terminal
        self.total_s, self.quiet, self.last = total_s, quiet or not sys.stderr.isatty(), -1

    def __call__(self, done_s: float) -> None:
        if self.quiet:
            return
        pct = int(100 * done_s / self.total_s)
        if pct // 5 != self.last // 5:
            self.last = pct
            bar = "#" * (pct // 5) + "." * (20 - pct // 5)
            sys.stderr.write(f"\r  simulating [{bar}] {pct:3d}%")
            sys.stderr.flush()
            if pct >= 100:
                sys.stderr.write("\n")


def demo_tokens(out: Path) -> tuple[Path, str]:
    """A write token for the demo's page (bookings and overrides), in `out/api-tokens`."""
    token = secrets.token_urlsafe(18)
    path = out / "api-tokens"
    path.write_text(f"# the demo's own token: bookings and overrides from the status page\ndemo:{token}:write\n",
                    encoding="utf-8")
    path.chmod(0o600)
    return path, token


async def demo_async(out: Path, sc: Scenario, quiet: bool = False, serve: str | None = None) -> dict:
    """`serve`: also serve the status page and API on this address while the day runs."""
    t_wall = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    epoch0 = sc.start.timestamp()
    devices = DeviceProcess(sc, port=free_port_block(1 + len(sc.piles)), layout="ports")
    addresses = await asyncio.get_running_loop().run_in_executor(None, devices.start)
    clock = devices.clock
    raw_cfg = scenario_site_config(sc, addresses, site_id="demo", state_dir=str(out),
                                   # one tick per simulated minute: the piles' 30 s communication
                                   # timeout would trip between ticks, so their failsafe stays off
                                   control={"period_s": sc.step_s, "budget_ms": 1000.0, "failsafe": False,
                                            "planning_period_s": 900.0, "plan_in_thread": False})
    # a simulated day in a minute: open sessions saved every simulated 10 min, no metrics endpoint
    raw_cfg["storage"]["state_period_s"] = 600.0
    raw_cfg["metrics"] = {"listen": None}
    token = None
    raw_cfg["api"] = {"listen": None}
    if serve:
        tokens_file, token = demo_tokens(out)
        raw_cfg["api"] = {"listen": serve, "tokens_file": str(tokens_file)}
    write_site_config(out / "site.yaml", raw_cfg)
    cfg = parse_site_config(raw_cfg, "demo site config")
    store = Store(f"sqlite:///{(out / 'youxu.sqlite').resolve()}", flush_s=0.5, pile_rows_every=1)
    link = ScenarioLink(sc, clock)
    daemon = Daemon.build(cfg, clock=clock, link=link, store=store)
    progress = Progress(sc.duration_s, quiet)
    stop = asyncio.Event()
    end_s = epoch0 + sc.duration_s

    async def watch() -> None:
        while not stop.is_set():
            progress(clock.now() - epoch0)
            await asyncio.sleep(0.2)

    api = None
    try:
        if serve:
            api = start_api(daemon)
            if api is not None:
                print(f"youxu demo: status page on {api.url} while the day runs (write token {token}, "
                      f"in {out / 'api-tokens'})", flush=True)
    except BaseException:
        daemon.close()
        await asyncio.get_running_loop().run_in_executor(None, devices.stop)
        raise
    watcher = asyncio.create_task(watch())
    try:
        await daemon.program_failsafe()
        await daemon.loop.run(stop, until_s=end_s)
    finally:
        stop.set()
        await watcher
        progress(sc.duration_s)
        if api is not None:
            api.stop()
        daemon.save()
        daemon.close()
        outcome = await asyncio.get_running_loop().run_in_executor(None, devices.stop)
    epoch = epoch0 + sc.step_times_s()
    d = scenario_dispatch_fn(sc)(epoch)
    limit_kw = np.minimum(sc.site.limit_kw, d.site_import_max_kw)
    st = daemon.loop.stats
    res = outcome_result(sc, outcome, f"daemon-{cfg.control.strategy}", limit_kw, list(st.plan_ms), st.fallbacks,
                         time.perf_counter() - t_wall)
    kpis = write_outputs(out, res)
    save_scenario(sc, out / "scenario.json")
    p50, p99 = daemon.loop.tick_percentiles()
    summary = {"kpis": kpis, "ticks": st.ticks, "tick_ms_p50": round(p50, 2), "tick_ms_p99": round(p99, 2),
               "deadline_misses": st.deadline_misses, "modbus_requests": int(outcome["requests"][0]),
               "stored_rows": store.written, "wall_s": round(time.perf_counter() - t_wall, 2)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def format_summary(out: Path, sc: Scenario, s: dict) -> str:
    k = s["kpis"]
    req = k["energy_requested_kwh"] or 1.0
    return "\n".join([
        f"youxu demo — {sc.name}: {len(sc.piles)} piles, {len(sc.sessions)} sessions, "
        f"transformer {sc.site.transformer_kva:g} kVA (limit {sc.site.limit_kw:g} kW)",
        f"  energy delivered   {k['energy_delivered_kwh']:.1f} of {k['energy_requested_kwh']:.1f} kWh "
        f"({100 * k['energy_delivered_kwh'] / req:.1f} %), {k['sessions_fully_served']}/{k['sessions_total']} "
        f"sessions fully served",
        f"  transformer peak   {k['peak_total_kw']:.1f} kW (households alone {k['peak_base_kw']:.1f} kW), "
        f"valley {k['valley_total_kw']:.1f} kW",
        f"  limit violations   {k['limit_violation_steps']} steps (largest {k['max_violation_kw']:.2f} kW)",
        f"  V2G discharged     {k['v2g_discharged_kwh']:.1f} kWh; import cost {k['import_cost_yuan']:.0f} yuan",
        f"  control loop       {s['ticks']} ticks over Modbus TCP, tick p50 {s['tick_ms_p50']:.1f} ms, "
        f"p99 {s['tick_ms_p99']:.1f} ms, {s['deadline_misses']} over budget",
        f"  outputs            {out}/ (scenario.json, kpis.json, timeseries.csv, schedule.csv, report.html, "
        f"youxu.sqlite) in {s['wall_s']:.1f} s",
    ])


def run_demo(out: Path, preset: str = "old-community", seed: int = 1, quiet: bool = False,
             serve: str | None = None) -> int:
    sc = demo_scenario(preset, seed)
    summary = asyncio.run(demo_async(out, sc, quiet, serve))
    print(format_summary(out, sc, summary))
    return 0
