"""`youxu dispatch send` and the scenario dispatch publisher, against a real broker and link."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.dispatch_builders import command, rfc
from tests.fixtures_mqtt import Broker, free_port
from tests.test_grid_mqtt import online, topic
from youxu.sim.dispatch_publisher import publish_scenario_dispatch

cli = pytest.importorskip("youxu.controller.cli", reason="the youxu command line is not in this tree")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


async def run_async(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = await asyncio.to_thread(cli.main, argv)
    out, err = capsys.readouterr()
    return code, out, err


async def test_send_a_limit_and_print_the_ack(make_link, grid, mqtt_broker: Broker, capsys) -> None:
    link = await make_link()
    await online(grid, link)
    code, out, err = await run_async(["dispatch", "send", "--mqtt", mqtt_broker.url, "--site", link.site_id,
                                      "--limit-kw", "380", "--minutes", "30", "--seq", "77"], capsys)
    assert code == 0, err
    ack = json.loads(out.strip().splitlines()[-1])
    assert ack["status"] == "received" and ack["schema"] == "youxu.ack/1"
    assert link.limits(np.array([link.clock.now() + 60])).site_import_max_kw.tolist() == [380.0]
    sent = grid.seen(lambda m: m.topic == topic(link, "dispatch"))[0].json()
    assert (sent["seq"], sent["issuer"], sent["type"], sent["periods"]) == (
        77, "youxu-cli", "limit", [{"offset_s": 0, "import_max_kw": 380.0}])


async def test_signed_send_and_rejection_exit_code(make_link, mqtt_broker: Broker, tmp_path: Path, capsys) -> None:
    key = tmp_path / "site.key"
    key.write_text("s3cret-key\n")
    link = await make_link(hmac_key_file=str(key))
    base = ["dispatch", "send", "--mqtt", mqtt_broker.url, "--site", link.site_id, "--setpoint-kw", "40",
            "--minutes", "15", "--scope", "ev"]
    code, out, _ = await run_async([*base, "--seq", "1"], capsys)
    assert code == 1 and json.loads(out.strip().splitlines()[-1])["reason"] == "BAD_SIGNATURE"
    code, out, err = await run_async([*base, "--seq", "2", "--key-file", str(key)], capsys)
    assert code == 0, err
    assert link.limits(np.array([link.clock.now() + 60])).setpoint_kw.tolist() == [40.0]


async def test_send_a_file_and_cancel_it(make_link, mqtt_broker: Broker, tmp_path: Path, capsys) -> None:
    link = await make_link()
    cmd = command(link.clock.now(), import_max_kw=365.0)
    for k in ("seq", "issued_at"):
        del cmd[k]  # filled in by the tool
    f = tmp_path / "cmd.json"
    f.write_text(json.dumps(cmd))
    code, _, err = await run_async(["dispatch", "send", "--mqtt", mqtt_broker.url, "--site", link.site_id,
                                    "--file", str(f)], capsys)
    assert code == 0, err
    assert link.limits(np.array([link.clock.now()])).site_import_max_kw.tolist() == [365.0]
    code, out, err = await run_async(["dispatch", "send", "--mqtt", mqtt_broker.url, "--site", link.site_id,
                                      "--cancel", cmd["command_id"], "--wait", "final"], capsys)
    assert code == 0, err
    assert [json.loads(line)["status"] for line in out.strip().splitlines()] == ["received", "completed"]
    assert np.isinf(link.limits(np.array([link.clock.now()])).site_import_max_kw).all()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--limit-kw", "400"], "--minutes"),
        (["--limit-kw", "400", "--minutes", "-5"], "--minutes"),
        (["--limit-kw", "-400", "--minutes", "5"], "import_max_kw"),
        (["--limit-kw", "400", "--minutes", "5", "--start", "tomorrow"], "--start"),
        (["--file", "/nonexistent/cmd.json"], "/nonexistent/cmd.json"),
        (["--file", "BADJSON"], "not valid JSON"),
        (["--file", "BADSCHEMA"], "seq"),
        (["--limit-kw", "400", "--minutes", "5", "--key-file", "/nonexistent/key"], "--key-file"),
        (["--setpoint-kw", "4", "--default"], "default must be a limit"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "schema.json").write_text(json.dumps(command(time.time(), seq="1")))
    args = [str(tmp_path / "bad.json") if a == "BADJSON" else str(tmp_path / "schema.json") if a == "BADSCHEMA"
            else a for a in args]
    code, _out, err = run(["dispatch", "send", "--mqtt", "mqtt://127.0.0.1:1", "--site", "s1", *args], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


def test_bad_url_and_unreachable_broker(capsys) -> None:
    code, _, err = run(["dispatch", "send", "--mqtt", "http://x", "--site", "s", "--limit-kw", "1", "--minutes",
                        "1"], capsys)
    assert code == 2 and "mqtt url" in err
    code, _, err = run(["dispatch", "send", "--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--site", "s",
                        "--limit-kw", "1", "--minutes", "1"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


async def test_publish_scenario_dispatch_at_their_times(make_link, grid, mqtt_broker: Broker) -> None:
    link = await make_link(link_loss_s=60)
    await online(grid, link)
    clock = link.clock
    start = clock.now()
    first = command(start, import_max_kw=400.0, minutes=30)
    second = command(start + 120, import_max_kw=380.0, minutes=30, issuer="other")
    entries = [{"at_s": 120, "command": {k: v for k, v in second.items() if k != "seq"}},
               {"at_s": 0, "command": first}]
    stop = asyncio.Event()
    task = asyncio.create_task(publish_scenario_dispatch(mqtt_broker.url, link.site_id, entries, clock, stop,
                                                         heartbeat_s=30.0, start_s=start))
    await grid.until_ack(first["command_id"], "received")
    await asyncio.sleep(0.2)
    assert grid.acks(second["command_id"]) == []  # not before its time
    clock.advance(121)
    await grid.until_ack(second["command_id"], "received")
    await grid.until(lambda m: m.topic == topic(link, "heartbeat"), count=2)
    stop.set()
    assert await asyncio.wait_for(task, 5) == 2
    assert link.limits(np.array([clock.now()])).site_import_max_kw.tolist() == [380.0]


async def test_publish_scenario_dispatch_takes_a_scenario(make_link, grid, mqtt_broker: Broker) -> None:
    from youxu.sim.scenario import Scenario

    link = await make_link()
    await online(grid, link)
    now = link.clock.now()
    cmd = command(now, import_max_kw=333.0)
    sc = Scenario.model_validate({
        "format": "youxu.scenario/1", "name": "t", "start": rfc(now - 10), "step_s": 60, "duration_s": 3600,
        "site": {"transformer_kva": 630, "limit_kw": 560}, "base_load": {"resolution_s": 3600, "kw": [300.0]},
        "tariff": {"resolution_s": 3600, "import_yuan_per_kwh": [0.5]},
        "piles": [{"id": "P001", "max_kw": 7.0, "phases": 1, "phase": "L1"}], "dispatch": [{"at_s": 5, "command": cmd}],
    })
    sent = await asyncio.wait_for(publish_scenario_dispatch(mqtt_broker.url, link.site_id, sc, link.clock,
                                                            heartbeat_s=None), 5)
    assert sent == 1
    await grid.until_ack(cmd["command_id"], "received")
    # a scenario a day in the past, moved onto the site's clock
    old = command(now - 86400, import_max_kw=321.0, issuer="shifted")
    sent = await asyncio.wait_for(publish_scenario_dispatch(
        mqtt_broker.url, link.site_id, [{"at_s": 0, "command": old}], link.clock, heartbeat_s=None,
        shift_s=86400.0), 5)
    await grid.until_ack(old["command_id"], "received")
    assert 321.0 in link.limits(np.array([now + 1])).site_import_max_kw
