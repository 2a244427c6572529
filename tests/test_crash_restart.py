"""`kill -9` of a real `youxu run` daemon in the middle of a run with open sessions and a dispatch
command in force, then a restart: nothing is lost (sessions, the command, the issuer's sequence
number), control resumes well within one planning period, and a replayed old command is refused.

Real processes: `youxu sim serve` serves the devices over Modbus TCP at real speed and writes the
site config; `youxu run` controls them, talks to a Mosquitto broker and keeps SQLite storage.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from tests.dispatch_builders import command, utc_now
from tests.fixtures_mqtt import GridClient
from tests.scenarios import small_site
from youxu.sim.ports import free_port, free_port_block
from youxu.sim.scenario import save_scenario

REPO = Path(__file__).resolve().parent.parent
CST = timezone(timedelta(hours=8))
N_PILES = 6


def spawn(args: list[str], log: Path, **extra_env: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **extra_env)
    out = open(log, "ab")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen([sys.executable, "-m", "youxu.controller.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=log.parent)


def health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def wait(pred, timeout_s: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def db(path: Path, sql: str) -> list:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def saved_sessions(path: Path) -> dict[str, dict]:
    rows = db(path, "select value from state where key = 'daemon'")
    return json.loads(rows[0][0])["sessions"]["sessions"] if rows else {}


@pytest.fixture
def site_files(tmp_path: Path, mqtt_broker):
    """A scenario that starts now, its devices served by `youxu sim serve`, and the site config."""
    start = datetime.now(CST).replace(microsecond=0)
    sc = small_site(n_piles=N_PILES, base_kw=100.0, limit_kw=150.0, start=start.isoformat())
    scen, cfg_path = tmp_path / "scenario.json", tmp_path / "site.yaml"
    save_scenario(sc, scen)
    site_id = f"crash-{uuid.uuid4().hex[:8]}"
    sim_log = tmp_path / "youxu.sim.log"
    sim = spawn(["sim", "serve", "--scenario", str(scen), "--speed", "1", "--modbus-port",
                 str(free_port_block(1)), "--write-config", str(cfg_path), "--mqtt", mqtt_broker.url,
                 "--site-id", site_id], sim_log)
    try:
        wait(lambda: "ready" in sim_log.read_text(errors="replace"), 30, "sim serve", sim_log)
        cfg = yaml.safe_load(cfg_path.read_text())
        metrics_port = free_port()
        cfg["control"] = {"strategy": "fairshare", "period_s": 0.5, "budget_ms": 300.0}
        cfg["storage"] = {"state_dir": str(tmp_path / "state"), "state_period_s": 1.0, "flush_s": 0.2}
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
        cfg["api"] = {"listen": None}  # not the default port: tests run side by side
        cfg_path.write_text(yaml.safe_dump(cfg))
        yield cfg_path, site_id, metrics_port, tmp_path / "state" / "youxu.sqlite"
    finally:
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()


def test_kill_9_and_restart_lose_nothing(site_files, grid_client: GridClient, tmp_path: Path):
    cfg_path, site_id, port, dbfile = site_files
    prefix = f"youxu/v1/{site_id}/"
    log = tmp_path / "daemon.log"
    daemon = spawn(["-v", "run", "--config", str(cfg_path)], log)
    try:
        wait(lambda: health(port)[0] == 200, 40, "the daemon to tick", log)
        wait(lambda: (metric(port, "youxu_grid_link_connected") or 0) == 1.0, 15, "the broker", log)
        cmd = command(utc_now(), import_max_kw=130.0, minutes=60, seq=100)
        grid_client.publish(prefix + "dispatch", cmd)
        grid_client.wait_ack(cmd["command_id"], "received", 10)
        wait(lambda: metric(port, "youxu_limit_kw") == 130.0, 10, "the command in force", log)
        wait(lambda: len(saved_sessions(dbfile)) == N_PILES, 15, "sessions saved", log)
        wait(lambda: db(dbfile, "select last_seq from dispatch_issuer_seqs where issuer = 'bj-dms'") == [(100,)],
             10, "the sequence number stored", log)
        time.sleep(1.5)  # charging goes on; the state is saved every second
        before = saved_sessions(dbfile)
        assert all(s["delivered_kwh"] > 0 for s in before.values())
        daemon.send_signal(signal.SIGKILL)  # kill -9: no shutdown, no final save
        assert daemon.wait(10) == -signal.SIGKILL
        t_restart = time.monotonic()
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # as systemd's Type=notify with WatchdogSec=2
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(10.0)
        daemon = spawn(["-v", "run", "--config", str(cfg_path)], log, NOTIFY_SOCKET=str(tmp_path / "notify"),
                       WATCHDOG_USEC="2000000")
        wait(lambda: health(port)[0] == 200, 40, "the daemon to tick after the restart", log)
        resumed_s = time.monotonic() - t_restart
        print(f"\n  control resumed {resumed_s:.1f} s after the restart (planning period 60 s)")
        assert resumed_s < 60.0
        assert metric(port, "youxu_limit_kw") == 130.0  # the command is still in force
        assert metric(port, "youxu_sessions_open") == N_PILES
        wait(lambda: all(saved_sessions(dbfile).get(p, {}).get("last_t_s", 0) > before[p]["last_t_s"]
                         for p in before), 10, "sessions carried on", log)
        after = saved_sessions(dbfile)
        assert {p: s["id"] for p, s in after.items()} == {p: s["id"] for p, s in before.items()}  # same sessions
        assert all(after[p]["delivered_kwh"] >= before[p]["delivered_kwh"] for p in before)
        assert db(dbfile, "select count(*) from sessions")[0][0] == N_PILES  # no new session rows
        # the old command again: a duplicate, answered with its previous ack, not applied twice
        grid_client.publish(prefix + "dispatch", cmd)
        dup = grid_client.wait_for(lambda m: m.topic.endswith("/dispatch/ack") and m.json().get("duplicate")
                                   and m.json().get("command_id") == cmd["command_id"], 10)[0].json()
        assert dup["status"] != "rejected"
        # an older sequence number under a new id: refused
        old = command(utc_now(), import_max_kw=90.0, seq=99)
        grid_client.publish(prefix + "dispatch", old)
        assert grid_client.wait_ack(old["command_id"], "rejected", 10)["reason"] == "OUT_OF_SEQUENCE"
        assert metric(port, "youxu_limit_kw") == 130.0
        new = command(utc_now(), import_max_kw=120.0, seq=101)
        grid_client.publish(prefix + "dispatch", new)
        grid_client.wait_ack(new["command_id"], "received", 10)
        wait(lambda: metric(port, "youxu_limit_kw") == 120.0, 10, "the new command in force", log)
        assert db(dbfile, "select last_seq from dispatch_issuer_seqs where issuer = 'bj-dms'") == [(101,)]
        got = [notify.recv(4096).decode() for _ in range(3)]
        assert got[0].startswith("READY=1\nSTATUS=controlling") and got[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
        rest = []
        with contextlib.suppress(TimeoutError):
            notify.settimeout(1.0)
            while True:
                rest.append(notify.recv(4096).decode())
        assert any(m.startswith("STOPPING=1") for m in rest)
        notify.close()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
