"""Free TCP ports on loopback for simulated devices."""

from __future__ import annotations

import socket


def free_port_block(count: int = 1, host: str = "127.0.0.1", start: int = 20000, end: int = 60000) -> int:
    """First port of `count` consecutive ports that are free now."""
    port = start
    while port + count < end:
        ok = True
        for p in range(port, port + count):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, p))
                except OSError:
                    ok = False
                    port = p + 1
                    break
        if ok:
            return port
    raise OSError(f"no block of {count} free ports on {host}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
