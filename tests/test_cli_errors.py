"""Bad input gives one line naming the problem and exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def youxu(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "youxu.controller.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd or ROOT)


def test_check_config_accepts_the_example():
    # written for a site machine: its key and TLS files are in /etc/youxu there, not here
    r = youxu("check-config", "--skip-files", str(ROOT / "config" / "site.example.yaml"))
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
    (["sim", "run", "--scenario", "/nonexistent.json", "--strategy", "llf", "--out", "{tmp}/x"], "no such file"),
    (["sim", "run", "--scenario", "{scenario}", "--strategy", "magic", "--out", "{tmp}/x"], "--strategy"),
    (["sim", "generate", "--preset", "atlantis", "--out", "{tmp}/x.json"], "--preset"),
    (["sim", "generate", "--piles", "-3", "--out", "{tmp}/x.json"], "--piles"),
    (["sim", "generate", "--history-days", "-1", "--out", "{tmp}/x.json"], "--history-days"),
    (["sim", "compare", "--scenario", "{scenario}", "--strategies", "llf,nope", "--out", "{tmp}/x"], "nope"),
    (["bench", "solve", "--piles", "0", "--horizon", "96", "--json"], "positive"),
    (["device", "read", "--profile", "nope", "--url", "modbus-tcp://127.0.0.1:1"], "nope"),
    (["device", "read", "--profile", "sdm630", "--url", "http://x"], "modbus-tcp"),
    (["sim", "run", "--scenario", "{broken}", "--strategy", "llf", "--out", "{tmp}/x"], "not valid JSON"),
    (["sim", "run", "--scenario", "{invalid}", "--strategy", "llf", "--out", "{tmp}/x"], "step_s"),
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
    args = [a.format(scenario=good, broken=broken, invalid=invalid, tmp=tmp_path) for a in args]
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


# ---- check-config refuses what the daemon cannot run ----------------------------------------
def runnable_site(tmp_path: Path) -> dict:
    """The example site with a plain broker and a key file that is there: `youxu run` could start it."""
    cfg = yaml.safe_load((ROOT / "config" / "site.example.yaml").read_text())
    key = tmp_path / "dispatch.key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    cfg["mqtt"] = {"url": "mqtt://127.0.0.1:1883", "hmac_key_file": str(key)}
    cfg["storage"] = {"state_dir": str(tmp_path / "state")}
    return cfg


def write_site(tmp_path: Path, cfg: dict, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr[-2000:]
    return lines[0]


def test_check_config_passes_a_runnable_site(tmp_path: Path):
    r = youxu("check-config", str(write_site(tmp_path, runnable_site(tmp_path))))
    assert r.returncode == 0, r.stderr
    assert "warning: transformer.phase_limit" not in r.stdout


def _horizon(c: dict) -> None:
    c["control"].update(horizon_s=60, step_s=900)


def _missing_key(c: dict) -> None:
    c["mqtt"]["hmac_key_file"] = "/nonexistent/youxu/dispatch.key"


def _missing_tls(c: dict) -> None:
    c["mqtt"].update(url="mqtts://127.0.0.1:8883", ca_file="/nonexistent/youxu/ca.pem")


def _missing_password(c: dict) -> None:
    c["mqtt"].update(username="site", password_file="/nonexistent/youxu/mqtt.password")


def _mysql(c: dict) -> None:
    c["storage"]["url"] = "mysql://youxu@127.0.0.1/youxu"


def _tariff(c: dict) -> None:
    c["tariff"]["periods"][0]["start"] = "25:00"


def test_an_unquoted_tariff_time_is_named_with_the_fix(tmp_path: Path):
    cfg = runnable_site(tmp_path)
    path = write_site(tmp_path, cfg)
    path.write_text(path.read_text().replace("start: '23:00'", "start: 23:00"))
    assert "start: 23:00" in path.read_text()
    line = one_line_error(youxu("check-config", str(path)))
    assert "tariff.periods[0].start" in line and '"23:00"' in line and "quotes" in line, line


@pytest.mark.parametrize("edit,needles", [
    (_horizon, ["control.step_s", "horizon_s 60", "900"]),
    (_missing_key, ["mqtt.hmac_key_file", "/nonexistent/youxu/dispatch.key", "No such file"]),
    (_missing_tls, ["mqtt TLS files", "/nonexistent/youxu/ca.pem"]),
    (_missing_password, ["mqtt.password_file", "/nonexistent/youxu/mqtt.password", "No such file"]),
    (_mysql, ["storage.url", "mysql://", "sqlite:///", "postgresql://"]),
    (_tariff, ["tariff.periods[0].start", "'25:00'", "time of day"]),
], ids=["horizon-shorter-than-step", "missing-hmac-key", "missing-tls-ca", "missing-password", "mysql-url",
        "tariff-25h"])
def test_check_config_refuses_what_the_daemon_cannot_run(tmp_path: Path, edit, needles: list[str]):
    cfg = runnable_site(tmp_path)
    edit(cfg)
    path = write_site(tmp_path, cfg)
    line = one_line_error(youxu("check-config", str(path)))
    assert line.startswith(f"{path}: "), line
    for n in needles:
        assert n in line, (n, line)
    # and `youxu run` refuses the same config with the same line, before it starts anything
    run_line = one_line_error(youxu("run", "--config", str(path)))
    assert run_line == f"youxu: error: {line}"


def test_check_config_skip_files_for_a_config_of_another_machine(tmp_path: Path):
    cfg = runnable_site(tmp_path)
    _missing_key(cfg)
    assert youxu("check-config", "--skip-files", str(write_site(tmp_path, cfg))).returncode == 0


def test_check_config_warns_of_phase_limits_above_the_transformer(tmp_path: Path):
    cfg = runnable_site(tmp_path)
    cfg["transformer"].update(rated_kva=400, import_limit_kw=360, margin_kw=10,
                              phase_limit_kw={"L1": 500, "L2": 120, "L3": 120})
    r = youxu("check-config", str(write_site(tmp_path, cfg)))
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stdout.splitlines() if "warning: transformer.phase_limit_kw" in ln]
    assert len(warnings) == 1 and "L1: 500 kW" in warnings[0] and "360 kW" in warnings[0], r.stdout
    cfg["transformer"]["phase_limit_kw"] = {"L1": 500, "L2": 500, "L3": 500}
    r = youxu("check-config", str(write_site(tmp_path, cfg)))
    warnings = [ln for ln in r.stdout.splitlines() if "warning: transformer.phase_limit_kw" in ln]
    assert r.returncode == 0 and len(warnings) == 1 and "(L1, L2, L3): 500 kW" in warnings[0], r.stdout
    cfg["transformer"]["phase_limit_kw"] = {"L1": 170, "L2": 120, "L3": 120}  # above 120 % of 400 / 3
    r = youxu("check-config", str(write_site(tmp_path, cfg)))
    warnings = [ln for ln in r.stdout.splitlines() if "warning: transformer.phase_limit_kw" in ln]
    assert r.returncode == 0 and len(warnings) == 1 and "L1: 170 kW" in warnings[0], r.stdout


# ---- bad files and bad output places: one line, never a traceback ---------------------------
@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A real read-only filesystem (a tmpfs mounted ro), unmounted at teardown."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def bad_files(tmp_path: Path, read_only_dir: Path) -> dict[str, str]:
    from tests.scenarios import small_site

    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    scenario = tmp_path / "sc.json"
    scenario.write_text(small_site(n_piles=2, hours=1).to_json())
    return {"binary": str(binary), "dir": str(a_dir), "file": str(a_file), "scenario": str(scenario),
            "ro": str(read_only_dir)}


MQTT = ["--mqtt", "mqtt://127.0.0.1:1"]
SIM_RUN = ["sim", "run", "--scenario", "{scenario}", "--strategy", "llf"]


@pytest.mark.parametrize("args,needles", [
    (["check-config", "{binary}"], ["{binary}", "binary"]),
    (["check-config", "{dir}"], ["{dir}", "directory"]),
    (["run", "--config", "{binary}"], ["{binary}", "binary"]),
    (["run", "--config", "{dir}"], ["{dir}", "directory"]),
    (["sim", "run", "--scenario", "{binary}", "--strategy", "llf", "--out", "{dir}/out"], ["{binary}", "binary"]),
    (["sim", "run", "--scenario", "{dir}", "--strategy", "llf", "--out", "{dir}/out"], ["{dir}", "directory"]),
    (["sim", "serve", "--scenario", "{dir}"], ["{dir}", "directory"]),
    (["dispatch", "send", *MQTT, "--site", "s1", "--file", "{binary}"], ["--file {binary}", "binary"]),
    (["dispatch", "send", *MQTT, "--site", "s1", "--file", "{dir}"], ["--file {dir}", "directory"]),
    (["demo", "--out", "{file}"], ["--out", "{file}", "not a directory"]),
    ([*SIM_RUN, "--out", "{file}"], ["--out", "{file}", "not a directory"]),
    ([*SIM_RUN, "--out", "{file}/sub"], ["--out", "{file}", "not a directory"]),
    (["sim", "generate", "--out", "{dir}"], ["--out", "{dir}", "is a directory"]),
    (["sim", "generate", "--out", "{file}/sc.json"], ["--out", "{file}", "not a directory"]),
    (["demo", "--out", "{ro}/demo"], ["--out", "{ro}/demo", "Read-only file system"]),
    (["sim", "generate", "--out", "{ro}/sc.json"], ["--out", "{ro}/sc.json", "Read-only file system"]),
    ([*SIM_RUN, "--out", "{ro}/out"], ["--out", "{ro}/out", "Read-only file system"]),
    ([*SIM_RUN, "--out", "/proc/youxu-out"], ["--out", "/proc/youxu-out", "cannot write"]),
    (["sim", "serve", "--scenario", "{scenario}", "--write-config", "{dir}"], ["--write-config", "is a directory"]),
    (["dispatch", "send", *MQTT, "--site", "a/#", "--limit-kw", "50", "--minutes", "5"], ["--site", "'a/#'"]),
    (["sim", "serve", "--scenario", "{scenario}", "--site-id", "a+b"], ["--site-id", "'a+b'"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0] in ("check-config", "run", "sim", "dispatch",
                                                                        "demo") else None)
def test_bad_files_and_output_places_are_one_line(bad_files: dict[str, str], args: list[str], needles: list[str]):
    r = youxu(*[a.format(**bad_files) for a in args])
    line = one_line_error(r)
    for n in needles:
        assert n.format(**bad_files) in line, (n, line)


def test_output_checks_leave_nothing_behind(tmp_path: Path):
    """Checking where an output may go writes nothing there (the command itself does)."""
    target = tmp_path / "new" / "deeper" / "sc.json"
    r = youxu("sim", "generate", "--preset", "nope", "--out", str(target))
    assert r.returncode == 2 and "--preset" in r.stderr
    assert list(tmp_path.iterdir()) == []


def billion_laughs(levels: int) -> str:
    """A YAML document of a few hundred bytes whose aliases expand to 9**levels strings."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append(f"site: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path):
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(billion_laughs(6))  # 531,441 strings once expanded
    assert bomb.stat().st_size < 400
    line = one_line_error(youxu("check-config", str(bomb)))
    assert line.startswith(f"{bomb}: ") and "alias" in line
    assert len(line) < 300


