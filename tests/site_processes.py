"""A simulated site run as the product runs: `youxu sim serve` and `youxu run` in processes of
their own, commands from the Mosquitto command-line publisher, and probes that read what
happened (the transformer meter over Modbus with the project's drivers, the daemon's own
readings table, the broker's messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.fixtures_mqtt import GridClient, Received
from tests.scenarios import small_site
from youxu.controller.grid.dispatch_schema import parse_rfc3339
from youxu.drivers.meter import ModbusMeter
from youxu.drivers.profiles import load_profile
from youxu.drivers.transport import DeviceError, ModbusBus, parse_device_url
from youxu.sim.ports import free_port
from youxu.sim.scenario import Scenario, save_scenario

REPO = Path(__file__).resolve().parent.parent
CST = timezone(timedelta(hours=8))


def mosquitto_pub_binary() -> str | None:
    for cand in (os.environ.get("MOSQUITTO_PUB"), shutil.which("mosquitto_pub"), "/usr/bin/mosquitto_pub"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def rfc3339(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, CST).isoformat(timespec="seconds")


def scenario_from_now(path: Path, *, n_piles: int, base_kw: float, limit_kw: float, lead_s: float = 3.0) -> Scenario:
    """`small_site` starting `lead_s` ago (so the sim's day is today's), one hour long, saved to `path`."""
    start = datetime.fromtimestamp(int(time.time() - lead_s), CST).isoformat()
    sc = small_site(n_piles=n_piles, base_kw=base_kw, limit_kw=limit_kw, hours=1, start=start)
    save_scenario(sc, path)
    return sc


# ---- processes ------------------------------------------------------------------------------
class CliProcess:
    """`python -m youxu.controller.cli ARGS` in the repository, its output in a log file."""

    def __init__(self, name: str, args: list[str], workdir: Path) -> None:
        self.name, self.args = name, args
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # the test's own import path first (the package under test), then the repository (for tests.*)
        path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)
        env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "youxu.controller.cli", *self.args], cwd=REPO, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, tail_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail_chars:]
        except OSError:
            return ""

    async def wait_for_output(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log(10**6):
                return
            if not self.running:
                raise AssertionError(f"{self.name} exited ({self.proc and self.proc.returncode}):\n{self.log()}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name}: no {text!r} within {timeout_s} s:\n{self.log()}")

    def kill9(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would: nothing is flushed or said goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def sim_serve(workdir: Path, scenario: Path, modbus_port: int, mqtt_url: str, site_id: str) -> CliProcess:
    config = workdir / "site.yaml"
    return CliProcess("sim-serve", ["sim", "serve", "--scenario", str(scenario), "--modbus-port", str(modbus_port),
                                    "--mqtt", mqtt_url, "--site-id", site_id, "--write-config", str(config),
                                    "--speed", "1"], workdir)


def daemon(workdir: Path, config: Path) -> CliProcess:
    return CliProcess("youxu-run", ["run", "--config", str(config)], workdir)


def edit_site_config(path: Path, state_dir: Path, *, control: dict[str, Any] | None = None,
                     mqtt: dict[str, Any] | None = None, margin_kw: float | None = None,
                     api: dict[str, Any] | None = None) -> dict[str, Any]:
    """Edit the config `sim serve --write-config` wrote: state in `state_dir`, no metrics port, the local
    API only when `api` is given, and the control and mqtt settings given."""
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["storage"] = {"state_dir": str(state_dir), "flush_s": 0.2}
    cfg["metrics"] = {"listen": None}
    cfg["api"] = api or {"listen": None}
    cfg["control"] = {**(cfg.get("control") or {}), **(control or {})}
    cfg["mqtt"] = {**cfg["mqtt"], **(mqtt or {})}
    if margin_kw is not None:
        cfg["transformer"]["margin_kw"] = margin_kw
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return cfg


# ---- publishing with the Mosquitto client ----------------------------------------------------------
@dataclass(frozen=True)
class Published:
    started_s: float  # time.monotonic() when mosquitto_pub was started
    done_s: float  # ... when it exited (QoS 1: the broker has the message)


async def mosquitto_pub(binary: str, port: int, topic: str, payload: str, *, retain: bool = False) -> Published:
    args = [binary, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic, "-m", payload]
    if retain:
        args.append("-r")
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    t1 = time.monotonic()
    if proc.returncode != 0:
        raise AssertionError(f"mosquitto_pub exited {proc.returncode}: {err.decode(errors='replace')}")
    return Published(t0, t1)


# ---- probes ----------------------------------------------------------------------------------
@dataclass
class MeterProbe:
    """Reads the transformer meter over Modbus TCP (the project's SDM630 driver) every `every_s`."""

    url: str
    unit: int = 1
    every_s: float = 0.05
    samples: list[tuple[float, float]] = field(default_factory=list)  # (time.monotonic(), total kW)
    errors: int = 0

    async def run(self) -> None:
        bus = ModbusBus(parse_device_url(self.url), timeout_s=0.5)
        meter = ModbusMeter(load_profile("sdm630"), bus, self.unit, 0.5)
        try:
            while True:
                try:
                    r = await meter.read(0.5)
                    self.samples.append((time.monotonic(), r.power_kw))
                except DeviceError:
                    self.errors += 1
                await asyncio.sleep(self.every_s)
        finally:
            bus.close()

    def since(self, t_s: float) -> list[tuple[float, float]]:
        return [s for s in self.samples if s[0] >= t_s]

    def latest_kw(self) -> float | None:
        return self.samples[-1][1] if self.samples else None

    async def until(self, pred: Any, timeout_s: float, what: str) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            v = self.latest_kw()
            if v is not None and pred(v):
                return v
            await asyncio.sleep(0.05)
        raise AssertionError(f"meter: not {what} within {timeout_s} s (last {self.latest_kw()} kW, "
                             f"{self.errors} read errors)")


def first_time_within(samples: list[tuple[float, float]], limit_kw: float, tol_kw: float = 0.1) -> float | None:
    """The time of the first sample from which every later sample is within the limit."""
    t_first = None
    for t, kw in samples:
        if kw <= limit_kw + tol_kw:
            if t_first is None:
                t_first = t
        else:
            t_first = None
    return t_first


@dataclass(frozen=True)
class Reading:
    t_s: float
    total_kw: float
    limit_kw: float | None
    tick_ms: float


def daemon_readings(db: Path, since_s: float = 0.0, until_s: float = float("inf")) -> list[Reading]:
    """The daemon's per-tick readings (its SQLite store), read-only while it runs."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
        try:
            rows = c.execute("select t_s, total_kw, limit_kw, tick_ms from readings where t_s >= ? and t_s < ? "
                             "order by t_s", (since_s, until_s)).fetchall()
        except sqlite3.OperationalError:  # the schema is not there yet
            return []
    return [Reading(*r) for r in rows]


async def readings_until(db: Path, t_s: float, timeout_s: float = 5.0) -> list[Reading]:
    """Every reading up to wall time `t_s`, once the daemon has written one at or after it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = daemon_readings(db)
        if rows and rows[-1].t_s >= t_s:
            return [r for r in rows if r.t_s <= t_s]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the daemon wrote no reading at or after {t_s} within {timeout_s} s")


@dataclass
class TimedGridClient(GridClient):
    """A `GridClient` that also notes when each message arrived (time.monotonic())."""

    arrived_s: list[float] = field(default_factory=list)

    def on_message(self, _c: object, _u: object, msg: Any) -> None:
        with self.lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain),
                                          getattr(msg, "properties", None), int(msg.qos)))
            self.arrived_s.append(time.monotonic())

    def arrival(self, pred: Any) -> tuple[float, dict[str, Any]]:
        """(arrival time, payload) of the first message matching `pred`."""
        with self.lock:
            for m, t in zip(self.messages, self.arrived_s, strict=True):
                if pred(m):
                    return t, m.json()
        raise AssertionError("no such message")

    def ack_arrival(self, command_id: str, status: str) -> tuple[float, dict[str, Any]]:
        return self.arrival(lambda m: m.topic.endswith("/dispatch/ack") and m.json().get("command_id") == command_id
                            and m.json().get("status") == status)


