"""`youxu dispatch send` for grid engineers, and how a grid-side client reaches the broker.

    youxu dispatch send --mqtt URL --site ID (--file CMD.json | --limit-kw X --minutes M | --setpoint-kw X
                        --minutes M | --cancel COMMAND_ID) [--key-file KEY] [--wait received|applied|final]

Prints every acknowledgement as one JSON line as it arrives. Exit 0 when the awaited stage was
reached, 1 on rejection, timeout or an unreachable broker, 2 on bad input (one-line error).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from youxu.config.errors import UserError
from youxu.config.userfiles import cli_type, load_json, read_text
from youxu.controller.grid.dispatch_schema import (
    MAX_PAYLOAD_BYTES,
    Rejection,
    check_default,
    format_rfc3339,
    parse_rfc3339,
    signed,
    validate_command_object,
)
from youxu.drivers.mqtt_topics import SiteTopics, check_site_id, parse_broker_url

FINAL = ("completed", "superseded", "cancelled", "expired")
STAGE = {"received": 1, "applied": 2, **{s: 3 for s in FINAL}}


@dataclass(frozen=True)
class BrokerAccess:
    url: str
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None


def connect(access: BrokerAccess, client_id: str, timeout_s: float = 10.0,
            on_message: Any = None) -> mqtt.Client:
    """A connected paho client (network loop running); MQTT 5, or 3.1.1 if the broker refuses 5."""
    url = parse_broker_url(access.url)
    last = "no answer"
    for proto in (MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311):
        c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
        if access.username or url.username:
            c.username_pw_set(access.username or url.username, access.password or url.password)
        if url.tls:
            try:
                c.tls_set(ca_certs=str(access.ca_file) if access.ca_file else None,
                          certfile=str(access.cert_file) if access.cert_file else None,
                          keyfile=str(access.key_file) if access.key_file else None)
            except (OSError, ValueError) as exc:
                raise UserError(f"TLS files: {exc}") from None
        result: queue.Queue[Any] = queue.Queue()
        c.on_connect = lambda _c, _u, _f, reason, _p, q=result: q.put(reason)
        if on_message is not None:
            c.on_message = on_message
        try:
            c.connect(url.host, url.port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the broker at {access.url}: {exc}") from None
        c.loop_start()
        try:
            reason = result.get(timeout=timeout_s)
        except queue.Empty:
            reason = None
        if reason is not None and not reason.is_failure:
            return c
        c.loop_stop()
        c.disconnect()
        last = str(reason) if reason is not None else "no answer"
        if reason is None or reason.value not in (1, 132):
            break
    raise ConnectionError(f"the broker at {access.url} refused the connection: {last}")


# ---- building a command --------------------------------------------------------------------
def _read_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise UserError(f"--key-file {path}: {exc.strerror or exc}") from None
    if not key:
        raise UserError(f"--key-file {path}: empty")
    return key


def _start_s(text: str, now_s: float) -> float:
    if text == "now":
        return now_s
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise UserError(f"--start {text!r}: {exc}") from None


def build_command(args: argparse.Namespace, now_s: float) -> dict[str, Any]:
    """The command described by the flags (or read from --file), filled in and checked."""
    tz = datetime.now(UTC).astimezone().tzinfo or UTC
    if args.file is not None:
        cmd = load_json(args.file, "--file", max_bytes=MAX_PAYLOAD_BYTES)
        if not isinstance(cmd, dict):
            raise UserError(f"--file {args.file}: expected a JSON object")
    else:
        cmd = {"schema": "youxu.dispatch/1", "scope": args.scope, "priority": args.priority}
        if args.cancel is not None:
            cmd |= {"type": "cancel", "cancels": args.cancel}
        else:
            if args.minutes is None and not args.default:
                raise UserError("--minutes: required with --limit-kw or --setpoint-kw")
            if args.minutes is not None and args.minutes <= 0:
                raise UserError(f"--minutes: must be positive (got {args.minutes:g})")
            start = _start_s(args.start, now_s)
            period: dict[str, Any] = {"offset_s": 0}
            if args.setpoint_kw is not None:
                cmd["type"] = "setpoint"
                period["setpoint_kw"] = args.setpoint_kw
            else:
                cmd["type"] = "limit"
                period["import_max_kw"] = args.limit_kw
                if args.export_max_kw is not None:
                    period["export_max_kw"] = args.export_max_kw
            cmd["valid_from"] = format_rfc3339(start, tz)
            if not args.default:
                cmd["valid_until"] = format_rfc3339(start + args.minutes * 60.0, tz)
            cmd["periods"] = [period]
    cmd.setdefault("command_id", args.command_id or str(uuid.uuid4()))
    cmd.setdefault("issuer", args.issuer)
    cmd.setdefault("seq", args.seq if args.seq is not None else int(now_s * 1000))
    cmd.setdefault("issued_at", format_rfc3339(round(now_s), tz))
    key = _read_key(args.key_file)
    if key is not None:
        cmd = signed(cmd, key)
    checked = validate_command_object(cmd, site_id=args.site, key=key)
    if args.default and not isinstance(checked, Rejection):
        checked = check_default(checked) or checked
    if isinstance(checked, Rejection):
        src = f"--file {args.file}: " if args.file is not None else ""
        raise UserError(f"{src}{checked.field}: {checked.detail} ({checked.reason})")
    return cmd


# ---- send ----------------------------------------------------------------------------------
def cmd_send(args: argparse.Namespace) -> int:
    if args.timeout_s <= 0:
        raise UserError(f"--timeout-s: must be positive (got {args.timeout_s:g})")
    for name in ("ca_file", "cert_file", "client_key_file", "password_file"):
        p = getattr(args, name)
        if p is not None and not Path(p).is_file():
            raise UserError(f"--{name.replace('_', '-')} {p}: no such file")
    parse_broker_url(args.mqtt)
    cmd = build_command(args, time.time())
    topics = SiteTopics(args.site)
    password = read_text(args.password_file, "--password-file").strip() if args.password_file else None
    access = BrokerAccess(args.mqtt, args.ca_file, args.cert_file, args.client_key_file, args.username, password)
    acks: queue.Queue[dict[str, Any]] = queue.Queue()
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            a = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(a, dict) and a.get("command_id") == cmd["command_id"]:
            acks.put(a)

    try:
        client = connect(access, f"youxu-cli-{uuid.uuid4().hex[:12]}", on_message=on_message)
    except ConnectionError as exc:
        print(f"youxu: {exc}", file=sys.stderr)
        return 1
    try:
        client.on_subscribe = lambda *_a: subscribed.set()
        client.subscribe(topics.ack, 1)
        subscribed.wait(5)
        topic = topics.default if args.default else topics.dispatch
        client.publish(topic, json.dumps(cmd), qos=1, retain=bool(args.default)).wait_for_publish(10)
        print(f"sent {cmd['type']} {cmd['command_id']} (issuer {cmd['issuer']}, seq {cmd['seq']}) to {topic}",
              file=sys.stderr)
        if args.wait == "none":
            return 0
        want = STAGE[args.wait if args.wait != "final" else "completed"]
        deadline = time.monotonic() + args.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                print(f"youxu: no '{args.wait}' acknowledgement within {args.timeout_s:g} s", file=sys.stderr)
                return 1
            try:
                a = acks.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            print(json.dumps(a, ensure_ascii=False), flush=True)
            if a.get("status") == "rejected":
                return 1
            if STAGE.get(a.get("status", ""), 0) >= want:
                return 0
    finally:
        client.disconnect()
        client.loop_stop()


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dispatch", help="send grid dispatch commands (for grid engineers)",
                              description="Grid dispatch tools (contract section 4).")
    sub = p.add_subparsers(dest="dispatch_command", required=True, metavar="ACTION")
    s = sub.add_parser("send", help="publish a dispatch command and print the acknowledgements",
                       description="Publish a youxu.dispatch/1 command to youxu/v1/ID/dispatch (or, with "
                       "--default, the retained default) and print each acknowledgement as a JSON line.",
                       epilog="Exit status: 0 when the awaited acknowledgement arrived, 1 on rejection, timeout or "
                       "an unreachable broker, 2 on bad input.")
    s.add_argument("--mqtt", required=True, metavar="URL", help="broker, mqtt://host[:port] or mqtts://host[:port]")
    s.add_argument("--site", required=True, type=cli_type(check_site_id), metavar="ID",
                   help="the site id (topic youxu/v1/ID/...)")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--file", type=Path, metavar="CMD.json", help="a youxu.dispatch/1 command (missing "
                      "command_id, issuer, seq, issued_at are filled in)")
    what.add_argument("--limit-kw", type=float, metavar="X", help="import limit in kW")
    what.add_argument("--setpoint-kw", type=float, metavar="X", help="setpoint in kW (negative: V2G discharge)")
    what.add_argument("--cancel", metavar="COMMAND_ID", help="end a command in force")
    s.add_argument("--minutes", type=float, metavar="M", help="how long the limit or setpoint lasts")
    s.add_argument("--export-max-kw", type=float, metavar="X", help="also cap export (with --limit-kw)")
    s.add_argument("--start", default="now", help="valid_from, RFC 3339 with offset (default now)")
    s.add_argument("--scope", choices=("site", "ev"), default="site")
    s.add_argument("--priority", type=int, default=1)
    s.add_argument("--issuer", default="youxu-cli")
    s.add_argument("--seq", type=int, help="sequence number (default: milliseconds since the epoch)")
    s.add_argument("--command-id", help="default: a new UUID")
    s.add_argument("--default", action="store_true", help="publish as the site's retained default limit")
    s.add_argument("--key-file", type=Path, help="sign with this HMAC key (the site's mqtt.hmac_key_file)")
    s.add_argument("--ca-file", type=Path)
    s.add_argument("--cert-file", type=Path, help="client certificate (mqtts)")
    s.add_argument("--client-key-file", type=Path, help="client certificate key (mqtts)")
    s.add_argument("--username")
    s.add_argument("--password-file", type=Path)
    s.add_argument("--wait", choices=("none", "received", "applied", "final"), default="received",
                   help="the acknowledgement to wait for (default received)")
    s.add_argument("--timeout-s", type=float, default=10.0, help="how long to wait (default 10)")
    s.set_defaults(func=cmd_send)
