"""Bad input gives one line naming the problem and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def youxu(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "youxu.controller.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd or ROOT)


def test_check_config_accepts_the_example():
    r = youxu("check-config", str(ROOT / "config" / "site.example.yaml"))
    assert r.returncode == 0, r.stderr
    assert "60 piles" in r.stdout and "630 kVA" in r.stdout


def test_check_config_lists_every_mistake(tmp_path: Path):
    cfg = yaml.safe_load((ROOT / "config" / "site.example.yaml").read_text())
    cfg["piles"][3]["phase"] = "L4"
    cfg["piles"][5]["profile"] = "no-such-pile"
    cfg["piles"][7]["id"] = cfg["piles"][8]["id"]
    cfg["piles"][9]["url"] = "http://192.168.1.1"
    cfg["transformer"]["import_limit_kw"] = -5
    cfg["meter"]["profile"] = "keba-p30"  # a pile profile where a meter belongs
    cfg["site"]["timezone"] = "Mars/Olympus"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    r = youxu("check-config", str(bad))
    assert r.returncode == 2
    err = r.stderr
    assert "Traceback" not in err
    assert "piles[3].phase: must be L1, L2, L3 or 3P" in err
    assert "piles[5].profile" in err and "no-such-pile" in err
    assert "piles[8].id: duplicate" in err
    assert "piles[9].url" in err
    assert "transformer.import_limit_kw" in err
    assert "meter.profile" in err and "not a meter" in err
    assert "site.timezone" in err
    assert "7 problem(s)" in err


@pytest.mark.parametrize("args,needle", [
    (["check-config", "/nonexistent/site.yaml"], "no such file"),
    (["run", "--config", "/nonexistent/site.yaml"], "no such file"),
    (["sim", "run", "--scenario", "/nonexistent.json", "--strategy", "llf", "--out", "/tmp/x"], "no such file"),
    (["sim", "run", "--scenario", "{scenario}", "--strategy", "magic", "--out", "/tmp/x"], "--strategy"),
    (["sim", "generate", "--preset", "atlantis", "--out", "/tmp/x.json"], "--preset"),
    (["sim", "generate", "--piles", "-3", "--out", "/tmp/x.json"], "--piles"),
    (["sim", "generate", "--history-days", "-1", "--out", "/tmp/x.json"], "--history-days"),
    (["sim", "compare", "--scenario", "{scenario}", "--strategies", "llf,nope", "--out", "/tmp/x"], "nope"),
    (["bench", "solve", "--piles", "0", "--horizon", "96", "--json"], "positive"),
    (["device", "read", "--profile", "nope", "--url", "modbus-tcp://127.0.0.1:1"], "nope"),
    (["device", "read", "--profile", "sdm630", "--url", "http://x"], "modbus-tcp"),
    (["sim", "run", "--scenario", "{broken}", "--strategy", "llf", "--out", "/tmp/x"], "not valid JSON"),
    (["sim", "run", "--scenario", "{invalid}", "--strategy", "llf", "--out", "/tmp/x"], "step_s"),
    (["nonsense"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str):
    from tests.scenarios import small_site

    good = tmp_path / "sc.json"
    good.write_text(small_site().to_json())
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "youxu.scenario/1", ')
    invalid = tmp_path / "invalid.json"
    raw = small_site().model_dump(mode="json")
    raw["step_s"] = -60
    import json

    invalid.write_text(json.dumps(raw))
    args = [a.format(scenario=good, broken=broken, invalid=invalid) for a in args]
    r = youxu(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]


def test_every_command_has_help():
    for args in (["--help"], ["demo", "--help"], ["run", "--help"], ["check-config", "--help"],
                 ["sim", "--help"], ["sim", "generate", "--help"], ["sim", "run", "--help"], ["sim", "serve", "--help"],
                 ["sim", "compare", "--help"], ["sim", "hosting-capacity", "--help"], ["dispatch", "send", "--help"],
                 ["device", "list", "--help"], ["device", "read", "--help"], ["device", "set-current", "--help"],
                 ["bench", "solve", "--help"], ["bench", "loop", "--help"]):
        r = youxu(*args)
        assert r.returncode == 0 and "usage:" in r.stdout, args


def test_run_names_a_bad_tokens_file_or_a_taken_api_port_before_starting(tmp_path: Path):
    import socket

    cfg = yaml.safe_load((ROOT / "config" / "site.example.yaml").read_text())
    cfg["storage"] = {"state_dir": str(tmp_path / "state")}
    cfg["metrics"] = {"listen": None}
    path = tmp_path / "site.yaml"

    def run_with(api: dict) -> subprocess.CompletedProcess:
        path.write_text(yaml.safe_dump({**cfg, "api": api}))
        return youxu("run", "--config", str(path))

    r = run_with({"listen": "127.0.0.1:0", "tokens_file": str(tmp_path / "missing")})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "api.tokens_file" in r.stderr and "No such file" in r.stderr
    tokens = tmp_path / "tokens"
    tokens.write_text("# ok\nalice:aaaaaaaaaa:write\nbob:bbbbbbbbbb:admin\n")
    r = run_with({"listen": "127.0.0.1:0", "tokens_file": str(tokens)})
    assert r.returncode == 2 and "line 3: role 'admin'" in r.stderr and "Traceback" not in r.stderr
    tokens.write_text("alice:aaaaaaaaaa:write\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        r = run_with({"listen": f"127.0.0.1:{taken.getsockname()[1]}", "tokens_file": str(tokens)})
    assert r.returncode == 2 and "api.listen" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "state").exists()  # nothing was started: no database made
