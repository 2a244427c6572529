"""schedule.csv (contract section 3): its text, and a process that writes it while the simulation runs.

A year of 60 s steps at a 400-pile community is some 60 million rows: formatting them is a
sizeable share of the run. `ScheduleStream` hands each finished block of rows to a process
of its own, which formats and writes them on the other core while the simulation goes on.
This module imports only numpy, so that process starts quickly.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TextIO

import numpy as np

SCHEDULE_HEADER = ["t_s", "session_id", "pile_id", "kw"]
ROW_CHUNK = 500_000  # rows formatted at a time


class ScheduleText:
    """Rows as text: "t_s," per step and "session_id,pile_id," per session are made once (a session
    stays on its pile), so a row costs one number to format."""

    def __init__(self, step_s: int, n_steps: int, session_labels: list[tuple[str, str]]) -> None:
        self.step_prefix = np.array([f"{k * step_s}," for k in range(n_steps)], dtype=object)
        self.session_prefix = np.array([f"{sid},{pid}," for sid, pid in session_labels], dtype=object)

    def write(self, f: TextIO, step: np.ndarray, session: np.ndarray, kw: np.ndarray) -> None:
        for a in range(0, kw.size, ROW_CHUNK):
            b = a + ROW_CHUNK
            kw_text = np.fromiter(map("%.4f\n".__mod__, kw[a:b].tolist()), dtype=object, count=kw[a:b].size)
            f.write("".join((self.step_prefix[step[a:b]] + self.session_prefix[session[a:b]] + kw_text).tolist()))


def _writer(path: str, step_s: int, n_steps: int, session_labels: list[tuple[str, str]], conn: Connection) -> None:
    text = ScheduleText(step_s, n_steps, session_labels)
    with open(path, "w", newline="") as f:
        f.write(",".join(SCHEDULE_HEADER) + "\n")
        while (block := conn.recv()) is not None:
            text.write(f, *block)
    conn.send("done")


class ScheduleStream:
    """schedule.csv written by another process from blocks of rows sent in order (by step, then pile)."""

    def __init__(self, path: Path, step_s: int, n_steps: int, session_labels: list[tuple[str, str]]) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_writer, args=(str(path), step_s, n_steps, session_labels, child), daemon=True)
        self._proc.start()
        child.close()

    def send(self, step: np.ndarray, session: np.ndarray, kw: np.ndarray) -> None:
        self._conn.send((step, session, kw))

    def close(self) -> None:
        """Wait until every row is on disk; raise if the writer failed."""
        try:
            self._conn.send(None)
            ok = self._conn.recv() == "done"
        except (EOFError, BrokenPipeError):
            ok = False
        self._proc.join()
        self._conn.close()
        if not ok or self._proc.exitcode != 0:
            raise OSError(f"writing schedule.csv failed (writer exit code {self._proc.exitcode})")
