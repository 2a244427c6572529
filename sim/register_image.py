"""A device's register image built from its profile, served by pymodbus as a SimDevice.

The image holds the words of every register the profile names (holding and input
registers kept apart, as on real devices). A device model sets named values in canonical
units before each read (`on_read`) and learns of writes (`on_write`), so a simulated device
serves exactly the map a real one does, and the drivers read it through the same profile.
"""

from __future__ import annotations

from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from youxu.drivers.profiles import Profile, Register
from youxu.drivers.registers import decode_canonical, encode, encode_canonical

ReadHook = Callable[[], None]
WriteHook = Callable[[str, float], None]


class RegisterImage:
    """Words of one device, addressed by function code and wire address."""

    def __init__(self, profile: Profile, extra: dict[str, Register] | None = None, pad: int = 2,
                 connector: int | None = None) -> None:
        if profile.connector is not None:  # serve one charge point at absolute addresses
            profile = profile.for_connector(connector if connector is not None else profile.connector.first)
        self.profile = profile
        regs = profile.read_registers()
        sp = profile.setpoint
        if sp is not None and sp.readback is not None:  # write-only setpoint with a read-back elsewhere
            regs["setpoint_readback"] = sp.readback
        regs.update(profile.writable_registers())
        fs = profile.failsafe
        if fs is not None:
            for name, reg in (("failsafe_current", fs.current), ("failsafe_timeout", fs.timeout),
                              ("failsafe_current_readback", fs.current_readback),
                              ("failsafe_timeout_readback", fs.timeout_readback)):
                if reg is not None:
                    regs[name] = reg
            if fs.keepalive is not None and fs.keepalive.reg is not None:
                regs["keepalive"] = fs.keepalive.reg
        if sp is not None and sp.validity is not None:
            regs["setpoint_validity"] = sp.validity
        regs.update(extra or {})
        self.registers = regs
        # a write to a name updates its read-back, as the real devices do
        self.readbacks = {name: f"{name}_readback" for name in ("setpoint", "failsafe_current", "failsafe_timeout")
                          if f"{name}_readback" in regs}
        # holding registers (fc 3) and input registers (fc 4) are separate tables
        self.words: dict[int, list[int]] = {}
        self.start: dict[int, int] = {}
        for fc in (3, 4):
            mine = [r for r in regs.values() if r.fc == fc]
            if not mine:
                self.start[fc], self.words[fc] = 0, [0] * 2
                continue
            lo = min(r.address for r in mine)
            hi = max(r.address + r.count for r in mine) + pad
            self.start[fc], self.words[fc] = lo, [0] * (hi - lo)

    def _slice(self, reg: Register) -> tuple[list[int], int]:
        return self.words[reg.fc], reg.address - self.start[reg.fc]

    def set(self, name: str, value: float) -> None:
        """Set a named register from a canonical value (kW, kWh, A, V, % ...)."""
        reg = self.registers[name]
        words, off = self._slice(reg)
        words[off : off + reg.count] = encode_canonical(value, reg)

    def set_raw(self, name: str, value: float | str) -> None:
        """Set a named register from its raw value in the profile's unit (or text)."""
        reg = self.registers[name]
        words, off = self._slice(reg)
        words[off : off + reg.count] = encode(value, reg)

    def set_words(self, name: str, words: list[int]) -> None:
        """Set a named register's words directly (e.g. a 'not available' marker)."""
        reg = self.registers[name]
        table, off = self._slice(reg)
        table[off : off + reg.count] = (list(words) + [0] * reg.count)[: reg.count]

    def get(self, name: str) -> float:
        reg = self.registers[name]
        words, off = self._slice(reg)
        return decode_canonical(words[off : off + reg.count], reg)

    def names_at(self, fc: int, address: int, count: int) -> list[str]:
        """Named registers that a request [address, address+count) touches."""
        return [
            n for n, r in self.registers.items()
            if r.fc == fc and r.address < address + count and address < r.address + r.count
        ]


def serve_image(
    image: RegisterImage,
    unit: int,
    on_read: ReadHook | None = None,
    on_write: WriteHook | None = None,
    write_log: list[tuple[int, int, list[int]]] | None = None,
) -> SimDevice:
    """A pymodbus SimDevice that serves `image` on unit id `unit`.

    Reads call `on_read()` first (the device model refreshes its values); writes to
    registers not marked writable are refused with ILLEGAL_ADDRESS, as real devices do;
    accepted writes update the image (and the register's read-back, if the profile has one)
    and call `on_write(name, canonical_value)`. `write_log` records (fc, address, words).
    """

    async def action(fc: int, start: int, address: int, count: int, registers: list[int],
                     values: list[int] | list[bool] | None) -> ExcCodes | None:
        table = 4 if fc == 4 else 3
        words, lo = image.words[table], image.start[table]
        if values is None:
            if on_read is not None:
                try:
                    on_read()
                except OSError:  # the device model says it is broken
                    return ExcCodes.DEVICE_FAILURE
            registers[: len(words)] = words
            return None
        vals = [int(v) for v in values]
        touched = image.names_at(3, address, len(vals))
        if not touched or any(not image.registers[n].writable for n in touched):
            return ExcCodes.ILLEGAL_ADDRESS
        words[address - lo : address - lo + len(vals)] = vals
        if write_log is not None:
            write_log.append((fc, address, vals))
        for name in touched:
            if name in image.readbacks:
                image.set(image.readbacks[name], image.get(name))
        if on_write is not None:
            for name in touched:
                on_write(name, image.get(name))
        registers[: len(words)] = words
        return None

    blocks: list[list[SimData]] = [
        [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
        [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
        [SimData(image.start[3], values=list(image.words[3]), datatype=DataType.REGISTERS)],
        [SimData(image.start[4], values=list(image.words[4]), datatype=DataType.REGISTERS)],
    ]
    return SimDevice(id=unit, simdata=tuple(blocks), action=action)  # type: ignore[arg-type]

