"""Storage faults on real filesystems: the state volume stops taking writes, fills up, or is
deleted while the daemon runs. Storage may degrade, control may not."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dispatch_builders import command
from tests.fault_harness import start_run
from tests.fixtures_mqtt import GridClient
from tests.fixtures_volume import Ext4Volume
from tests.scenarios import small_site
from tests.test_grid_mqtt import online, topic
from youxu.controller.ops.httpserver import health
from youxu.controller.store.dispatch_store import SqlDispatchStore
from youxu.controller.store.storage import Store

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("fault", ["immutable", "remount-ro", "shutdown"])
def test_a_state_volume_that_stops_taking_writes_does_not_kill_the_daemon(ext4_volume: Ext4Volume, fault: str):
    """With WAL the index in `-shm` is memory-mapped; a dispatch lookup after the last commit writes
    a reader's mark into it, and the page, written back and now immutable, cannot be made writable:
    SIGBUS. The daemon must instead see an error, alarm, keep its vital rows and keep controlling."""
    state = ext4_volume.path / "state"
    res = subprocess.run([sys.executable, "-m", "tests.storage_fault_run", str(state), fault, ext4_volume.device],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode != -signal.SIGBUS, f"SIGBUS:\n{res.stderr[-2000:]}"
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["looked_up"] and out["ticks"] == 26 and out["tick_errors"] == 0
    assert not out["db_ok"] and "storage_down" in out["kinds"], out
    assert out["max_over_run"] == 0 and out["ev_kw"] > 10.0  # still charging, within the limit
    assert out["rejected"] == 0 and out["vital_queued"] >= 1  # events kept for later, none dropped as refused
    assert not (state / "youxu.sqlite-shm").exists()


def _count(path: Path, table: str, where: str = "") -> int:
    with sqlite3.connect(path) as c:
        return int(c.execute(f"select count(*) from {table} {where}").fetchone()[0])


def _rows(path: Path, table: str) -> int:
    """Rows in `table` of the file at `path`; 0 while there is no such file or table."""
    if not path.exists():
        return 0
    try:
        return _count(path, table)
    except sqlite3.OperationalError:
        return 0


async def test_deleted_state_directory_is_alarmed_and_the_store_writes_to_a_new_file(tmp_path: Path):
    """`rm -rf` of the state directory under the running daemon: open connections would go on writing
    into the deleted file (every write "succeeds", nothing survives a restart). The store notices that
    the path no longer names its file, raises the alarm and writes to a new database at the path."""
    state = tmp_path / "state"
    path = state / "youxu.sqlite"
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=140.0)
    run = await start_run(sc, f"sqlite:///{path}")
    try:
        store = run.daemon.store
        await run.tick(5)
        assert store.flush(10.0) and _count(path, "readings") == 5
        shutil.rmtree(state)
        for _ in range(10):
            await run.tick(1)
            await asyncio.sleep(0.05)  # the writer's cycles
        assert store.flush(10.0)
        await run.tick(1)
        assert "storage_replaced" in run.link.kinds(), run.link.kinds()
        (_, message, fields), = run.link.of("storage_replaced")
        assert "was deleted" in message and fields["times"] == 1
        assert store.flush(10.0) and store.db_ok
        assert path.exists() and _count(path, "readings") >= 5  # the readings since, in the new file
        assert _count(path, "events", "where kind = 'storage_replaced'") == 1
        _, body = health(run.daemon.loop, 30.0)
        assert body["database_replaced"] == 1 and body["database_ok"] is True
        assert run.max_over_run == 0 and run.daemon.loop.stats.tick_errors == 0
    finally:
        await run.close()


async def test_deleted_state_directory_keeps_replay_protection_across_a_restart(make_link, grid: GridClient,
                                                                                 tmp_path: Path):
    """The dispatch link writes every issuer's seq and its open commands again into the new database,
    so that after a restart a replay is still refused and the command still in force."""
    state = tmp_path / "state"
    url = f"sqlite:///{state / 'youxu.sqlite'}"
    store = Store(url, flush_s=0.05)
    try:
        link = await make_link(store=SqlDispatchStore(store.engine), recorder=store)
        await online(grid, link)
        now = link.clock.now()
        cmd = command(now, import_max_kw=85.0, seq=10)
        grid.publish(topic(link, "dispatch"), cmd)
        await grid.until_ack(cmd["command_id"], "received")
        shutil.rmtree(state)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not _rows(state / "youxu.sqlite", "dispatch_issuer_seqs"):
            await asyncio.sleep(0.05)
        assert _count(state / "youxu.sqlite", "dispatch_issuer_seqs", "where last_seq = 10") == 1
        assert _count(state / "youxu.sqlite", "dispatch_commands") == 1
        await link.stop()
    finally:
        store.close()
    store = Store(url, flush_s=0.05)
    try:
        again = await make_link(link.site_id, clock=link.clock, store=SqlDispatchStore(store.engine))
        await online(grid, again)
        assert cmd["command_id"] in again.book.open
        replay = command(now, import_max_kw=300.0, seq=10)
        grid.publish(topic(again, "dispatch"), replay)
        assert (await grid.until_ack(replay["command_id"], "rejected"))["reason"] == "OUT_OF_SEQUENCE"
    finally:
        store.close()
