"""A device behind a profile: block reads decoded into named canonical values."""

from __future__ import annotations

from youxu.drivers.profiles import Profile, Register
from youxu.drivers.registers import (
    Block,
    RegisterValueError,
    decode,
    decode_canonical,
    encode,
    encode_canonical,
    plan_blocks,
    slice_words,
)
from youxu.drivers.transport import DeviceError, ModbusBus


class ProfiledDevice:
    """Reads every register of a profile in as few requests as possible.

    `unit` is the unit id from the site config; for profiles with several charge points
    behind one unit (`connector`), it names the charge point and `self.unit` becomes the
    profile's Modbus unit id."""

    def __init__(self, profile: Profile, bus: ModbusBus, unit: int, timeout_s: float = 0.5) -> None:
        self.configured_unit = unit
        self.profile, self.unit = profile.bind(unit)
        self.bus = bus
        self.timeout_s = timeout_s
        self.registers: dict[str, Register] = self.profile.read_registers()
        self.blocks: list[Block] = plan_blocks(self.registers, self.profile.max_read_gap, self.profile.max_read_count)

    @property
    def label(self) -> str:
        return f"{self.profile.name} unit {self.configured_unit}"

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

    def optional_value(self, raw: dict[str, list[int]], name: str) -> float | None:
        """Like `value`, but a register holding NaN or infinity (a device's "not available")
        gives None: for informational values a poll must not fail on."""
        reg = self.registers.get(name)
        if reg is None or name not in raw:
            return None
        try:
            return decode_canonical(raw[name], reg)
        except RegisterValueError:
            return None

    def text_or_number(self, raw: dict[str, list[int]], name: str) -> float | str | None:
        reg = self.registers.get(name)
        if reg is None or name not in raw:
            return None
        try:
            return decode(raw[name], reg)
        except RegisterValueError as exc:
            raise DeviceError(f"unit {self.unit} {name}: {exc}") from None

    async def read_register(self, reg: Register, timeout_s: float | None = None) -> float:
        """One register, read on its own, in its canonical unit."""
        words = await self.bus.read(reg.fc, reg.address, reg.count, self.unit, timeout_s or self.timeout_s)
        try:
            return decode_canonical(words, reg)
        except RegisterValueError as exc:
            raise DeviceError(f"unit {self.unit} @{reg.address}: {exc}") from None

    async def write_words(self, reg: Register, words: list[int], timeout_s: float | None = None) -> None:
        await self.bus.write(reg.address, words, self.unit, self.profile.write_fc_for(reg),
                             timeout_s or self.timeout_s)

    async def write_canonical(self, reg: Register, value: float, timeout_s: float | None = None) -> list[int]:
        """Write a value given in the register's canonical unit (A, kW, s ...); return the words sent."""
        try:
            words = encode_canonical(value, reg)
        except RegisterValueError as exc:
            raise DeviceError(f"unit {self.unit} @{reg.address}: {exc}") from None
        await self.write_words(reg, words, timeout_s)
        return words

    async def write_raw(self, reg: Register, value: float, timeout_s: float | None = None) -> list[int]:
        """Write a value given in the profile's own unit (before canonical conversion)."""
        try:
            words = encode(value, reg)
        except RegisterValueError as exc:
            raise DeviceError(f"unit {self.unit} @{reg.address}: {exc}") from None
        await self.write_words(reg, words, timeout_s)
        return words
