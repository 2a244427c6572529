"""A device behind a profile: block reads decoded into named canonical values."""

from __future__ import annotations

from drivers.profiles import Profile, Register
from drivers.registers import Block, RegisterValueError, decode, decode_canonical, plan_blocks, slice_words
from drivers.transport import DeviceError, ModbusBus


class ProfiledDevice:
    """Reads every register of a profile in as few requests as possible."""

    def __init__(self, profile: Profile, bus: ModbusBus, unit: int, timeout_s: float = 0.5) -> None:
        self.profile = profile
        self.bus = bus
        self.unit = unit
        self.timeout_s = timeout_s
        self.registers: dict[str, Register] = profile.read_registers()
        self.blocks: list[Block] = plan_blocks(self.registers, profile.max_read_gap)

    async def read_raw(self, timeout_s: float | None = None) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for block in self.blocks:
            words = await self.bus.read(block.fc, block.address, block.count, self.unit, timeout_s or self.timeout_s)
            for name in block.names:
                out[name] = slice_words(block, words, self.registers[name])
        return out

    def value(self, raw: dict[str, list[int]], name: str) -> float | None:
        """Canonical value (kW, kWh, V, A, %) of a named register, None where the profile lacks it."""
        reg = self.registers.get(name)
        if reg is None or name not in raw:
            return None
        try:
            return decode_canonical(raw[name], reg)
        except RegisterValueError as exc:
            raise DeviceError(f"unit {self.unit} {name}: {exc}") from None

    def text_or_number(self, raw: dict[str, list[int]], name: str) -> float | str | None:
        reg = self.registers.get(name)
        if reg is None or name not in raw:
            return None
        try:
            return decode(raw[name], reg)
        except RegisterValueError as exc:
            raise DeviceError(f"unit {self.unit} {name}: {exc}") from None
