"""The latest dispatch commands and the acks sent for them, for the local API (`GET /api/v1/commands`).

The grid link feeds it from its own paths (every transition of a command, every ack published) under
its lock; the API's thread reads a copy. Commands in force are never dropped; others leave oldest first.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import tzinfo
from typing import Any

from youxu.controller.grid.commands import CommandRecord
from youxu.controller.grid.dispatch_schema import format_rfc3339

MAX_COMMANDS_KEPT = 50
MAX_ACKS_KEPT = 10  # per command, the latest

Entry = tuple[str, CommandRecord | None, str | None, list[dict[str, Any]]]  # id, record, its state, acks


class CommandLog:
    def __init__(self, size: int = MAX_COMMANDS_KEPT) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[CommandRecord | None, list[dict[str, Any]]]] = OrderedDict()

    def remember(self, command_id: str | None, rec: CommandRecord | None, ack: dict[str, Any] | None,
                 held: set[str]) -> None:
        """A command's new state (`rec`) and/or an ack sent for it; `held` are the ids in force."""
        if command_id is None:
            return
        old_rec, acks = self._items.pop(command_id, (None, []))
        if ack is not None:
            acks = [*acks, ack][-MAX_ACKS_KEPT:]
        self._items[command_id] = (rec or old_rec, acks)
        while len(self._items) > self.size:
            victim = next((c for c in self._items if c not in held), None)
            if victim is None:
                break
            del self._items[victim]

    def snapshot(self) -> list[Entry]:
        """A copy, taken under the owner's lock, to format outside it: a record's state changes as the
        command lives, so it is read here; its command and payload never change."""
        return [(cid, rec, rec.state if rec is not None else None, list(acks))
                for cid, (rec, acks) in self._items.items()]

    @staticmethod
    def view(items: list[Entry], held: set[str], tz: tzinfo) -> list[dict[str, Any]]:
        """Newest first, each with its acks; `held` are the ids in force."""
        out = []
        for cid, rec, state, acks in reversed(items):
            item: dict[str, Any] = {"command_id": cid, "in_force": cid in held, "acks": acks}
            if rec is not None:
                c = rec.cmd
                item.update({"role": rec.role, "state": state, "issuer": c.issuer, "seq": c.seq, "type": c.type,
                             "scope": c.scope, "received": format_rfc3339(rec.received_s, tz),
                             "command": json.loads(rec.payload)})
            else:  # refused before it was admitted: only its acks
                item["state"] = acks[-1]["status"] if acks else None
            out.append(item)
        return out
