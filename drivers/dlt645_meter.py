"""A transformer meter speaking DL/T 645-2007, read through its profile's data items.

Each poll reads what is due: items with `every_s: 0` (power) every time, the others when
their period has passed (a request takes about 0.2 s at 2400 baud, so voltages and energy are
not read every second). A profile's data blocks read several items in one request; a meter
that answers a block with "no such data" is read item by item from then on, and an item it has
no identifier for (some meters give no currents, say) stays unknown.
"""

from __future__ import annotations

import time

import numpy as np

from youxu.drivers.dlt645 import NO_DATA, FrameError, check_address
from youxu.drivers.dlt645_link import Dlt645Link
from youxu.drivers.meter import PHASE_KEYS, MeterReading
from youxu.drivers.profiles import DataBlock, Profile
from youxu.drivers.transport import DeviceError, DeviceException


class Dlt645Meter:
    def __init__(self, profile: Profile, link: Dlt645Link, address: str, timeout_s: float = 0.5) -> None:
        if profile.protocol != "dlt645-2007":
            raise ValueError(f"profile {profile.name} is not a DL/T 645-2007 profile")
        self.profile = profile
        self.link = link
        self.address = check_address(address)
        self.timeout_s = timeout_s
        self.items = profile.data_items
        self.values: dict[str, float] = {}
        self.read_at: dict[str, float] = {}
        self.unsupported_blocks: set[str] = set()
        self.unsupported_items: set[str] = set()

    @property
    def label(self) -> str:
        return f"{self.profile.name} address {self.address}"

    def _due(self, now: float) -> list[str]:
        return [name for name, item in self.items.items()
                if item.every_s <= 0 or now - self.read_at.get(name, -np.inf) >= item.every_s]

    async def _read_block(self, block: DataBlock, timeout_s: float) -> dict[str, float]:
        raw = await self.link.request(self.address, block.di, timeout_s)
        fmts = [self.items[n].value_format for n in block.items]
        if len(raw) != sum(f.size for f in fmts):
            raise DeviceError(f"meter {self.address}: block {block.di} gave {len(raw)} bytes, "
                              f"expected {sum(f.size for f in fmts)}")
        out, pos = {}, 0
        for name, fmt in zip(block.items, fmts, strict=True):
            out[name] = fmt.decode(raw[pos:pos + fmt.size]) * self.items[name].canonical_factor
            pos += fmt.size
        return out

    async def _read_item(self, name: str, timeout_s: float) -> float:
        item = self.items[name]
        raw = await self.link.request(self.address, item.di, timeout_s)
        return item.value_format.decode(raw) * item.canonical_factor

    async def read_values(self, timeout_s: float | None = None) -> dict[str, float]:
        """Read every due item; the latest value of each item, in canonical units."""
        timeout_s = timeout_s or self.timeout_s
        now = time.monotonic()
        due = set(self._due(now))
        fresh: dict[str, float] = {}
        try:
            for block in self.profile.data_blocks:
                if block.di in self.unsupported_blocks or not due.intersection(block.items):
                    continue
                try:
                    fresh.update(await self._read_block(block, timeout_s))
                except DeviceException as exc:
                    if not exc.code & NO_DATA:
                        raise
                    self.unsupported_blocks.add(block.di)
            for name in sorted(due - set(fresh) - self.unsupported_items):
                try:
                    fresh[name] = await self._read_item(name, timeout_s)
                except DeviceException as exc:
                    if not exc.code & NO_DATA:
                        raise
                    self.unsupported_items.add(name)  # this meter has no such identifier: the value stays unknown
        except FrameError as exc:
            raise DeviceError(f"meter {self.address}: {exc}") from None
        self.values.update(fresh)
        self.read_at.update(dict.fromkeys(fresh, now))
        return dict(self.values)

    async def read(self, timeout_s: float | None = None) -> MeterReading:
        v = await self.read_values(timeout_s)
        phases = [v.get(f"power_{k}") for k in PHASE_KEYS]
        power = v.get("power")
        if power is None:
            if any(p is None for p in phases):
                raise DeviceError("meter gives neither total nor per-phase power")
            power = float(sum(p for p in phases if p is not None))
        phase_arr = None if any(p is None for p in phases) else np.array(phases, dtype=float)
        return MeterReading(
            power_kw=power,
            phase_power_kw=phase_arr,
            voltage_v={f"L{i + 1}": v.get(f"voltage_{k}") for i, k in enumerate(PHASE_KEYS)},
            current_a={f"L{i + 1}": v.get(f"current_{k}") for i, k in enumerate(PHASE_KEYS)},
            import_kwh=v.get("import_energy"),
            export_kwh=v.get("export_energy"),
        )
