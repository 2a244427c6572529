"""youxu.dispatch/1 parsing, validation, signatures and time checks (pure, no broker)."""

from __future__ import annotations

import hashlib
import hmac
import json
import math

import pytest

from tests.dispatch_builders import command
from youxu.controller.grid.dispatch_schema import (
    BAD_SCHEMA,
    BAD_SIGNATURE,
    EXPIRED,
    STALE,
    TARGET_MISMATCH,
    UNSUPPORTED,
    DispatchCommand,
    Rejection,
    canonical_bytes,
    check_default,
    check_times,
    parse_rfc3339,
    sign,
    signed,
    validate_command,
)

NOW = parse_rfc3339("2026-07-01T18:55:00+08:00")
KEY = b"site-secret-key"

CONTRACT_EXAMPLE = {
    "schema": "youxu.dispatch/1",
    "command_id": "8b0c2f0e-6a51-4c1e-9a39-3a7d1e2b9c11",
    "issuer": "bj-dms",
    "seq": 1024,
    "issued_at": "2026-07-01T18:55:00+08:00",
    "type": "limit",
    "scope": "site",
    "priority": 1,
    "valid_from": "2026-07-01T19:00:00+08:00",
    "valid_until": "2026-07-01T21:00:00+08:00",
    "periods": [{"offset_s": 0, "import_max_kw": 420.0, "export_max_kw": 0.0},
                {"offset_s": 3600, "import_max_kw": 450.0}],
    "response_required": True,
}


def parse(obj: object, **kw: object) -> DispatchCommand | Rejection:
    payload = obj if isinstance(obj, bytes | str) else json.dumps(obj)
    return validate_command(payload, site_id=kw.pop("site_id", "site-a"), **kw)  # type: ignore[arg-type]


def test_contract_example_parses_with_epoch_times() -> None:
    cmd = parse(CONTRACT_EXAMPLE)
    assert isinstance(cmd, DispatchCommand)
    assert cmd.start_s == parse_rfc3339("2026-07-01T11:00:00Z")
    assert cmd.end_s - cmd.start_s == 7200
    assert list(cmd.period_starts_s() - cmd.start_s) == [0, 3600]
    assert cmd.period_values("export_max_kw")[0] == 0.0 and math.isnan(cmd.period_values("export_max_kw")[1])


def test_rfc3339_needs_an_offset_and_accepts_z_and_fractions() -> None:
    assert parse_rfc3339("2026-07-01T10:55:00Z") == NOW
    assert parse_rfc3339("2026-07-01T18:55:00.250+08:00") == NOW + 0.25
    for bad in ("2026-07-01T18:55:00", "2026-07-01", 1782903300, "2026-13-01T00:00:00Z", None):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


def _mutated(**changes: object) -> dict:
    out = json.loads(json.dumps(CONTRACT_EXAMPLE))
    for k, v in changes.items():
        if v is ...:
            del out[k]
        else:
            out[k] = v
    return out


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"{not json", "(root)"),
        (b"\xff\xfe", "(root)"),
        (b"[1, 2]", "(root)"),
        (b'{"seq": NaN}', "(root)"),
        (b'{"seq": 1, "seq": 2}', "seq"),
        (_mutated(command_id=...), "command_id"),
        (_mutated(seq="1024"), "seq"),
        (_mutated(seq=True), "seq"),
        (_mutated(seq=1024.5), "seq"),
        (_mutated(seq=-1), "seq"),
        (_mutated(issued_at="2026-07-01T18:55:00"), "issued_at"),
        (_mutated(issued_at=1782903300), "issued_at"),
        (_mutated(priority="high"), "priority"),
        (_mutated(response_required="yes"), "response_required"),
        (_mutated(periods=[{"offset_s": 0, "import_max_kw": "420"}]), "periods[0].import_max_kw"),
        (_mutated(periods=[{"offset_s": 0, "import_max_kw": -5}]), "periods[0].import_max_kw"),
        (json.dumps(_mutated(periods=[{"offset_s": 0, "import_max_kw": 12345.5}])).replace("12345.5", "1e400"),
         "periods[0].import_max_kw"),
        (_mutated(periods=[{"import_max_kw": 400}]), "periods[0].offset_s"),
        (_mutated(periods=[{"offset_s": 0}]), "periods[0]"),
        (_mutated(periods=[]), "periods"),
        (_mutated(periods="all day"), "periods"),
        (_mutated(periods=[{"offset_s": 600, "import_max_kw": 1}, {"offset_s": 0, "import_max_kw": 2}]),
         "periods[1].offset_s"),
        (_mutated(periods=[{"offset_s": 0, "import_max_kw": 400, "setpoint_kw": 3}]), "periods[0].setpoint_kw"),
        (_mutated(type="setpoint"), "periods[0].setpoint_kw"),
        (_mutated(type="cancel"), "cancels"),
        (_mutated(valid_until="2026-07-01T18:00:00+08:00"), "valid_until"),
        (_mutated(sig="not-hex"), "sig"),
        (_mutated(schema="something/1"), "schema"),
    ],
)
def test_bad_schema_names_the_field(payload: object, field: str) -> None:
    r = parse(payload)
    assert isinstance(r, Rejection), r
    assert (r.reason, r.field) == (BAD_SCHEMA, field), r


