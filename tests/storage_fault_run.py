"""Run in a process of its own by tests/test_storage_volume.py (a SIGBUS would end pytest too):
the real daemon controls simulated devices over Modbus TCP with its SQLite state on the volume
given; then the state files and directory are made immutable (after the kernel wrote them back, as
it does every few seconds) and the daemon goes on: ticks, the grid link's dispatch lookups, the
store's writes. Prints one JSON line with what happened.

    python -m tests.storage_fault_run STATE_DIR
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fault_harness import start_run
from tests.scenarios import small_site
from youxu.controller.daemon import dispatch_memory


async def main(state_dir: Path) -> dict:
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=140.0)
    run = await start_run(sc, f"sqlite:///{state_dir / 'youxu.sqlite'}")
    try:
        store = run.daemon.store
        assert store is not None
        dispatch = dispatch_memory(run.daemon.cfg, store)["open_store"]()  # as the grid link opens it
        await run.tick(5)
        assert store.flush(10.0) and dispatch.find_command("none") is None
        await run.tick(1)
        assert store.flush(10.0)  # the last commit before the fault
        os.sync()
        for p in [*state_dir.iterdir(), state_dir]:
            subprocess.run(["chattr", "+i", str(p)], check=True)
        print("state files immutable", flush=True)
        looked_up = dispatch.find_command("cmd-1") is None  # a dispatch command arrives
        for _ in range(20):
            await run.tick(1)
            await asyncio.sleep(0.02)
        return {"looked_up": looked_up, "ticks": run.daemon.loop.stats.ticks, "db_ok": store.db_ok,
                "last_error": store.last_error, "kinds": run.link.kinds(), "max_over_run": run.max_over_run,
                "tick_errors": run.daemon.loop.stats.tick_errors, "ev_kw": float(run.ev_setpoints_kw.sum())}
    finally:
        await run.close()


if __name__ == "__main__":
    faulthandler.enable()
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))), flush=True)
