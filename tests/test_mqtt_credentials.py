"""MQTT username and password (contract section 5: the `mqtt` section's credentials) against a real
Mosquitto that refuses anonymous clients: the right password connects the site and its dispatch works,
a wrong one is refused and the site says so."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dispatch_builders import command
from tests.fixtures_mqtt import Broker, connect_client, free_port, plain_config
from tests.test_grid_mqtt import online, topic


@pytest.fixture
def password_broker(mosquitto_bin: str, tmp_path: Path) -> Iterator[Broker]:
    d = tmp_path / "mosquitto"
    d.mkdir()
    passwd = d / "passwd"
    for i, (user, password) in enumerate((("site-a", "s3cret-a"), ("grid", "grid-pw"))):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd), user, password],
                       check=True, capture_output=True)
    port = free_port()
    conf = plain_config(d, port).replace("allow_anonymous true\n", f"allow_anonymous false\npassword_file {passwd}\n")
    b = Broker(mosquitto_bin, d, conf, port)
    b.start()
    yield b
    b.stop()


def secret(tmp_path: Path, text: str) -> Path:
    p = tmp_path / f"pw-{time.monotonic_ns()}"
    p.write_text(text + "\n")  # a trailing newline, as editors leave it
    return p


async def test_the_right_password_connects_and_dispatch_works(make_link, password_broker: Broker,
                                                             tmp_path: Path) -> None:
    anonymous = connect_client(password_broker, f"anonymous-{time.monotonic_ns()}")
    anonymous.close()
    assert anonymous.connect_reason.is_failure  # the broker does refuse clients without a password
    grid = connect_client(password_broker, f"grid-{time.monotonic_ns()}", username="grid", password="grid-pw")
    try:
        grid.subscribe("youxu/v1/#")
        link = await make_link(url=password_broker.url, username="site-a",
                               password_file=str(secret(tmp_path, "s3cret-a")))
        await online(grid, link)
        cmd = command(link.clock.now(), import_max_kw=400.0)
        grid.publish(topic(link, "dispatch"), cmd)
        await grid.until_ack(cmd["command_id"], "received")
    finally:
        grid.close()


async def test_a_wrong_password_is_refused(make_link, password_broker: Broker, tmp_path: Path) -> None:
    link = await make_link(url=password_broker.url, username="site-a", password_file=str(secret(tmp_path, "nope")),
                           start=False)
    await link.start()
    deadline = time.monotonic() + 10
    while not link.conn.stats.last_error and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert link.conn.stats.last_error.startswith("connect refused"), link.conn.stats.last_error
    assert not link.connected and link.conn.stats.connects == 0
