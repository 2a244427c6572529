"""Log output: plain text, or JSON lines (one object per record) for log shippers.

`YOUXU_LOG_FORMAT=json` selects JSON lines; fields: ts (epoch s), level, logger, msg, and the
exception text when there is one. Under systemd the journal adds its own timestamps.
"""

from __future__ import annotations

import json
import logging
import os

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                                  "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        for key in ("kind", "pile", "device"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(fmt: str | None = None) -> str:
    """Apply the log format to the root logger's handlers (adding one if there is none)."""
    fmt = (fmt or os.environ.get("YOUXU_LOG_FORMAT") or "text").lower()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO)
    formatter: logging.Formatter = JsonLines() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    for h in root.handlers:
        h.setFormatter(formatter)
    return fmt
