"""The `youxu.dispatch/1` command on the wire: parsing, validation and HMAC signatures.

Everything here is pure: bytes in, a `DispatchCommand` or a `Rejection` out. What depends on
state (duplicates, per-issuer sequence numbers) is decided by `youxu.controller.grid.commands` and the
store; what depends on the site's clock (`STALE`, `EXPIRED`) by `check_times`, given the time.

Signatures: hex HMAC-SHA256, keyed with the site's key, over the canonical JSON of the command
object without its `sig` member: keys sorted, separators `,` and `:`, no whitespace, non-ASCII
characters as UTF-8 (not escaped), numbers as Python's `json` writes them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from youxu.config.errors import error_path

DISPATCH_SCHEMA = "youxu.dispatch/1"
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PERIODS = 1000
MAX_KW = 1.0e6
MAX_OFFSET_S = 366 * 86400.0

# Rejection reasons (contract section 4).
BAD_SCHEMA = "BAD_SCHEMA"
BAD_SIGNATURE = "BAD_SIGNATURE"
TARGET_MISMATCH = "TARGET_MISMATCH"
OUT_OF_SEQUENCE = "OUT_OF_SEQUENCE"
STALE = "STALE"
EXPIRED = "EXPIRED"
UNSUPPORTED = "UNSUPPORTED"

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(text: object) -> float:
    """Epoch seconds of an RFC 3339 timestamp with offset; ValueError otherwise."""
    if not isinstance(text, str) or not _RFC3339.match(text):
        raise ValueError("must be an RFC 3339 timestamp with offset, e.g. 2026-07-01T18:55:00+08:00")
    body = text[:-1] + "+00:00" if text[-1] in "Zz" else text
    frac = re.search(r"\.(\d+)", body)
    if frac and len(frac.group(1)) > 6:  # datetime keeps microseconds
        body = body.replace(frac.group(0), "." + frac.group(1)[:6])
    try:
        return datetime.fromisoformat(body.replace("t", "T").replace(" ", "T")).timestamp()
    except ValueError:
        raise ValueError(f"not a valid date or time: {text!r}") from None


def format_rfc3339(t_s: float, tz: tzinfo) -> str:
    """Epoch seconds as RFC 3339 in the given zone (milliseconds when not a whole second)."""
    dt = datetime.fromtimestamp(t_s, tz)
    return dt.isoformat(timespec="seconds" if dt.microsecond == 0 else "milliseconds")


WireTime = Annotated[float, BeforeValidator(parse_rfc3339)]


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, logged or published as it is (NUL, which PostgreSQL's text
    refuses; a lone surrogate, which UTF-8 cannot encode), or None."""
    if "\x00" in text:
        return "must not contain the NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogate)"
    return None


def _storable(text: str) -> str:
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


Name = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_storable)]


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, frozen=True)


class Period(_Wire):
    offset_s: float = Field(ge=0, le=MAX_OFFSET_S)
    import_max_kw: float | None = Field(default=None, ge=0, le=MAX_KW)
    export_max_kw: float | None = Field(default=None, ge=0, le=MAX_KW)
    setpoint_kw: float | None = Field(default=None, ge=-MAX_KW, le=MAX_KW)


class DispatchCommand(_Wire):
    """A validated dispatch command; times in epoch seconds."""

    schema_: Literal["youxu.dispatch/1"] = Field(alias="schema")
    command_id: Name
    issuer: Name
    seq: int = Field(ge=0, le=2**63 - 1)
    issued_at: WireTime
    type: Literal["limit", "setpoint", "cancel"]
    scope: Literal["site", "ev"] = "site"
    priority: int = Field(default=100, ge=0, le=1_000_000)
    valid_from: WireTime | None = None
    valid_until: WireTime | None = None
    periods: list[Period] = Field(default_factory=list, max_length=MAX_PERIODS)
    response_required: bool = True
    cancels: Name | None = None
    target: Name | None = None  # optional: the site it is meant for
    sig: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")

    @property
    def start_s(self) -> float:
        return self.valid_from if self.valid_from is not None else self.issued_at

    @property
    def end_s(self) -> float:
        return self.valid_until if self.valid_until is not None else math.inf

    def period_starts_s(self) -> np.ndarray:
        return self.start_s + np.array([p.offset_s for p in self.periods], dtype=float)

    def period_values(self, name: str) -> np.ndarray:
        """One value per period of `import_max_kw`, `export_max_kw` or `setpoint_kw` (NaN where absent)."""
        vals = [getattr(p, name) for p in self.periods]
        return np.array([np.nan if v is None else v for v in vals], dtype=float)


