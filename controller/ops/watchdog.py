"""systemd notification (`Type=notify`, `WatchdogSec=`) fed by the fast loop, via `sdnotify`.

READY=1 after the first completed tick (the site is under control), WATCHDOG=1 after completed
ticks at half the watchdog interval, STATUS= with a one-line summary, STOPPING=1 at shutdown.
Only completed ticks pet the watchdog: a loop stalled in I/O or a deadlock stops the pets and
systemd restarts the service. Outside systemd (`NOTIFY_SOCKET` unset) everything is a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import sdnotify

from youxu.controller.gridlink import TickReport

if TYPE_CHECKING:
    from youxu.controller.loop.fastloop import FastLoop

log = logging.getLogger(__name__)

STATUS_EVERY_S = 30.0


def watchdog_interval_s(env: Mapping[str, str], pid: int) -> float | None:
    """Half of systemd's watchdog timeout, or None when the watchdog is off (or meant for another process)."""
    usec = env.get("WATCHDOG_USEC")
    wpid = env.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0 or (wpid and wpid.isdigit() and int(wpid) != pid):
        return None
    return int(usec) / 1e6 / 2.0


class Watchdog:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self.interval_s = watchdog_interval_s(env, os.getpid()) if self.enabled else None
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        self.ready_sent = False
        self.pets = 0
        self._last_pet_s: float | None = None
        self._last_status_s: float | None = None

    def notify(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def on_tick(self, report: TickReport, loop: FastLoop) -> None:
        if not self.enabled:
            return
        now = loop.steady()
        if not self.ready_sent:
            self.ready_sent = True
            self.notify("READY=1\nSTATUS=" + self.status_line(report, loop))
            log.info("told systemd the site is under control")
            self._last_status_s = now
        if self.interval_s is not None and (self._last_pet_s is None or now - self._last_pet_s >= self.interval_s):
            self.notify("WATCHDOG=1")
            self.pets += 1
            self._last_pet_s = now
        if self._last_status_s is not None and now - self._last_status_s >= STATUS_EVERY_S:
            self.notify("STATUS=" + self.status_line(report, loop))
            self._last_status_s = now

    @staticmethod
    def status_line(r: TickReport, loop: FastLoop) -> str:
        mode = "SAFE MODE" if r.safe_mode else "controlling"
        return (f"{mode}: site {r.total_kw:.1f} kW of {r.limit_kw:.1f} kW, EV {r.ev_kw:.1f} kW, "
                f"{len(loop.tracker.sessions)} sessions, tick {r.tick_ms:.0f} ms")

    def stopping(self) -> None:
        self.notify("STOPPING=1\nSTATUS=leaving piles at their safe current")
