"""Storage faults on real filesystems: the state volume stops taking writes, fills up, or is
deleted while the daemon runs. Storage may degrade, control may not."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.fixtures_volume import Ext4Volume

REPO = Path(__file__).resolve().parent.parent


def test_immutable_state_files_on_ext4_do_not_kill_the_daemon(ext4_volume: Ext4Volume):
    """With WAL the index in `-shm` is memory-mapped; a dispatch lookup after the last commit writes
    a reader's mark into it, and the page, written back and now immutable, cannot be made writable:
    SIGBUS. The daemon must instead see an error, alarm, and keep controlling."""
    state = ext4_volume.path / "state"
    res = subprocess.run([sys.executable, "-m", "tests.storage_fault_run", str(state)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != -signal.SIGBUS, f"SIGBUS:\n{res.stderr[-2000:]}"
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["looked_up"] and out["ticks"] == 26 and out["tick_errors"] == 0
    assert not out["db_ok"] and "storage_down" in out["kinds"], out
    assert out["max_over_run"] == 0 and out["ev_kw"] > 10.0  # still charging, within the limit
    assert not (state / "youxu.sqlite-shm").exists()
