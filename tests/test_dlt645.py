"""DL/T 645-2007 frames, checked against bytes worked out by hand from the standard's rules
(address lowest byte first, data plus 0x33, checksum the byte sum modulo 256), not against the
encoder itself."""

from __future__ import annotations

import pytest

from youxu.drivers import dlt645
from youxu.drivers.dlt645 import FrameError, ValueFormat

ADDRESS = "000012345678"
# read phase A voltage (DI 02 01 01 00) from meter 000012345678:
#   FE FE FE FE | 68 | 78 56 34 12 00 00 | 68 | 11 | 04 | 00+33 01+33 01+33 02+33 | CS | 16
#   CS = 68+78+56+34+12+00+00+68+11+04+33+34+34+35 = 0x2C9 -> C9
READ_VOLTAGE_A = bytes.fromhex("fefefefe 68 785634120000 68 11 04 33343435 c9 16")
# the meter's answer, 220.1 V (BCD 22 01, lowest byte first: 01 22, plus 33: 34 55)
#   CS = 68+78+56+34+12+00+00+68+91+06+33+34+34+35+34+55 = 0x3D4 -> D4
ANSWER_VOLTAGE_A = bytes.fromhex("68 785634120000 68 91 06 33343435 3455 d4 16")
# an error answer: control D1, error byte 02 (no such data) plus 33: 35
ERROR_ANSWER = bytes.fromhex("68 785634120000 68 d1 01 35") + bytes(
    [(0x68 + 0x78 + 0x56 + 0x34 + 0x12 + 0x68 + 0xD1 + 0x01 + 0x35) & 0xFF, 0x16])


def test_read_request_bytes() -> None:
    assert dlt645.read_request(ADDRESS, "02010100") == READ_VOLTAGE_A


def test_answer_decodes_to_address_control_and_value() -> None:
    frame = dlt645.decode(ANSWER_VOLTAGE_A)
    assert frame.address == ADDRESS
    assert frame.control == 0x91 and frame.is_answer and not frame.is_error
    assert frame.data[:4] == bytes([0x00, 0x01, 0x01, 0x02])
    assert ValueFormat.parse("XXX.X").decode(frame.data[4:]) == pytest.approx(220.1)


def test_preamble_and_noise_before_an_answer_are_skipped() -> None:
    frame, used = dlt645.find_frame(b"\x00\x13" + dlt645.PREAMBLE + ANSWER_VOLTAGE_A + b"\xfe")
    assert frame is not None and frame.address == ADDRESS
    assert used == 2 + 4 + len(ANSWER_VOLTAGE_A)


def test_a_partial_frame_waits_for_more() -> None:
    frame, used = dlt645.find_frame(dlt645.PREAMBLE + ANSWER_VOLTAGE_A[:-3])
    assert frame is None and used == 4  # the preamble can go, the rest may still become a frame


def test_bad_checksum_is_an_error() -> None:
    bad = bytearray(ANSWER_VOLTAGE_A)
    bad[-2] ^= 0x01
    with pytest.raises(FrameError, match="checksum"):
        dlt645.decode(bytes(bad))


def test_error_answer() -> None:
    frame = dlt645.decode(ERROR_ANSWER)
    assert frame.is_error and frame.error_code == 0x02
    assert "no such data" in frame.error_text()


@pytest.mark.parametrize(("fmt", "signed", "raw", "value"), [
    ("XX.XXXX", True, "452301", 1.2345),  # total active power 01.2345 kW
    ("XX.XXXX", True, "452381", -1.2345),  # the top bit of the highest byte: exporting
    ("XXX.XXX", True, "563412", 123.456),  # phase current
    ("XXX.XXX", True, "563492", -123.456),
    ("XXXXXX.XX", False, "78563412", 123456.78),  # energy
    ("XXX.X", False, "0122", 220.1),
])
def test_bcd_values(fmt: str, signed: bool, raw: str, value: float) -> None:
    vf = ValueFormat.parse(fmt, signed)
    assert vf.decode(bytes.fromhex(raw)) == pytest.approx(value)
    assert vf.encode(value) == bytes.fromhex(raw)


def test_not_bcd_is_an_error() -> None:
    with pytest.raises(FrameError, match="not BCD"):
        ValueFormat.parse("XXX.X").decode(bytes.fromhex("0a22"))


@pytest.mark.parametrize("address", ["12345678", "00001234567A", "0000123456789"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError, match="12 decimal digits"):
        dlt645.address_bytes(address)


# ---- against another implementation: the `dlt645` package's stateless codec ----------------------
reference = pytest.importorskip("dlt645.protocol.protocol", reason="the dlt645 package is in the dev extra")
hyp = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")


@hyp.settings(max_examples=200, deadline=None)
@hyp.given(address=st.from_regex(r"\A[0-9]{12}\Z"), control=st.sampled_from([0x11, 0x91, 0xB1, 0xD1]),
           data=st.binary(max_size=40))
def test_frames_agree_with_the_dlt645_package(address: str, control: int, data: bytes) -> None:
    codec = reference.DLT645Protocol
    theirs = bytes(codec.build_frame(dlt645.address_bytes(address), control, data, preamble_count=4))
    assert theirs == dlt645.PREAMBLE + dlt645.encode(address, control, data)
    frame = dlt645.decode(theirs)
    assert (frame.address, frame.control, frame.data) == (address, control, data)
    back = codec.deserialize(dlt645.PREAMBLE + dlt645.encode(address, control, data))
    assert bytes(back.addr) == dlt645.address_bytes(address) and bytes(back.data) == data
