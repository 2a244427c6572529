"""The command line under a pipe whose reader has gone (`youxu device list | head -1`)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_closed_pipe_on_stdout_is_no_error() -> None:
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first line is written
    try:
        proc = subprocess.run([sys.executable, "-m", "youxu.controller.cli", "device", "list"], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
