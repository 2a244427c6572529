"""Load on the local API for `youxu bench loop --api-rps`: a status page held open (its live stream
read to the end of every message) and the API polled at a steady rate, from a process of its own.

    python -m youxu.sim.api_load --url http://127.0.0.1:8080/ --token T --rps 10 --seconds 60

prints `{"requests", "errors", "live_messages"}` as JSON when done. Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

PATHS = ("/api/v1/status", "/api/v1/piles", "/api/v1/sessions", "/api/v1/commands", "/api/v1/events")


def hold_page(url: str, stop: threading.Event, counts: dict[str, int]) -> None:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        for name in ("app.js", "style.css"):
            conn.request("GET", f"/static/{name}")
            conn.getresponse().read()
        conn.request("GET", "/live")
        r = conn.getresponse()
        while not stop.is_set():
            line = r.readline()
            if not line:
                break
            if line.startswith(b"event:"):
                counts["live_messages"] += 1
    except OSError:
        counts["errors"] += 1
    finally:
        conn.close()


def poll(url: str, token: str, rps: float, seconds: float, counts: dict[str, int]) -> None:
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        path = PATHS[n % len(PATHS)]
        try:
            with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=5) as r:
                r.read()
            counts["requests"] += 1
        except (urllib.error.URLError, OSError):
            counts["errors"] += 1
        n += 1
        wait = t0 + n / rps - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--rps", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    counts = {"requests": 0, "errors": 0, "live_messages": 0}
    stop = threading.Event()
    page = threading.Thread(target=hold_page, args=(args.url, stop, counts), daemon=True)
    page.start()
    poll(args.url, args.token, args.rps, args.seconds, counts)
    stop.set()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
