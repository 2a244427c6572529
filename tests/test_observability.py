"""Prometheus metrics and /healthz from a daemon ticking against simulated devices, the systemd
notifications (READY, WATCHDOG, STOPPING) on a real notify socket, and JSON-lines logs."""

from __future__ import annotations

import json
import logging
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fault_harness import start_run
from tests.scenarios import small_site
from youxu.controller.ops.httpserver import MetricsServer
from youxu.controller.ops.logjson import JsonLines
from youxu.controller.ops.metrics import LoopMetrics
from youxu.controller.ops.watchdog import Watchdog, watchdog_interval_s


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_and_health_follow_the_loop(tmp_path):
    sc = small_site(n_piles=3, base_kw=100.0, limit_kw=130.0)
    run = await start_run(sc, f"sqlite:///{tmp_path / 'y.sqlite'}")
    metrics = LoopMetrics(run.daemon.loop)
    server = MetricsServer("127.0.0.1:0", run.daemon.loop, metrics).start()
    try:
        code, body = get(server.port, "/healthz")
        assert code == 503 and json.loads(body)["status"] == "starting"
        await run.tick(5)
        code, body = get(server.port, "/healthz")
        assert code == 200 and json.loads(body)["status"] == "ok" and json.loads(body)["ticks"] == 5
        code, text = get(server.port, "/metrics")
        assert code == 200
        m = samples(text.decode())
        assert m[("youxu_tick_duration_seconds_count", ())] == 5
        assert m[("youxu_ticks_total", ())] == 5 and m[("youxu_tick_deadline_misses_total", ())] == 0
        assert m[("youxu_plan_duration_seconds_count", ())] == 5
        assert m[("youxu_pile_power_kw", (("pile", "P01"),))] >= 0
        assert ("youxu_pile_setpoint_kw", (("pile", "P03"),)) in m
        head = m[("youxu_headroom_kw", ())]
        assert abs(head - (130.0 - m[("youxu_site_power_kw", ())])) < 1e-9
        assert m[("youxu_storage_up", ())] == 1.0
        assert ("youxu_storage_queue_depth", (("queue", "bulk"),)) in m
        assert m[("youxu_storage_rows_dropped_total", (("kind", "bulk"),))] == 0
        assert m[("youxu_safe_mode", ())] == 0 and m[("youxu_loop_stalled", ())] == 0
        run.clock.set(run.clock.now() + 60.0)  # a minute without a tick: stalled
        code, body = get(server.port, "/healthz")
        assert code == 503 and json.loads(body)["status"] == "stalled"
        assert samples(get(server.port, "/metrics")[1].decode())[("youxu_loop_stalled", ())] == 1.0
        assert get(server.port, "/nothing")[0] == 404
    finally:
        server.stop()
        await run.close()


async def test_systemd_notifications(tmp_path, monkeypatch: pytest.MonkeyPatch):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    sc = small_site(n_piles=2, base_kw=100.0, limit_kw=130.0)
    run = await start_run(sc)
    try:
        wd = Watchdog(env)
        assert wd.enabled and wd.interval_s == 1.0
        run.daemon.loop.listeners.append(wd.on_tick)
        await run.tick(1)
        first = sock.recv(4096).decode()
        assert first.startswith("READY=1\nSTATUS=controlling: site ")
        assert sock.recv(4096) == b"WATCHDOG=1"
        await run.tick(1)  # the watchdog interval (1 s steady) has passed on the virtual clock
        assert sock.recv(4096) == b"WATCHDOG=1"
        wd.stopping()
        assert sock.recv(4096).startswith(b"STOPPING=1")
        assert wd.pets == 2
    finally:
        sock.close()
        await run.close()


def test_watchdog_off_outside_systemd_or_for_another_process():
    assert not Watchdog({}).enabled
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "41"}, 42) is None
    assert watchdog_interval_s({}, 42) is None


def test_json_lines_log_format():
    name = "youxu.controller.loop.fastloop"
    rec = logging.LogRecord(name, logging.WARNING, __file__, 1, "tick took %.1f ms", (212.34,), None)
    obj = json.loads(JsonLines().format(rec))
    assert obj["level"] == "warning" and obj["msg"] == "tick took 212.3 ms" and obj["logger"] == name
    rec.kind, rec.pile = "pile_ignores_setpoint", "P07"  # what `FastLoop.alarm` adds to its records
    obj = json.loads(JsonLines().format(rec))
    assert obj["kind"] == "pile_ignores_setpoint" and obj["pile"] == "P07"
