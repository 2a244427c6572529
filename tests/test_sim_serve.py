"""`youxu sim serve --write-config` end to end, as separate processes: the config it writes passes
`youxu check-config`, and `youxu device read`/`set-current` reach every device it names."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.scenarios import small_site
from youxu.sim.ports import free_port_block
from youxu.sim.scenario import save_scenario

REPO = Path(__file__).resolve().parents[1]
N_PILES = 5
BASE_KW = 100.0


def youxu(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "youxu.controller.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout_s)


def read_json(profile: str, url: str, unit: int) -> dict:
    r = youxu("device", "read", "--profile", profile, "--url", url, "--unit", str(unit), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[dict, subprocess.Popen[str]]]:
    """A `youxu sim serve` process for a 5-pile site; yields the site config it wrote and the process."""
    layout, units_per_port = request.param
    scenario = tmp_path / "scenario.json"
    save_scenario(small_site(n_piles=N_PILES, base_kw=BASE_KW, v2g_every=2), scenario)
    config = tmp_path / "site.yaml"
    port = free_port_block(1 + N_PILES)
    proc = subprocess.Popen(
        [sys.executable, "-m", "youxu.controller.cli", "sim", "serve", "--scenario", str(scenario), "--modbus-port",
         str(port), "--layout", layout, "--units-per-port", str(units_per_port), "--write-config", str(config)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put("")  # end of output: the process ended

    threading.Thread(target=pump, daemon=True).start()
    try:
        first = lines.get(timeout=60)
        if "ready" not in first:
            proc.wait(timeout=20)
            pytest.fail(f"sim serve did not start: {first}{proc.stderr.read()}")
        yield yaml.safe_load(config.read_text()), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def addresses(cfg: dict) -> list[tuple[str, int]]:
    return [(p["url"], p["unit"]) for p in cfg["piles"]]


@pytest.mark.parametrize("served", [("units", 2)], indirect=True)
def test_written_config_checks_and_every_device_answers(served: tuple[dict, subprocess.Popen[str]],
                                                        tmp_path: Path) -> None:
    cfg, proc = served
    # two piles behind each port: the meter and P01, P02 on the first, then P03, P04, then P05
    port0 = int(cfg["meter"]["url"].rsplit(":", 1)[1])
    assert (cfg["meter"]["url"], cfg["meter"]["unit"]) == (f"modbus-tcp://127.0.0.1:{port0}", 1)
    assert addresses(cfg) == [(f"modbus-tcp://127.0.0.1:{port0 + k}", u)
                              for k, u in ((0, 2), (0, 3), (1, 1), (1, 2), (2, 1))]
    check = youxu("check-config", str(tmp_path / "site.yaml"))
    assert check.returncode == 0, check.stderr
    assert "OK" in check.stdout and f"{N_PILES} piles" in check.stdout

    meter = read_json("sdm630", cfg["meter"]["url"], cfg["meter"]["unit"])
    assert meter["power_kw"] == pytest.approx(BASE_KW, abs=0.5)  # households only: every pile at 0
    assert sum(meter["phase_power_kw"].values()) == pytest.approx(meter["power_kw"], abs=0.01)
    for url, unit in addresses(cfg):
        pile = read_json("youxu-sim-pile", url, unit)
        assert pile["status"] == "connected"  # a car is plugged in and waits for a setpoint
        assert pile["power_kw"] == 0.0

    url, unit = addresses(cfg)[3]
    r = youxu("device", "set-current", "--profile", "youxu-sim-pile", "--url", url, "--unit", str(unit),
              "--amps", "16", "--json")
    assert r.returncode == 0, r.stderr
    pile = read_json("youxu-sim-pile", url, unit)
    assert pile["status"] == "charging"
    assert pile["power_kw"] == pytest.approx(16 * 230 / 1000, rel=0.02)
    meter = read_json("sdm630", cfg["meter"]["url"], cfg["meter"]["unit"])
    assert meter["power_kw"] == pytest.approx(BASE_KW + pile["power_kw"], abs=0.5)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize("served", [("ports", 200)], indirect=True)
def test_ports_layout_puts_each_pile_on_its_own_port(served: tuple[dict, subprocess.Popen[str]],
                                                     tmp_path: Path) -> None:
    cfg, _ = served
    port0 = int(cfg["meter"]["url"].rsplit(":", 1)[1])
    assert addresses(cfg) == [(f"modbus-tcp://127.0.0.1:{port0 + 1 + i}", 1) for i in range(N_PILES)]
    assert youxu("check-config", str(tmp_path / "site.yaml")).returncode == 0
    url, unit = addresses(cfg)[-1]
    assert read_json("youxu-sim-pile", url, unit)["status"] == "connected"


def test_units_per_port_out_of_range_is_a_one_line_error(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    save_scenario(small_site(n_piles=2), scenario)
    r = youxu("sim", "serve", "--scenario", str(scenario), "--units-per-port", "0")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["youxu: error: --units-per-port: must be 1..200 (got 0)"]
