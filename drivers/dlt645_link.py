"""One DL/T 645 line: an RS-485 port (`dlt645:///dev/ttyUSB0?baud=2400&parity=E`) or a
serial-to-Ethernet gateway in transparent mode (`dlt645-tcp://host:port`), shared by the meters
behind it.

One request at a time, in the order asked (asyncio's lock is first-come first-served); a pause
between requests (`spacing_ms`); a timeout per request. Whatever is on the line before a request
(a late answer to an earlier one, noise) is discarded, and an answer counts only when it comes
from the meter that was asked for the identifier that was asked, so a late answer is never taken
for another meter's. A connection that fails is closed and opened again on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import serial_asyncio_fast

from youxu.drivers import dlt645
from youxu.drivers.transport import DeviceError, DeviceException, DeviceTimeout, Endpoint

log = logging.getLogger(__name__)

READ_CHUNK = 256


class Dlt645Link:
    def __init__(self, endpoint: Endpoint, timeout_s: float = 0.5, reconnect_s: float = 2.0) -> None:
        if endpoint.protocol != "dlt645-2007":
            raise ValueError(f"{endpoint.scheme} is not a DL/T 645 transport")
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.reconnect_s = reconnect_s
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._failed_open_at = -float("inf")
        self._last_request_end = 0.0
        self.requests = 0
        self.failures = 0

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def _open(self, timeout_s: float) -> None:
        if self.connected:
            return
        if time.monotonic() - self._failed_open_at < self.reconnect_s:
            raise DeviceTimeout(f"cannot connect to {self.endpoint.key} (retrying every {self.reconnect_s:g} s)")
        ep = self.endpoint
        try:
            async with asyncio.timeout(max(timeout_s, 1.0)):
                if ep.is_tcp:
                    self._reader, self._writer = await asyncio.open_connection(ep.host, ep.port)
                else:
                    self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                        url=ep.device, baudrate=ep.baud, parity=ep.parity, stopbits=ep.stopbits, bytesize=ep.bytesize)
        except (OSError, TimeoutError, ValueError) as exc:
            self._failed_open_at = time.monotonic()
            self._reader = self._writer = None
            raise DeviceTimeout(f"cannot connect to {ep.key}: {exc or type(exc).__name__}") from None

    def _drop(self) -> None:
        w, self._reader, self._writer = self._writer, None, None
        if w is not None:
            with contextlib.suppress(Exception):
                w.close()

    async def _discard_pending(self) -> None:
        """Whatever is already on the line belongs to no request of ours."""
        r = self._reader
        if r is None:
            return
        while True:
            try:
                async with asyncio.timeout(0):
                    chunk = await r.read(READ_CHUNK)
            except TimeoutError:
                return
            if not chunk:  # the other end closed
                self._drop()
                return

    async def request(self, address: str, di: str, timeout_s: float | None = None) -> bytes:
        """Read data identifier `di` from the meter at `address`: the value bytes after the DI.

        Raises DeviceTimeout (no answer), DeviceException (the meter's error answer; its code is
        the error byte) or DeviceError (a garbled answer)."""
        timeout_s = timeout_s or self.timeout_s
        request = dlt645.read_request(address, di)
        want_di = dlt645.di_bytes(di)
        async with self._lock:
            self.requests += 1
            gap = self.endpoint.spacing_ms / 1e3 - (time.monotonic() - self._last_request_end)
            if gap > 0:
                await asyncio.sleep(gap)
            try:
                await self._open(timeout_s)
                await self._discard_pending()
                if self._writer is None:
                    await self._open(timeout_s)
                assert self._writer is not None and self._reader is not None
                self._writer.write(request)
                await self._writer.drain()
                frame = await self._answer(address, want_di, timeout_s)
            except DeviceError:
                self.failures += 1
                raise
            except (OSError, ConnectionError) as exc:
                self.failures += 1
                self._drop()
                raise DeviceTimeout(f"{self.endpoint.key}: {exc or type(exc).__name__}") from None
            finally:
                self._last_request_end = time.monotonic()
        if frame.is_error:
            raise DeviceException(f"meter {address} answers {di} with an error: {frame.error_text()}",
                                  frame.error_code)
        return frame.data[4:]

    async def _answer(self, address: str, want_di: bytes, timeout_s: float) -> dlt645.Frame:
        assert self._reader is not None
        buf = bytearray()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    chunk = await self._reader.read(READ_CHUNK)
                    if not chunk:
                        self._drop()
                        raise DeviceTimeout(f"{self.endpoint.key} closed the connection")
                    buf += chunk
                    while True:
                        try:
                            frame, used = dlt645.find_frame(buf)
                        except dlt645.FrameError as exc:
                            raise DeviceError(f"meter {address}: garbled answer ({exc})") from None
                        del buf[:used]
                        if frame is None:
                            break
                        if frame.address == address and frame.is_answer and (
                                frame.is_error or frame.data[:4] == want_di):
                            return frame
                        # an echo of our own request on a half-duplex adapter, or another meter's answer
        except TimeoutError:
            raise DeviceTimeout(f"no answer from meter {address} at {self.endpoint.key} "
                                f"within {timeout_s:g} s") from None

    def close(self) -> None:
        self._drop()
