"""A site with its local API: `sim serve` + `youxu run` (tests/site_processes.py) with `api.listen` on a
free port and a tokens file, and a small HTTP client for it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from tests.site_processes import RunningSite, start_site
from youxu.sim.ports import free_port

READ_TOKEN = "read-token-0123456789"
WRITE_TOKEN = "write-token-9876543210"
TOKENS = f"""# who may use the local API
viewer:{READ_TOKEN}:read
electrician:{WRITE_TOKEN}:write
"""


def write_tokens(workdir: Path) -> Path:
    path = workdir / "api-tokens"
    path.write_text(TOKENS, encoding="utf-8")
    return path


async def start_api_site(workdir: Path, broker_port: int, site_id: str, pub_binary: str,
                         api: dict[str, Any] | None = None, **kw: Any) -> tuple[RunningSite, str]:
    """The site running and its API answering; returns it and the API's base URL."""
    port = free_port()
    api_cfg = {"listen": f"127.0.0.1:{port}", "tokens_file": str(write_tokens(workdir)), **(api or {})}
    control = {"strategy": "fairshare", "period_s": 0.5, "budget_ms": 400.0, **kw.pop("control", {})}
    site = await start_site(workdir, broker_port, site_id, pub_binary, control=control, api_cfg=api_cfg, **kw)
    base = f"http://127.0.0.1:{port}"
    try:
        await until_status(base, 20.0)
    except BaseException:
        print(site.logs())
        await site.close()
        raise
    return site, base


async def until_status(base: str, timeout_s: float) -> dict[str, Any]:
    """Wait for the API to answer /status with a tick's telemetry."""
    deadline = time.monotonic() + timeout_s
    last = None
    async with httpx.AsyncClient(base_url=base, headers=auth(READ_TOKEN), timeout=5.0) as c:
        while time.monotonic() < deadline:
            try:
                r = await c.get("/api/v1/status")
                if r.status_code == 200:
                    return r.json()
                last = f"{r.status_code} {r.text}"
            except httpx.TransportError as exc:
                last = repr(exc)
            await asyncio.sleep(0.1)
    raise AssertionError(f"the API at {base} did not answer within {timeout_s} s: {last}")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def until(fn: Any, timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    """Poll `fn()` (async) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise AssertionError(f"not {what} within {timeout_s} s (last: {last!r})")
