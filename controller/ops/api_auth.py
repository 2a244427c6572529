"""Who may use the local API, and how much: bearer tokens from `api.tokens_file`, a rate per client.

The tokens file has one `name:token:role` per line (role `read` or `write`, `read` when omitted);
`#` starts a comment. A `write` token may also read. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from youxu.config.errors import UserError

ROLES = ("read", "write")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str  # read | write

    def may(self, role: str) -> bool:
        return self.role == "write" or role == "read"


def parse_tokens(text: str, source: str = "tokens file") -> dict[str, Principal]:
    """token -> who holds it; UserError naming the line of any problem."""
    out: dict[str, Principal] = {}
    problems: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(":")]
        if len(parts) == 2:
            parts.append("read")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            problems.append(f"line {n}: expected name:token:role")
            continue
        name, token, role = parts
        if role not in ROLES:
            problems.append(f"line {n}: role {role!r} is not read or write")
        elif len(token) < 8:
            problems.append(f"line {n}: token of {name!r} is shorter than 8 characters")
        elif token in out:
            problems.append(f"line {n}: token of {name!r} is also {out[token].name!r}'s")
        else:
            out[token] = Principal(name, role)
    if problems:
        raise UserError(f"{source}: " + "; ".join(problems))
    return out


def load_tokens(path: Path | None) -> dict[str, Principal]:
    if path is None:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"api.tokens_file {path}: {exc.strerror or exc}") from None
    return parse_tokens(text, f"api.tokens_file {path}")


class Tokens:
    def __init__(self, tokens: dict[str, Principal]) -> None:
        self._tokens = [(t.encode(), p) for t, p in tokens.items()]

    def who(self, authorization: str | None) -> Principal | None:
        """The holder of the `Authorization: Bearer ...` header's token, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        given = token.strip().encode()
        found = None
        for t, p in self._tokens:  # every token compared, in constant time: no timing tells which is near
            if hmac.compare_digest(t, given):
                found = p
        return found


class RateLimit:
    """A token bucket per client: `rate_per_s` sustained, `burst` at once."""

    MAX_CLIENTS = 1024

    def __init__(self, rate_per_s: float, burst: int, now: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s, self.burst, self.now = rate_per_s, float(burst), now
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds to wait."""
        t = self.now()
        with self._lock:
            tokens, at = self._buckets.get(client, (self.burst, t))
            tokens = min(self.burst, tokens + (t - at) * self.rate_per_s)
            if len(self._buckets) >= self.MAX_CLIENTS and client not in self._buckets:
                self._buckets.clear()  # a flood of addresses: start afresh rather than grow
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, t)
                return 0.0
            self._buckets[client] = (tokens, t)
            return (1.0 - tokens) / self.rate_per_s
