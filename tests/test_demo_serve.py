"""`youxu demo --serve`: the address of the status page is printed while the simulated day runs, and
the page, its live stream and the API answer there with the printed token until the day is done."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from youxu.sim.ports import free_port

REPO = Path(__file__).resolve().parent.parent


def test_demo_serve_prints_the_page_address_and_serves_it_while_it_runs(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "youxu.controller.cli", "demo", "--out", str(tmp_path / "out"),
                             "--quiet", "--serve", f"127.0.0.1:{port}"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"status page on (http://\S+/) .*write token (\S+),", line)
        assert m, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        url, token = m.group(1), m.group(2)
        assert url == f"http://127.0.0.1:{port}/"
        with httpx.Client(base_url=url, timeout=10.0) as c:
            page = c.get("/")
            assert page.status_code == 200 and "有序充电" in page.text
            with c.stream("GET", "/live") as live:
                head = [ln for _, ln in zip(range(2), live.iter_lines(), strict=False)]
            assert head[0] == "event: view"
            view = json.loads(head[1].removeprefix("data: "))
            assert len(view["piles"]) > 0
            h = {"Authorization": f"Bearer {token}"}
            first = c.get("/api/v1/status", headers=h).json()
            # the simulated day moves on under the page
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                r = c.get("/api/v1/status", headers=h)
                if r.status_code != 200 or r.json()["at"] != first["at"]:
                    break
                time.sleep(0.2)
            assert r.status_code == 200 and r.json()["at"] != first["at"]
            assert c.get("/api/v1/status").status_code == 401
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert "youxu demo" in out and "energy delivered" in out
        # the page is gone with the demo
        try:
            httpx.get(url, timeout=2.0)
            raise AssertionError("the page still answers after the demo ended")
        except httpx.TransportError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