def test_an_error_echoes_a_clipped_value(tmp_path: Path):
    cfg = runnable_site(tmp_path)
    cfg["site"]["timezone"] = "Asia/" + "x" * 100_000
    cfg["meter"] = ["lol"] * 100_000
    r = youxu("check-config", str(write_site(tmp_path, cfg)))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "site.timezone" in r.stderr and "meter" in r.stderr
    assert len(r.stderr) < 2000, len(r.stderr)


def test_a_recursive_alias_is_one_line(tmp_path: Path):
    path = tmp_path / "loop.yaml"
    path.write_text("site: &a [*a]\n")
    line = one_line_error(youxu("check-config", str(path)))
    assert str(path) in line and "alias" in line


def test_a_scenario_with_a_huge_bad_value_is_one_short_line(tmp_path: Path):
    from tests.scenarios import small_site

    raw = small_site(n_piles=2, hours=1).model_dump(mode="json")
    raw["name"] = ["x" * 1000] * 10_000
    path = tmp_path / "sc.json"
    path.write_text(json.dumps(raw))
    line = one_line_error(youxu("sim", "run", "--scenario", str(path), "--strategy", "llf",
                                "--out", str(tmp_path / "out")))
    assert str(path) in line and "name" in line and len(line) < 1000, len(line)


def test_run_names_a_bad_tokens_file_or_a_taken_api_port_before_starting(tmp_path: Path):
    import socket

    cfg = yaml.safe_load((ROOT / "config" / "site.example.yaml").read_text())
    cfg.pop("mqtt")  # no broker files to read: the API's own checks are the first to speak
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