@dataclass(frozen=True)
class Rejection:
    """Why a command is refused: contract reason, the offending field, a human detail."""

    reason: str
    field: str | None = None
    detail: str = ""
    command_id: str | None = None


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def decode_json_object(payload: bytes | str) -> dict[str, Any] | Rejection:
    """The payload as a JSON object, or a BAD_SCHEMA rejection saying why not."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(BAD_SCHEMA, "(root)", f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError:
        return Rejection(BAD_SCHEMA, "(root)", "payload is not UTF-8")
    except _DuplicateKey as exc:
        return Rejection(BAD_SCHEMA, str(exc), "duplicate key")
    except (ValueError, RecursionError) as exc:
        return Rejection(BAD_SCHEMA, "(root)", f"not valid JSON ({str(exc)[:80]})")
    if not isinstance(obj, dict):
        return Rejection(BAD_SCHEMA, "(root)", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def canonical_bytes(obj: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the object without `sig`, canonical JSON, UTF-8."""
    body = {k: v for k, v in obj.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign(obj: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical_bytes(obj), hashlib.sha256).hexdigest()


def signed(obj: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of the command with its `sig` set."""
    out = {k: v for k, v in obj.items() if k != "sig"}
    out["sig"] = sign(out, key)
    return out


def verify(obj: dict[str, Any], key: bytes) -> bool:
    sig = obj.get("sig")
    if not isinstance(sig, str):
        return False
    return hmac.compare_digest(sign(obj, key), sig.lower())


def command_id_of(obj: dict[str, Any]) -> str | None:
    """The command_id to answer with: only one that can be published and stored as it is."""
    cid = obj.get("command_id")
    return cid if isinstance(cid, str) and 0 < len(cid) <= 128 and text_problem(cid) is None else None


def _unsupported(obj: dict[str, Any], cid: str | None) -> Rejection | None:
    schema = obj.get("schema")
    if isinstance(schema, str) and schema.startswith("youxu.dispatch/") and schema != DISPATCH_SCHEMA:
        return Rejection(UNSUPPORTED, "schema", f"schema {schema!r} is not supported (want {DISPATCH_SCHEMA})", cid)
    kind = obj.get("type")
    if isinstance(kind, str) and kind not in ("limit", "setpoint", "cancel"):
        return Rejection(UNSUPPORTED, "type", f"command type {kind!r} is not supported", cid)
    scope = obj.get("scope")
    if isinstance(scope, str) and scope not in ("site", "ev"):
        return Rejection(UNSUPPORTED, "scope", f"scope {scope!r} is not supported", cid)
    return None


def _unknown_fields(cmd: DispatchCommand) -> str | None:
    if cmd.model_extra:
        return sorted(cmd.model_extra)[0]
    for i, p in enumerate(cmd.periods):
        if p.model_extra:
            return f"periods[{i}].{sorted(p.model_extra)[0]}"
    return None


def _consistency(cmd: DispatchCommand) -> tuple[str, str] | None:
    """Cross-field rules as (field, problem), or None."""
    if cmd.type == "cancel":
        if cmd.cancels is None:
            return "cancels", "a cancel needs the command_id it ends"
        if cmd.periods:
            return "periods", "a cancel has no periods"
        return None
    if cmd.cancels is not None:
        return "cancels", f"only a cancel names a command to end, this is a {cmd.type}"
    if not cmd.periods:
        return "periods", f"a {cmd.type} needs at least one period"
    offsets = [p.offset_s for p in cmd.periods]
    for i in range(1, len(offsets)):
        if offsets[i] <= offsets[i - 1]:
            return f"periods[{i}].offset_s", "offsets must increase strictly"
    for i, p in enumerate(cmd.periods):
        if cmd.type == "limit":
            if p.setpoint_kw is not None:
                return f"periods[{i}].setpoint_kw", "a limit has no setpoint_kw"
            if p.import_max_kw is None and p.export_max_kw is None:
                return f"periods[{i}]", "a limit period needs import_max_kw or export_max_kw"
        else:
            if p.setpoint_kw is None:
                return f"periods[{i}].setpoint_kw", "a setpoint period needs setpoint_kw"
            if p.import_max_kw is not None or p.export_max_kw is not None:
                return f"periods[{i}]", "a setpoint period has only setpoint_kw"
    if cmd.valid_until is not None and cmd.valid_until <= cmd.start_s:
        return "valid_until", "must be after valid_from (or issued_at)"
    if cmd.valid_until is not None and cmd.start_s + offsets[-1] >= cmd.valid_until:
        return f"periods[{len(offsets) - 1}].offset_s", "starts at or after valid_until"
    return None


def validate_command(
    payload: bytes | str,
    *,
    site_id: str,
    topic_site: str | None = None,
    key: bytes | None = None,
    strict: bool = False,
) -> DispatchCommand | Rejection:
    """Parse and check one command; never raises on bad input.

    Order: JSON, unsupported version/type/scope, schema, unknown fields (strict), signature
    (when the site has a key), target (topic's site and optional `target` field).
    """
    obj = decode_json_object(payload)
    if isinstance(obj, Rejection):
        return obj
    return validate_command_object(obj, site_id=site_id, topic_site=topic_site, key=key, strict=strict)


def validate_command_object(
    obj: dict[str, Any],
    *,
    site_id: str,
    topic_site: str | None = None,
    key: bytes | None = None,
    strict: bool = False,
) -> DispatchCommand | Rejection:
    cid = command_id_of(obj)
    unsupported = _unsupported(obj, cid)
    if unsupported is not None:
        return unsupported
    try:
        cmd = DispatchCommand.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        return Rejection(BAD_SCHEMA, error_path(loc), err["msg"].removeprefix("Value error, "), cid)
    except (RecursionError, OverflowError) as exc:  # pathological nesting or numbers
        return Rejection(BAD_SCHEMA, "(root)", type(exc).__name__, cid)
    if strict:
        unknown = _unknown_fields(cmd)
        if unknown is not None:
            return Rejection(BAD_SCHEMA, unknown, "unknown field (strict mode)", cid)
    problem = _consistency(cmd)
    if problem is not None:
        return Rejection(BAD_SCHEMA, problem[0], problem[1], cid)
    if key is not None:
        if cmd.sig is None:
            return Rejection(BAD_SIGNATURE, "sig", "this site requires a signature", cid)
        try:
            ok = verify(obj, key)
        except (TypeError, ValueError, RecursionError):  # cannot be serialised canonically
            ok = False
        if not ok:
            return Rejection(BAD_SIGNATURE, "sig", "HMAC-SHA256 does not match", cid)
    if topic_site is not None and topic_site != site_id:
        return Rejection(TARGET_MISMATCH, "topic", f"sent to site {topic_site!r}, this is {site_id!r}", cid)
    if cmd.target is not None and cmd.target != site_id:
        return Rejection(TARGET_MISMATCH, "target", f"meant for site {cmd.target!r}, this is {site_id!r}", cid)
    return cmd


def check_times(
    cmd: DispatchCommand, now_s: float, skew_s: float, *, retained_default: bool = False
) -> Rejection | None:
    """STALE when issued_at is further than `skew_s` from the site's clock; EXPIRED when over.

    The retained `default` is exempt from the skew check: the broker keeps it for as long as
    it is valid, so its issued_at is naturally old.
    """
    if not retained_default and abs(cmd.issued_at - now_s) > skew_s:
        return Rejection(
            STALE, "issued_at", f"{cmd.issued_at - now_s:+.0f} s from the site's clock (skew allowed {skew_s:g} s)",
            cmd.command_id,
        )
    if cmd.valid_until is not None and cmd.valid_until <= now_s:
        return Rejection(EXPIRED, "valid_until", "already over", cmd.command_id)
    return None


def check_default(cmd: DispatchCommand) -> Rejection | None:
    """The retained `default` is a limit without valid_until."""
    if cmd.type != "limit":
        return Rejection(BAD_SCHEMA, "type", "the default must be a limit", cmd.command_id)
    if cmd.valid_until is not None:
        return Rejection(BAD_SCHEMA, "valid_until", "the default has no valid_until", cmd.command_id)
    return None


def parse_stored(payload: str) -> DispatchCommand:
    """Re-read a command this site accepted earlier (no signature or time checks)."""
    return DispatchCommand.model_validate(json.loads(payload))
