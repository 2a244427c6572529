"""Property test: random and mutated payloads never make the parsers raise.

Hypothesis draws structured mutations of a valid command, corrupted JSON text, random JSON
values and random bytes, plus a seed from which each example derives 100 more mutants (cheap
`random` mutations: fields replaced by values of the wrong type, deleted, duplicated periods,
byte flips and truncations). Over 100 examples that is more than 10,000 payloads through
`validate_command` (lenient and strict, with and without a key) and `parse_booking`; each must
come back as a valid command or a rejection with a contract reason and a field.
"""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_dispatch_schema import CONTRACT_EXAMPLE, NOW
from youxu.controller.grid.bookings import PileInfo, parse_booking
from youxu.controller.grid.dispatch_schema import (
    BAD_SCHEMA,
    BAD_SIGNATURE,
    TARGET_MISMATCH,
    UNSUPPORTED,
    DispatchCommand,
    Rejection,
    signed,
    validate_command,
)
from youxu.controller.gridlink import Booking

KEY = b"fuzz-key"
REASONS = {BAD_SCHEMA, BAD_SIGNATURE, TARGET_MISMATCH, UNSUPPORTED}
PILES = {"P001": PileInfo("P001", v2g=True)}
BOOKING = {"schema": "youxu.session/1", "departure": "2026-07-02T07:30:00+08:00", "energy_kwh": 18.5,
           "v2g": False, "min_soc": 0.3, "priority": "normal"}
COUNT = {"payloads": 0, "accepted": 0}

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from(["limit", "setpoint", "cancel", "site", "ev", "youxu.dispatch/1",
                                                    "2026-07-01T19:00:00+08:00", "", "P001"]))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
keys = st.sampled_from(sorted(set(CONTRACT_EXAMPLE) | {"cancels", "target", "sig", "offset_s", "import_max_kw"}))
period_keys = st.sampled_from(["offset_s", "import_max_kw", "export_max_kw", "setpoint_kw", "extra"])


@st.composite
def mutated_command(draw: st.DrawFn) -> dict[str, Any]:
    cmd = json.loads(json.dumps(CONTRACT_EXAMPLE))
    for _ in range(draw(st.integers(0, 4))):
        k = draw(keys)
        if draw(st.booleans()):
            cmd.pop(k, None)
        else:
            cmd[k] = draw(json_values)
    if isinstance(cmd.get("periods"), list) and cmd["periods"] and draw(st.booleans()):
        p = cmd["periods"][draw(st.integers(0, len(cmd["periods"]) - 1))]
        if isinstance(p, dict):
            p[draw(period_keys)] = draw(json_values)
    return cmd


@st.composite
def corrupted_text(draw: st.DrawFn) -> bytes:
    data = bytearray(json.dumps(CONTRACT_EXAMPLE).encode())
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[i]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[i:]
        if not data:
            break
    return bytes(data)


POOL: list[Any] = [None, True, False, 0, -1, 2**63, 1.5, -1e9, 1e308, "", "x" * 200, "limit", "setpoint",
                   "cancel", "ev", "site", "2026-07-01T19:00:00+08:00", "2026-07-01T19:00:00", [], {}, [1, 2],
                   {"offset_s": 0}, [{"offset_s": 0, "setpoint_kw": 5}], "中文", "\u0000", 1024, 0.0]


def random_mutant(rng: random.Random) -> bytes | str:
    """A cheap mutant of the contract example: structural or byte-level."""
    cmd = copy.deepcopy(CONTRACT_EXAMPLE)
    for _ in range(rng.randint(1, 4)):
        k = rng.choice([*cmd.keys(), "cancels", "target", "sig", "extra"])
        r = rng.random()
        if r < 0.3:
            cmd.pop(k, None)
        elif r < 0.8:
            cmd[k] = copy.deepcopy(rng.choice(POOL))  # a copy: a mutant must never change the pool
        elif isinstance(cmd.get("periods"), list) and cmd["periods"]:
            p = rng.choice(cmd["periods"])
            if isinstance(p, dict):
                p[rng.choice(["offset_s", "import_max_kw", "export_max_kw", "setpoint_kw", "x"])] = copy.deepcopy(
                    rng.choice(POOL))
            cmd["periods"] = cmd["periods"] * rng.randint(1, 3)
    text = json.dumps(cmd)
    if rng.random() < 0.3:
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 3)):
            if data:
                i = rng.randrange(len(data))
                data[i] = rng.randrange(256) if rng.random() < 0.7 else data[i]
                if rng.random() < 0.2:
                    del data[i:]
        return bytes(data)
    return text


def check(payload: bytes | str, **kw: Any) -> None:
    COUNT["payloads"] += 1
    r = validate_command(payload, site_id="site-a", **kw)
    if isinstance(r, Rejection):
        assert r.reason in REASONS, r
        assert isinstance(r.field, str) and r.field, r
        return
    assert isinstance(r, DispatchCommand)
    COUNT["accepted"] += 1
    assert math.isfinite(r.issued_at) and math.isfinite(r.start_s) and r.end_s > r.start_s
    if r.type == "cancel":
        assert r.cancels
    else:
        offsets = [p.offset_s for p in r.periods]
        assert offsets and offsets == sorted(set(offsets))


MUTANTS_PER_EXAMPLE = 100


@settings(max_examples=100, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(raw=st.binary(max_size=300), value=json_values, cmd=mutated_command(), text=corrupted_text(),
       strict=st.booleans(), sign_it=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_no_payload_makes_the_parser_raise(raw: bytes, value: Any, cmd: dict, text: bytes, strict: bool,
                                            sign_it: bool, seed: int) -> None:
    key = KEY if sign_it else None
    rng = random.Random(seed)
    for i in range(MUTANTS_PER_EXAMPLE):
        check(random_mutant(rng), strict=(i % 2 == 0), key=KEY if i % 3 == 0 else None)
    check(raw, strict=strict, key=key)
    try:
        check(json.dumps(value), strict=strict)
    except ValueError:  # floats json cannot write (nan/inf): send them the way a broken encoder would
        check(json.dumps(value, allow_nan=True), strict=strict)
    try:
        body = json.dumps(signed(cmd, KEY) if sign_it else cmd, allow_nan=False)
    except ValueError:
        body = json.dumps(cmd)
    check(body, strict=strict, key=key, topic_site="site-a")
    check(text, strict=strict)
    booking = dict(BOOKING)
    if isinstance(value, dict):
        booking.update(value)
    b = parse_booking(json.dumps(booking, allow_nan=True), "P001", PILES, NOW)
    assert isinstance(b, Booking | Rejection)


def test_fuzz_volume() -> None:
    """Runs after the property test in this module: at least 10,000 payloads went through."""
    if COUNT["payloads"] == 0:  # run on its own: exercise the property first
        test_no_payload_makes_the_parser_raise()
    assert COUNT["payloads"] >= 10_000
    assert 0 < COUNT["accepted"] < COUNT["payloads"] / 2  # the mutants reach past the first checks
