"""Run in a process of its own by tests/test_storage_volume.py (a SIGBUS would end pytest too):
the real daemon controls simulated devices over Modbus TCP with its SQLite state on the volume
given; then, after the kernel wrote the files back (as it does every few seconds), the volume stops
taking writes, and the daemon goes on: ticks, the grid link's dispatch lookups, the store's writes.
Prints one JSON line with what happened. FAULT:

- `immutable`: the state files and directory made immutable (`chattr +i`);
- `remount-ro`: an ext4 error on the volume (mounted `errors=remount-ro`), as a failing SD card or
  eMMC gives: the kernel remounts it read-only;
- `shutdown`: the filesystem shut down (`EXT4_IOC_SHUTDOWN`, the device gone): every I/O fails.

    python -m tests.storage_fault_run STATE_DIR FAULT [DEVICE]
"""

from __future__ import annotations

import asyncio
import faulthandler
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fault_harness import start_run
from tests.scenarios import small_site
from youxu.controller.daemon import dispatch_memory
from youxu.controller.grid.dispatch_memory import DispatchMemory

EXT4_IOC_SHUTDOWN = 0x8004587D
SHUTDOWN_NOLOGFLUSH = 2


def break_volume(state_dir: Path, fault: str, device: str | None) -> None:
    if fault == "immutable":
        for p in [*state_dir.iterdir(), state_dir]:
            subprocess.run(["chattr", "+i", str(p)], check=True)
    elif fault == "remount-ro":
        assert device is not None
        Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error").write_text("injected by the test\n")
    elif fault == "shutdown":
        fd = os.open(state_dir.parent, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, SHUTDOWN_NOLOGFLUSH.to_bytes(4, "little"))
        finally:
            os.close(fd)
    else:
        raise SystemExit(f"unknown fault {fault!r}")


async def main(state_dir: Path, fault: str, device: str | None) -> dict:
    sc = small_site(n_piles=4, base_kw=100.0, limit_kw=140.0)
    run = await start_run(sc, f"sqlite:///{state_dir / 'youxu.sqlite'}")
    try:
        store = run.daemon.store
        assert store is not None
        dispatch = DispatchMemory(dispatch_memory(run.daemon.cfg, store)["open_store"]())  # as the grid link has it
        await run.tick(5)
        assert store.flush(10.0) and dispatch.find_command("none") is None
        await run.tick(1)
        assert store.flush(10.0)  # the last commit before the fault
        os.sync()
        break_volume(state_dir, fault, device)
        print(f"volume broken: {fault}", flush=True)
        looked_up = dispatch.find_command("cmd-1") is None  # a dispatch command arrives
        for _ in range(20):
            await run.tick(1)
            await asyncio.sleep(0.02)
        store.event(run.clock.now(), "probe", "a vital row written after the fault")
        await asyncio.sleep(0.3)
        return {"looked_up": looked_up, "ticks": run.daemon.loop.stats.ticks, "db_ok": store.db_ok,
                "rejected": store.rejected, "vital_queued": store.depths()["vital"],
                "last_error": store.last_error, "kinds": run.link.kinds(), "max_over_run": run.max_over_run,
                "tick_errors": run.daemon.loop.stats.tick_errors, "ev_kw": float(run.ev_setpoints_kw.sum())}
    finally:
        await run.close()


if __name__ == "__main__":
    faulthandler.enable()
    print(json.dumps(asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))),
          flush=True)