def grid_client(port: int, client_id: str, topic: str = "youxu/v1/#", *, persistent: bool = False) -> TimedGridClient:
    """The grid side: records every message under `topic`. `persistent`: the session outlives broker
    restarts (MQTT 3.1.1, clean_session off, reconnecting on its own), so messages the site publishes
    while the client is away are kept for it."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=MQTTProtocolVersion.MQTTv311, clean_session=not persistent)
    g = TimedGridClient(c)
    c.on_message = g.on_message
    c.reconnect_delay_set(min_delay=1, max_delay=1)
    subscribed = threading.Event()

    def on_connect(client: Any, *_a: Any) -> None:
        client.subscribe(topic, 1)

    c.on_connect = on_connect
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    assert subscribed.wait(5), f"{client_id}: no SUBACK from the broker on port {port}"
    return g


@dataclass
class RunningSite:
    """`youxu sim serve` + `youxu run` against one broker, a meter probe and a grid client."""

    workdir: Path
    broker_port: int
    site_id: str
    pub_binary: str
    sim: CliProcess
    config: Path
    state_dir: Path
    daemon: CliProcess | None = None
    probe: MeterProbe | None = None
    grid: TimedGridClient | None = None
    _probe_task: asyncio.Task[None] | None = None

    @property
    def db(self) -> Path:
        return self.state_dir / "youxu.sqlite"

    def topic(self, name: str) -> str:
        return f"youxu/v1/{self.site_id}/{name}"

    async def publish(self, name: str, payload: dict[str, Any] | str, *, retain: bool = False) -> Published:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        return await mosquitto_pub(self.pub_binary, self.broker_port, self.topic(name), data, retain=retain)

    async def start_daemon(self, timeout_s: float = 20.0) -> float:
        """Start `youxu run`; returns when it has said it is online (time.monotonic())."""
        assert self.grid is not None
        t0 = time.monotonic()
        self.daemon = daemon(self.workdir, self.config)
        self.daemon.start()
        t_start_wall = time.time()
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            if not self.daemon.running:
                raise AssertionError(f"youxu run exited ({self.daemon.proc and self.daemon.proc.returncode}):\n"
                                     f"{self.daemon.log()}")
            with contextlib.suppress(AssertionError):
                t, _ = self.grid.arrival(lambda m: m.topic == self.topic("status") and m.json().get("state") == "online"
                                         and parse_rfc3339(m.json()["at"]) >= t_start_wall - 1.0)
                return t
            await asyncio.sleep(0.05)
        raise AssertionError(f"youxu run did not come online within {timeout_s} s:\n{self.daemon.log()}")

    async def close(self) -> None:
        """Stop the processes first, whatever the probe does: a probe slow to cancel leaves none behind."""
        if self._probe_task is not None:
            self._probe_task.cancel()
        try:
            if self.daemon is not None:
                self.daemon.stop()
            self.sim.stop()
        finally:
            if self._probe_task is not None:
                await asyncio.wait([self._probe_task], timeout=5.0)
            if self.grid is not None:
                self.grid.close()

    def logs(self) -> str:
        return "\n".join(f"---- {p.name}\n{p.log()}" for p in (self.sim, self.daemon) if p is not None)


async def start_site(workdir: Path, broker_port: int, site_id: str, pub_binary: str, *, n_piles: int = 6,
                     base_kw: float = 100.0, limit_kw: float = 150.0, control: dict[str, Any] | None = None,
                     mqtt_cfg: dict[str, Any] | None = None, margin_kw: float = 2.0,
                     persistent_grid: bool = False, api_cfg: dict[str, Any] | None = None) -> RunningSite:
    """Scenario from now, `sim serve` with its written config edited, the grid client, the meter
    probe, and `youxu run` online."""
    scenario = workdir / "scenario.json"
    scenario_from_now(scenario, n_piles=n_piles, base_kw=base_kw, limit_kw=limit_kw)
    sim = sim_serve(workdir, scenario, free_port(), f"mqtt://127.0.0.1:{broker_port}", site_id)
    site = RunningSite(workdir, broker_port, site_id, pub_binary, sim, workdir / "site.yaml", workdir / "state")
    try:
        sim.start()
        await sim.wait_for_output("youxu sim serve: ready", 20.0)
        cfg = edit_site_config(site.config, site.state_dir, control=control, mqtt=mqtt_cfg, margin_kw=margin_kw,
                               api=api_cfg)
        site.grid = grid_client(broker_port, f"grid-{site_id}", f"youxu/v1/{site_id}/#", persistent=persistent_grid)
        site.probe = MeterProbe(cfg["meter"]["url"], int(cfg["meter"]["unit"]))
        site._probe_task = asyncio.create_task(site.probe.run())
        await site.start_daemon()
    except BaseException:
        await site.close()
        raise
    return site


@contextlib.contextmanager
def logs_on_failure(site: RunningSite) -> Iterator[None]:
    """Print the processes' logs when the block fails."""
    try:
        yield
    except BaseException:
        print(site.logs())
        raise
