"""Alarms about storage, from the store's counters, checked by the loop once per tick (cheap reads).

storage_down when the database stops taking writes (rows are buffered), storage_restored when it
takes them again, storage_rows_dropped when the bounded queues start dropping readings (at most
once a minute while it goes on; the total is in the metrics and in storage_restored),
storage_replaced when the database file was deleted or replaced under the running store (which
opened the path afresh: what the old file held is gone unless a backup has it).
"""

from __future__ import annotations

from dataclasses import dataclass

from youxu.controller.storelink import StoreHealth

DOWN, RESTORED, DROPPED, REPLACED = "storage_down", "storage_restored", "storage_rows_dropped", "storage_replaced"
DROP_REPORT_S = 60.0


@dataclass
class StorageWatch:
    down: bool = False
    down_since_s: float = 0.0
    dropped_seen: int = 0
    dropped_at_down: int = 0
    last_drop_report_s: float = float("-inf")
    replaced_seen: int = 0

    def check(self, store: StoreHealth, t_s: float) -> list[tuple[str, str, dict]]:
        ok, dropped, depth = bool(store.db_ok), int(store.dropped), int(store.depth)
        out: list[tuple[str, str, dict]] = []
        if not ok and not self.down:
            self.down, self.down_since_s, self.dropped_at_down = True, t_s, dropped
            err = str(store.last_error)
            out.append((DOWN, f"database not writable, buffering rows: {err}", {"error": err, "queued": depth}))
        elif ok and self.down:
            self.down = False
            lost = dropped - self.dropped_at_down
            out.append((RESTORED, f"database writable again after {t_s - self.down_since_s:.0f} s; "
                        f"{lost} readings dropped meanwhile", {"down_s": round(t_s - self.down_since_s, 1),
                                                               "rows_dropped": lost, "queued": depth}))
        if dropped > self.dropped_seen and t_s - self.last_drop_report_s >= DROP_REPORT_S:
            self.last_drop_report_s = t_s
            out.append((DROPPED, f"storage queue full: {dropped} readings dropped so far (oldest first; "
                        "sessions, events and commands are kept)", {"rows_dropped": dropped}))
        self.dropped_seen = dropped
        replaced = int(getattr(store, "replaced", 0))
        if replaced > self.replaced_seen:
            self.replaced_seen = replaced
            err = str(getattr(store, "replaced_error", ""))
            out.append((REPLACED, f"{err}; a new database was created at the same path and is written from now "
                        "on: history, sessions and dispatch records before are lost unless restored from a backup",
                        {"error": err, "times": replaced}))
        return out