def test_rejection_keeps_the_command_id_when_it_can() -> None:
    r = parse(_mutated(seq="x"))
    assert isinstance(r, Rejection) and r.command_id == CONTRACT_EXAMPLE["command_id"]
    r = parse(_mutated(command_id=17))
    assert isinstance(r, Rejection) and r.command_id is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"schema": "youxu.dispatch/2"}, "schema"), ({"type": "curtail"}, "type"), ({"scope": "phase"}, "scope")],
)
def test_unsupported(changes: dict, field: str) -> None:
    r = parse(_mutated(**changes))
    assert isinstance(r, Rejection) and (r.reason, r.field) == (UNSUPPORTED, field)


def test_unknown_fields_only_rejected_in_strict_mode() -> None:
    top = _mutated(colour="red")
    nested = _mutated(periods=[{"offset_s": 0, "import_max_kw": 400, "ramp_kw_per_s": 2}])
    assert isinstance(parse(top), DispatchCommand)
    assert isinstance(parse(nested), DispatchCommand)
    r = parse(top, strict=True)
    assert isinstance(r, Rejection) and (r.reason, r.field) == (BAD_SCHEMA, "colour")
    r = parse(nested, strict=True)
    assert isinstance(r, Rejection) and (r.reason, r.field) == (BAD_SCHEMA, "periods[0].ramp_kw_per_s")


def test_canonical_json_is_sorted_compact_without_sig() -> None:
    obj = {"b": 1, "a": [1.5, {"z": None, "y": "中"}], "sig": "00"}
    assert canonical_bytes(obj) == '{"a":[1.5,{"y":"中","z":null}],"b":1}'.encode()
    expected = hmac.new(KEY, canonical_bytes(obj), hashlib.sha256).hexdigest()
    assert sign(obj, KEY) == expected


def test_signature_checked_when_the_site_has_a_key() -> None:
    good = signed(CONTRACT_EXAMPLE, KEY)
    assert isinstance(parse(good, key=KEY), DispatchCommand)
    assert isinstance(parse(json.dumps(good, indent=2), key=KEY), DispatchCommand)  # whitespace is not signed
    tampered = dict(good, periods=[{"offset_s": 0, "import_max_kw": 9999.0}])
    for bad, detail in ((tampered, "match"), (CONTRACT_EXAMPLE, "requires"), (signed(CONTRACT_EXAMPLE, b"k2"), "")):
        r = parse(bad, key=KEY)
        assert isinstance(r, Rejection) and (r.reason, r.field) == (BAD_SIGNATURE, "sig")
        assert detail in r.detail
    assert isinstance(parse(signed(CONTRACT_EXAMPLE, b"other"), key=None), DispatchCommand)  # no key: not checked


def test_target_mismatch_from_topic_or_target_field() -> None:
    r = parse(CONTRACT_EXAMPLE, topic_site="site-b")
    assert isinstance(r, Rejection) and (r.reason, r.field) == (TARGET_MISMATCH, "topic")
    r = parse(_mutated(target="site-b"))
    assert isinstance(r, Rejection) and (r.reason, r.field) == (TARGET_MISMATCH, "target")
    assert isinstance(parse(_mutated(target="site-a"), topic_site="site-a"), DispatchCommand)


def test_stale_and_expired() -> None:
    cmd = parse(CONTRACT_EXAMPLE)
    assert isinstance(cmd, DispatchCommand)
    assert check_times(cmd, NOW + 299, 300) is None
    for now in (NOW + 301, NOW - 301):
        r = check_times(cmd, now, 300)
        assert r is not None and (r.reason, r.field) == (STALE, "issued_at")
    r = check_times(cmd, cmd.end_s, 10 * 86400)
    assert r is not None and r.reason == EXPIRED
    default = parse(_mutated(valid_until=...))
    assert isinstance(default, DispatchCommand)
    assert check_times(default, NOW + 30 * 86400, 300, retained_default=True) is None
    assert check_default(default) is None
    assert check_default(cmd) is not None  # has valid_until


def test_builder_commands_are_valid() -> None:
    for kind in ("limit", "setpoint"):
        c = command(NOW, kind=kind)
        assert isinstance(parse(c), DispatchCommand)
    assert isinstance(parse(command(NOW, kind="cancel", cancels="x")), DispatchCommand)
