"""The OpenAPI 3.1 document of the local API (`GET /api/v1/openapi.json`).

Written out here rather than derived from the handlers: the booking body is the MQTT booking's
`youxu.session/1` (its schema comes from the same pydantic model), the rest are small objects.
"""

from __future__ import annotations

from typing import Any

from youxu.controller.grid.bookings import SessionRequest
from youxu.controller.siteconfig import SiteConfig

ERROR = {"type": "object", "required": ["error", "detail"],
         "properties": {"error": {"type": "string"}, "detail": {"type": "string"},
                        "field": {"type": "string", "description": "the offending field (422)"}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {401: "no valid bearer token", 403: "a read token on a write endpoint", 404: "no such pile",
            413: "request body too large", 422: "bad body or query, with the field", 429: "too many requests",
            503: "the control loop has not ticked yet"}
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {str(c): {"description": text[c], "content": ref} for c in codes}


def _get(summary: str, schema: dict[str, Any], *, params: list | None = None, extra: tuple[int, ...] = ()
         ) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "security": [{"bearer": []}],
                          "responses": {"200": {"description": "ok",
                                                "content": {"application/json": {"schema": schema}}},
                                        **_errors(401, 429, *extra)}}
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(summary: str, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    pile = {"name": "pile_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {"post": {"summary": summary, "security": [{"bearer": []}], "parameters": [pile],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                     "responses": {"202": {"description": "accepted; applies from the next tick",
                                           "content": {"application/json": {"schema": answer}}},
                                   **_errors(401, 403, 404, 413, 422, 429)}}}


def session_request_schema() -> dict[str, Any]:
    s = SessionRequest.model_json_schema()
    props = s.get("properties", {})
    props["schema"] = {"const": "youxu.session/1"}
    props["departure"] = {"type": "string", "format": "date-time", "description": "RFC 3339 with offset"}
    s["required"] = ["schema", "departure", "energy_kwh"]
    s["title"] = "youxu.session/1"
    return s


def openapi_document(cfg: SiteConfig, version: str) -> dict[str, Any]:
    obj = {"type": "object"}
    kw = {"type": ["number", "null"]}
    status = {"type": "object", "description": "the latest youxu.telemetry/1 object plus state and version",
              "required": ["schema", "at", "total_kw", "base_kw", "ev_kw", "phase_kw", "limit_kw",
                           "active_commands", "piles", "state", "version"],
              "properties": {"schema": {"const": "youxu.telemetry/1"}, "at": {"type": "string", "format": "date-time"},
                             "total_kw": kw, "base_kw": kw, "ev_kw": kw, "limit_kw": kw, "phase_kw": obj,
                             "active_commands": {"type": "array", "items": {"type": "string"}}, "piles": obj,
                             "state": {"enum": ["online", "safe_mode"]}, "version": {"type": "string"},
                             "limits_ahead": {"type": "array", "items": obj}}}
    pile = {"type": "object", "properties": {
        "pile_id": {"type": "string"}, "status": {"enum": ["available", "connected", "charging", "fault", "unknown"]},
        "power_kw": kw, "setpoint_kw": kw, "session": {"type": ["string", "null"]},
        "departure": {"type": ["string", "null"]}, "energy_kwh": kw, "energy_wanted_kwh": kw,
        "v2g": {"type": "boolean"},
        "override": {"type": ["object", "null"]}}}
    list_of = lambda key, item: {"type": "object", "properties": {key: {"type": "array", "items": item}}}  # noqa: E731
    since = {"name": "since", "in": "query", "required": False, "description": "RFC 3339 (default: an hour ago)",
             "schema": {"type": "string", "format": "date-time"}}
    override = {"type": "object", "required": ["action"], "additionalProperties": False, "properties": {
        "action": {"enum": ["pause", "resume", "urgent"]},
        "minutes": {"type": "number", "exclusiveMinimum": 0, "maximum": 1440,
                    "description": "how long (needed for pause and urgent)"}}}
    v1 = "/api/v1"
    return {
        "openapi": "3.1.0",
        "info": {"title": f"youxu local API ({cfg.site.id})", "version": version,
                 "description": "The edge controller's state and the residents' and operators' inputs."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Error": ERROR, "SessionRequest": session_request_schema(),
                                   "Override": override, "Status": status, "Pile": pile}},
        "paths": {
            f"{v1}/status": _get("latest telemetry, state and version", {"$ref": "#/components/schemas/Status"},
                                 extra=(503,)),
            f"{v1}/piles": _get("every pile: status, power, setpoint, session", list_of("piles", pile)),
            f"{v1}/sessions": _get("open sessions and bookings waiting for a car",
                                   {"type": "object", "properties": {"sessions": {"type": "array"},
                                                                     "pending": {"type": "array"}}}),
            f"{v1}/commands": _get("dispatch commands in force and recent, with their acks", list_of("commands", obj)),
            f"{v1}/events": _get("events since a time", list_of("events", obj), params=[since], extra=(422,)),
            f"{v1}/openapi.json": _get("this document", obj),
            f"{v1}/sessions/{{pile_id}}/request": _post(
                "a booking (youxu.session/1, validated as the MQTT booking)",
                {"$ref": "#/components/schemas/SessionRequest"}, obj),
            f"{v1}/piles/{{pile_id}}/override": _post("pause, resume or make urgent a pile for some minutes",
                                                      {"$ref": "#/components/schemas/Override"}, obj),
        },
    }
