"""uvicorn serving the local API and status page in a thread (and an asyncio loop) of its own.

The socket is bound when the server is made, so a taken port is a one-line error at start; the
fast loop's asyncio loop never runs a request, and a slow client costs the loop nothing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import uvicorn
from starlette.types import ASGIApp

from youxu.config.errors import UserError

log = logging.getLogger(__name__)

GRACE_S = 1  # open live streams are closed after this at stop


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"api.listen {listen!r}: expected host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class ApiServer:
    """Bound at once (`listen`), serving once `start` is given the app."""

    def __init__(self, listen: str) -> None:
        host, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise UserError(f"api.listen {listen}: {exc.strerror or exc}") from None
        sock.listen(128)
        sock.set_inheritable(True)
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    def _run(self, server: uvicorn.Server) -> None:
        try:
            asyncio.run(server.serve(sockets=[self.sock]))
        except Exception:
            log.exception("api server failed")

    def start(self, app: ASGIApp) -> ApiServer:
        config = uvicorn.Config(app, loop="asyncio", http="h11", lifespan="off", log_level="warning",
                                access_log=False, timeout_graceful_shutdown=GRACE_S, limit_concurrency=64,
                                h11_max_incomplete_event_size=16384, server_header=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, args=(self.server,), name="youxu-api", daemon=True)
        self._thread.start()
        log.info("status page and API on %s (API under /api/v1/)", self.url)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.server is not None and self._thread is not None:
            self.server.should_exit = True
            self._thread.join(timeout_s)
        self.sock.close()
