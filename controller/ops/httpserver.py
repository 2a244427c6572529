"""`/metrics` (Prometheus text format) and `/healthz` on `metrics.listen`, in a thread of its own.

`/healthz` answers 200 with a small JSON body while ticks complete, 503 when the loop is
stalled (no tick within the stall time) or has not ticked yet.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from youxu.config.errors import UserError

if TYPE_CHECKING:
    from youxu.controller.loop.fastloop import FastLoop
    from youxu.controller.ops.metrics import LoopMetrics

log = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"metrics.listen {listen!r}: expected host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def health(loop: FastLoop, stall_s: float) -> tuple[int, dict]:
    age = loop.tick_age_s()
    store = loop.store
    body = {"status": "ok", "last_tick_age_s": None if age is None else round(age, 3),
            "safe_mode": loop.safe.active, "meter_ok": loop.meter_guard.state == "ok",
            "database_ok": bool(getattr(store, "db_ok", True)) if store is not None else None,
            "database_replaced": int(getattr(store, "replaced", 0)) if store is not None else None,
            "ticks": loop.stats.ticks}
    if age is None:
        body["status"] = "starting"
        return 503, body
    if age > stall_s:
        body["status"] = "stalled"
        return 503, body
    return 200, body


class MetricsServer:
    def __init__(self, listen: str, loop: FastLoop, metrics: LoopMetrics) -> None:
        host, port = parse_listen(listen)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    data, ctype, code = generate_latest(metrics.registry), CONTENT_TYPE_LATEST, 200
                elif path == "/healthz":
                    code, body = health(outer.loop, metrics.stall_s)
                    data, ctype = (json.dumps(body) + "\n").encode(), "application/json"
                elif path == "/ocpp" and outer.loop.io.central is not None:
                    central = outer.loop.io.central
                    now = central.clock.now()
                    body = {"charge_points": [st.report(now) for st in list(central.states.values())]}
                    data, ctype, code = (json.dumps(body) + "\n").encode(), "application/json", 200
                else:
                    data, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("metrics http: " + format, *args)

        self.loop = loop
        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise UserError(f"metrics.listen {listen}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="youxu-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics and health on http://%s:%d/metrics, /healthz (and /ocpp)", self.httpd.server_address[0],
                 self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
