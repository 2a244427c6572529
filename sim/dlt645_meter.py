"""A simulated DL/T 645-2007 three-phase meter, on TCP (as behind a transparent serial gateway)
or on a serial device (one end of a socat pty pair), for tests and commissioning practice.

    python -m youxu.sim.dlt645_meter --tcp 127.0.0.1:8645 --address 000012345678 \\
        --power-kw 41.5,12.0,14.5,15.0 --voltage-v 230.1,229.4,231.0 --current-a 52.2,63.0,65.1 \\
        --energy-kwh 123456.78,12.5

The data identifiers and their formats are the standard's (DL/T 645-2007 appendix A), written
here on their own rather than read from youxu's profile, so the two can be checked against
each other. It answers the block identifiers unless `--no-blocks`, sends the wake-up preamble
before its answers unless `--no-preamble`, and answers an identifier it does not know with an
error frame ("no such data"), as real meters do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from youxu.drivers import dlt645

log = logging.getLogger(__name__)

# DI -> (format, signed), from DL/T 645-2007 appendix A
STANDARD: dict[str, tuple[str, bool]] = {
    "00010000": ("XXXXXX.XX", False),  # forward active energy, total (kWh)
    "00020000": ("XXXXXX.XX", False),  # reverse active energy, total (kWh)
    "02010100": ("XXX.X", False), "02010200": ("XXX.X", False), "02010300": ("XXX.X", False),  # voltage (V)
    "02020100": ("XXX.XXX", True), "02020200": ("XXX.XXX", True), "02020300": ("XXX.XXX", True),  # current (A)
    "02030000": ("XX.XXXX", True), "02030100": ("XX.XXXX", True), "02030200": ("XX.XXXX", True),  # power (kW)
    "02030300": ("XX.XXXX", True),
}
BLOCKS = {
    "0201FF00": ("02010100", "02010200", "02010300"),
    "0202FF00": ("02020100", "02020200", "02020300"),
    "0203FF00": ("02030000", "02030100", "02030200", "02030300"),
}


@dataclass
class SimulatedMeter:
    address: str
    values: dict[str, float] = field(default_factory=dict)  # DI -> value
    blocks: bool = True
    preamble: bool = True
    requests: list[str] = field(default_factory=list)  # the DIs asked for, in order
    on_request: Callable[[str], None] | None = None

    def answer(self, frame: dlt645.Frame) -> bytes | None:
        """The meter's reply to one frame, or None when the frame is not for this meter."""
        if frame.address != self.address or frame.control != dlt645.READ or len(frame.data) != 4:
            return None
        di = frame.data[::-1].hex().upper()
        self.requests.append(di)
        if self.on_request is not None:
            self.on_request(di)
        parts = BLOCKS.get(di) if self.blocks else None
        items = parts if parts is not None else (di,)
        if any(i not in STANDARD or i not in self.values for i in items):
            reply = dlt645.encode(self.address, dlt645.ERROR, bytes([dlt645.NO_DATA]))
        else:
            data = frame.data + b"".join(dlt645.ValueFormat.parse(*STANDARD[i]).encode(self.values[i]) for i in items)
            reply = dlt645.encode(self.address, dlt645.ANSWER, data)
        return (dlt645.PREAMBLE if self.preamble else b"") + reply

    async def serve_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        try:
            while chunk := await reader.read(256):
                buf += chunk
                while True:
                    try:
                        frame, used = dlt645.find_frame(buf)
                    except dlt645.FrameError:
                        buf.clear()  # a garbled request gets no answer, as on a real line
                        break
                    del buf[:used]
                    if frame is None:
                        break
                    reply = self.answer(frame)
                    if reply is not None:
                        writer.write(reply)
                        await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def values_from(power_kw: list[float], voltage_v: list[float], current_a: list[float],
                energy_kwh: list[float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for di, v in zip(("02030000", "02030100", "02030200", "02030300"), power_kw, strict=False):
        out[di] = v
    for di, v in zip(("02010100", "02010200", "02010300"), voltage_v, strict=False):
        out[di] = v
    for di, v in zip(("02020100", "02020200", "02020300"), current_a, strict=False):
        out[di] = v
    for di, v in zip(("00010000", "00020000"), energy_kwh, strict=False):
        out[di] = v
    return out


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()] if text else []


async def _main(args: argparse.Namespace) -> int:
    meter = SimulatedMeter(args.address, values_from(_floats(args.power_kw), _floats(args.voltage_v),
                                                     _floats(args.current_a), _floats(args.energy_kwh)),
                           blocks=not args.no_blocks, preamble=not args.no_preamble)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        server = await asyncio.start_server(meter.serve_stream, host or "127.0.0.1", int(port))
        print(f"listening on {args.tcp}", flush=True)
        async with server:
            await stop.wait()
        return 0
    import serial_asyncio_fast

    reader, writer = await serial_asyncio_fast.open_serial_connection(url=args.serial, baudrate=args.baud,
                                                                      parity=args.parity)
    print(f"listening on {args.serial}", flush=True)
    task = asyncio.create_task(meter.serve_stream(reader, writer))
    await stop.wait()
    task.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m youxu.sim.dlt645_meter", description=__doc__.split("\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", help="HOST:PORT to listen on")
    where.add_argument("--serial", help="serial device to answer on (e.g. one end of a socat pty pair)")
    p.add_argument("--baud", type=int, default=2400)
    p.add_argument("--parity", default="E")
    p.add_argument("--address", required=True, help="12-digit meter address")
    p.add_argument("--power-kw", default="", help="total,L1,L2,L3")
    p.add_argument("--voltage-v", default="", help="L1,L2,L3")
    p.add_argument("--current-a", default="", help="L1,L2,L3")
    p.add_argument("--energy-kwh", default="", help="import,export")
    p.add_argument("--no-blocks", action="store_true", help="answer block identifiers with 'no such data'")
    p.add_argument("--no-preamble", action="store_true", help="no FE FE FE FE before answers")
    args = p.parse_args(argv)
    dlt645.check_address(args.address)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
