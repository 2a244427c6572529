"""DL/T 645-2007 frames: the multi-function meter protocol of Chinese distribution rooms.

A frame is `68 A0..A5 68 C L DATA CS 16`: the meter address as 12 BCD digits, lowest byte
first; the control code (0x11 read, 0x91 normal answer, 0xB1 answer with more to follow,
0xD1 error answer); the data length; the data, every byte sent plus 0x33; and the checksum, the
sum of all bytes from the first 0x68 to the end of the data, modulo 256. Masters send the
wake-up preamble `FE FE FE FE` before a frame, and meters may send it before their answers.

A read names a data identifier `DI3 DI2 DI1 DI0` (written here as in the standard, e.g.
`02030000` total active power), sent lowest byte first. Values come back as packed BCD, lowest
byte first; for currents and powers the top bit of the highest byte is the sign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREAMBLE = b"\xfe\xfe\xfe\xfe"
START, END = 0x68, 0x16
READ, ANSWER, ANSWER_MORE, ERROR = 0x11, 0x91, 0xB1, 0xD1
OFFSET = 0x33
MAX_DATA = 200  # the standard's longest data field

ERROR_BITS = {  # the error byte of an error answer
    0x01: "other error",
    0x02: "no such data (identifier not supported)",
    0x04: "password wrong or not authorised",
    0x08: "communication rate cannot be changed",
    0x10: "annual time zones exceeded",
    0x20: "daily time periods exceeded",
    0x40: "tariffs exceeded",
}
NO_DATA = 0x02

_ADDRESS = re.compile(r"^[0-9]{12}$")
_DI = re.compile(r"^[0-9A-Fa-f]{8}$")
_FORMAT = re.compile(r"^(X+)(?:\.(X+))?$")


class FrameError(ValueError):
    """Bytes that are not a valid DL/T 645 frame (checksum, length, delimiters)."""


def check_address(address: str) -> str:
    if not _ADDRESS.match(address):
        raise ValueError(f"a DL/T 645 meter address is 12 decimal digits (as printed on the meter), not {address!r}")
    return address


def check_di(di: str) -> str:
    if not _DI.match(di):
        raise ValueError(f"a DL/T 645-2007 data identifier is 8 hex digits (DI3..DI0, e.g. 02030000), not {di!r}")
    return di.upper()


def address_bytes(address: str) -> bytes:
    """The address as sent: 6 BCD bytes, lowest first ("000012345678" -> 78 56 34 12 00 00)."""
    check_address(address)
    return bytes(int(address[i:i + 2], 16) for i in range(10, -1, -2))


def di_bytes(di: str) -> bytes:
    """A data identifier as sent, before the 0x33 offset: DI0 first ("02030000" -> 00 00 03 02)."""
    raw = bytes.fromhex(check_di(di))
    return raw[::-1]


def checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode(address: str, control: int, data: bytes = b"") -> bytes:
    """One frame, without preamble."""
    if len(data) > MAX_DATA:
        raise ValueError(f"DL/T 645 data field of {len(data)} bytes (at most {MAX_DATA})")
    body = bytes([START]) + address_bytes(address) + bytes([START, control, len(data)])
    body += bytes((b + OFFSET) & 0xFF for b in data)
    return body + bytes([checksum(body), END])


def read_request(address: str, di: str) -> bytes:
    """The master's read of one data identifier, with the wake-up preamble."""
    return PREAMBLE + encode(address, READ, di_bytes(di))


@dataclass(frozen=True)
class Frame:
    address: str
    control: int
    data: bytes  # with the 0x33 offset removed

    @property
    def is_error(self) -> bool:
        return bool(self.control & 0x40)

    @property
    def is_answer(self) -> bool:
        return bool(self.control & 0x80)

    @property
    def error_code(self) -> int:
        return self.data[0] if self.data else 0

    def error_text(self) -> str:
        code = self.error_code
        parts = [text for bit, text in ERROR_BITS.items() if code & bit]
        return ", ".join(parts) or f"error code 0x{code:02X}"


