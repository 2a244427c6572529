"""`youxu bench loop --api-rps R`: the daemon ticks against devices in another process while its
local API is polled from a third, with a status page's live stream held open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_loop_with_the_api_under_load_reports_the_requests_served() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "bench", "loop", "--piles", "4",
                           "--seconds", "6", "--api-rps", "10", "--json"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["api_rps"] == 10.0 and r["api_errors"] == 0
    # the poller paces itself: never more than 10 a second over the 6 s (fewer when the machine is busy)
    assert 0 < r["api_requests"] <= 61
    # the page's stream: one message on connecting, then at most one per tick
    assert 1 <= r["live_messages"] <= r["ticks"] + 1
    assert {"tick_ms_p50", "tick_ms_p99", "deadline_misses"} <= r.keys()
