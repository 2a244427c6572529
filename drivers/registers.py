"""Register codec and read planning: raw 16-bit words <-> values, and block reads.

Conversions use pymodbus' own `convert_from_registers` / `convert_to_registers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pymodbus.client.mixin import ModbusClientMixin

from youxu.drivers.profiles import UNIT_TO_CANONICAL, Register

_DT = ModbusClientMixin.DATATYPE
_TYPES = {
    "int16": _DT.INT16,
    "uint16": _DT.UINT16,
    "int32": _DT.INT32,
    "uint32": _DT.UINT32,
    "int64": _DT.INT64,
    "uint64": _DT.UINT64,
    "float32": _DT.FLOAT32,
    "float64": _DT.FLOAT64,
    "string": _DT.STRING,
}
_INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


class RegisterValueError(ValueError):
    """A value does not fit its register, or a register holds garbage."""


def decode_raw(words: list[int], reg: Register) -> float | str:
    """The register's raw value (before scale): a number, or text for strings."""
    value = ModbusClientMixin.convert_from_registers(
        list(words), data_type=_TYPES[reg.type], word_order=reg.word_order
    )
    if reg.type == "string":
        return str(value).replace("\x00", "").strip()
    if reg.shift or reg.mask is not None:
        value = int(value) >> reg.shift  # type: ignore[call-overload]
        if reg.mask is not None:
            value &= reg.mask
    return value  # type: ignore[return-value]


def decode(words: list[int], reg: Register) -> float | str:
    """Value in the profile's unit (raw × scale); strings stay text."""
    raw = decode_raw(words, reg)
    if isinstance(raw, str):
        return raw
    value = float(raw) * reg.scale
    if not math.isfinite(value):
        raise RegisterValueError(f"register {reg.address} holds a non-finite value")
    return value


def decode_canonical(words: list[int], reg: Register) -> float:
    """Value in youxu's canonical unit (kW, kWh, V, A, s)."""
    raw = decode_raw(words, reg)
    if isinstance(raw, str):
        raise RegisterValueError(f"register {reg.address} is text, not a number")
    value = float(raw) * reg.canonical_factor
    if not math.isfinite(value):
        raise RegisterValueError(f"register {reg.address} holds a non-finite value")
    return value


def encode(value: float | str, reg: Register) -> list[int]:
    """Words for a value given in the profile's unit (it is divided by scale)."""
    if reg.type == "string":
        words = ModbusClientMixin.convert_to_registers(str(value), data_type=_DT.STRING)
        return (words + [0] * reg.count)[: reg.count]
    raw = float(value) / reg.scale
    if reg.type.startswith(("int", "uint")):
        raw_int = round(raw)
        if reg.mask is not None and not 0 <= raw_int <= reg.mask:
            raise RegisterValueError(f"{value} does not fit the mask of register {reg.address}")
        raw_int <<= reg.shift
        lo, hi = _INT_RANGES[reg.type]
        if not lo <= raw_int <= hi:
            raise RegisterValueError(f"{value} does not fit {reg.type} register {reg.address}")
        return ModbusClientMixin.convert_to_registers(
            raw_int, data_type=_TYPES[reg.type], word_order=reg.word_order
        )
    return ModbusClientMixin.convert_to_registers(raw, data_type=_TYPES[reg.type], word_order=reg.word_order)


def toward_zero_canonical(value: float, reg: Register, at_least: float = 0.0) -> float:
    """The value an integer register can hold closest to `value` without exceeding its magnitude (a limit
    written to a device is never rounded up), but no less in magnitude than `at_least` when `value` is
    not (a pile's minimum current that is not a whole register step). Float registers take it as it is."""
    if not reg.type.startswith(("int", "uint")) or value == 0:
        return value
    step = reg.canonical_factor
    sign = -1.0 if value < 0 else 1.0
    mag = math.floor(abs(value) / step + 1e-9) * step
    if at_least > 0 and abs(value) >= at_least - 1e-9 and mag < at_least - 1e-9:
        mag = math.ceil(at_least / step - 1e-9) * step
    return sign * mag


def encode_canonical(value: float, reg: Register) -> list[int]:
    """Words for a value in the canonical unit (kW, A, ...)."""
    return encode(value / UNIT_TO_CANONICAL[reg.unit][1], reg)


@dataclass(frozen=True)
class Block:
    """One read request: `count` registers from `address` with function code `fc`."""

    fc: int
    address: int
    count: int
    names: tuple[str, ...]


def plan_blocks(regs: dict[str, Register], max_gap: int = 16, max_count: int = 120) -> list[Block]:
    """Group registers into as few contiguous read requests as the gaps allow (one block
    never spans more than `max_count` registers, and registers are never split)."""
    blocks: list[Block] = []
    for fc in sorted({r.fc for r in regs.values()}):
        items = sorted(((r.address, r.address + r.count, n) for n, r in regs.items() if r.fc == fc))
        start, end, names = items[0][0], items[0][1], [items[0][2]]
        for a, b, n in items[1:]:
            if a - end <= max_gap and max(end, b) - start <= max_count:
                end = max(end, b)
                names.append(n)
            else:
                blocks.append(Block(fc, start, end - start, tuple(names)))
                start, end, names = a, b, [n]
        blocks.append(Block(fc, start, end - start, tuple(names)))
    return blocks


def slice_words(block: Block, words: list[int], reg: Register) -> list[int]:
    off = reg.address - block.address
    return words[off : off + reg.count]


_NP_TYPES = {"int16": ">i2", "uint16": ">u2", "int32": ">i4", "uint32": ">u4", "int64": ">i8", "uint64": ">u8",
             "float32": ">f4", "float64": ">f8"}


def encode_many_canonical(values: np.ndarray, reg: Register) -> np.ndarray:
    """Words for many canonical values at once, (n, count) uint16: what `encode_canonical` gives for
    each value (the same byte and word order), vectorised for simulated devices serving many piles.
    Integers are rounded and held to their type's range."""
    raw = np.asarray(values, dtype=float) / UNIT_TO_CANONICAL[reg.unit][1] / reg.scale
    if reg.type.startswith(("int", "uint")):
        lo, hi = _INT_RANGES[reg.type]
        raw = np.clip(np.rint(raw), lo, hi)
    data = raw.astype(_NP_TYPES[reg.type])
    words = data.view(">u2").reshape(raw.size, reg.count).astype(np.uint16)
    return words[:, ::-1] if reg.word_order == "little" else words