def _address_text(raw: bytes) -> str:
    return "".join(f"{b:02X}" for b in reversed(raw))


def find_frame(buf: bytes | bytearray) -> tuple[Frame | None, int]:
    """The first complete frame in `buf` and how many bytes it (and anything before it) took.

    Bytes before a frame (preamble, line noise) are skipped. Returns (None, n) when no complete
    frame is there yet: the first n bytes can be dropped, the rest may still become one.
    Raises FrameError for a frame whose delimiters are right but whose checksum is wrong."""
    i = 0
    n = len(buf)
    while i < n:
        if buf[i] != START:
            i += 1
            continue
        if n - i < 10:
            return None, i
        if buf[i + 7] != START:
            i += 1
            continue
        length = buf[i + 9]
        end = i + 10 + length + 2
        if length > MAX_DATA:
            i += 1
            continue
        if n < end:
            return None, i
        if buf[end - 1] != END:
            i += 1
            continue
        body = bytes(buf[i:end - 2])
        if checksum(body) != buf[end - 2]:
            raise FrameError(f"checksum 0x{buf[end - 2]:02X}, expected 0x{checksum(body):02X}")
        data = bytes((b - OFFSET) & 0xFF for b in body[10:])
        return Frame(_address_text(body[1:7]), body[8], data), end
    return None, n


def decode(data: bytes | bytearray) -> Frame:
    """Exactly one frame (preamble allowed before it)."""
    frame, _ = find_frame(data)
    if frame is None:
        raise FrameError(f"no complete DL/T 645 frame in {bytes(data).hex(' ')}")
    return frame


# ---- values ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ValueFormat:
    """A value's BCD layout as the standard writes it: `XXX.X`, `XX.XXXX`, `XXXXXX.XX`."""

    digits: int
    decimals: int
    signed: bool = False

    @classmethod
    def parse(cls, fmt: str, signed: bool = False) -> ValueFormat:
        m = _FORMAT.match(fmt)
        if not m:
            raise ValueError(f"a value format is written like XXX.X or XX.XXXX, not {fmt!r}")
        digits = len(m.group(1)) + len(m.group(2) or "")
        if digits % 2:
            raise ValueError(f"{fmt!r}: a BCD value has an even number of digits")
        return cls(digits, len(m.group(2) or ""), signed)

    @property
    def size(self) -> int:
        return self.digits // 2

    def decode(self, raw: bytes) -> float:
        """Packed BCD, lowest byte first (the 0x33 offset already removed)."""
        if len(raw) != self.size:
            raise FrameError(f"value of {len(raw)} bytes, expected {self.size}")
        b = bytearray(raw)
        negative = False
        if self.signed and b[-1] & 0x80:
            negative = True
            b[-1] &= 0x7F
        digits = "".join(f"{x:02X}" for x in reversed(b))
        if not digits.isdigit():
            raise FrameError(f"not BCD: {bytes(raw).hex(' ')}")
        value = int(digits) / 10 ** self.decimals
        return -value if negative else value

    def encode(self, value: float) -> bytes:
        """The bytes a meter sends for `value` (before the offset); for simulated meters and tests."""
        negative = value < 0
        if negative and not self.signed:
            raise ValueError(f"{value} is negative, but the format is unsigned")
        scaled = round(abs(value) * 10 ** self.decimals)
        limit = (8 if self.signed else 10) * 10 ** (self.digits - 1)  # a signed value's top bit is its sign
        if scaled >= limit:
            raise ValueError(f"{value} does not fit {self.digits} BCD digits")
        text = f"{scaled:0{self.digits}d}"
        b = bytearray(int(text[i:i + 2], 16) for i in range(self.digits - 2, -1, -2))
        if negative:
            b[-1] |= 0x80
        return bytes(b)
