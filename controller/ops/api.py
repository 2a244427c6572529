"""The local JSON API under `/api/v1/` and the status page at `/` (contract section 9), on Starlette.

Reads come from `LiveState` (the picture the fast loop published after its last tick) and from the
store's event log; writes go where MQTT input goes: a booking is validated by the same
`parse_booking` as `sessions/{pile}/request` and queued on the grid link with the MQTT bookings,
an override is queued on the link for the next tick, which applies it and logs it as an event.
Nothing here touches the loop's own objects. `ApiServer` runs uvicorn in a thread of its own.

Every `/api/v1/` request needs a bearer token (401 without a valid one, 403 when a read token
writes); a bad body is 422 with the field; bodies are bounded (413) and each client's request rate
too (429). The page itself and its live stream (`/live`, server-sent events, at most one message
per tick) need no token: they show what the page shows; the page asks for a token to write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from youxu.config.errors import error_path
from youxu.controller.grid.bookings import PileInfo, parse_booking
from youxu.controller.grid.dispatch_schema import Rejection, parse_rfc3339
from youxu.controller.gridlink import GridLink, Override
from youxu.controller.ops.api_auth import Principal, RateLimit, Tokens
from youxu.controller.ops.api_openapi import openapi_document
from youxu.controller.ops.live import LiveState, Published
from youxu.controller.siteconfig import ApiSection, SiteConfig
from youxu.controller.store.event_log import EventRow, RecentEvents
from youxu.controller.storelink import EventRecorder
from youxu.drivers.clock import Clock

log = logging.getLogger(__name__)

PAGE_FILES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
              "index.html": "text/html; charset=utf-8"}
EVENTS_DEFAULT_S = 3600.0  # /events without `since`: the last hour
ALARMS_ON_PAGE = 20
KEEPALIVE_S = 15.0


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str = "", field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.field, self.headers = status, error, detail, field, headers

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class OverrideRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    action: Literal["pause", "resume", "urgent"]
    minutes: float | None = Field(default=None, gt=0, le=1440)


@dataclass
class ApiContext:
    cfg: SiteConfig
    clock: Clock
    live: LiveState
    link: GridLink
    tokens: Tokens
    events: RecentEvents | None = None  # the store's event log ...
    engine: Engine | None = None  # ... and its database, for events older than the log holds
    recorder: EventRecorder | None = None

    @property
    def section(self) -> ApiSection:
        return self.cfg.api

    def emit(self, kind: str, message: str, **fields: object) -> None:
        """An event of the API's own (a booking taken or refused): to the grid and into the events table."""
        try:
            self.link.event(kind, message, **fields)
        except Exception:
            log.exception("api: event %s failed", kind)
        if self.recorder is not None:
            self.recorder.event(self.clock.now(), kind, message, dict(fields))

    def events_since(self, since_s: float, *, database: bool = True) -> list[EventRow]:
        """Events since `since_s`; only the in-memory log unless `database` (which may wait on a disk)."""
        if self.events is None:
            return []
        return self.events.since(since_s, self.engine if database else None)


def build_app(ctx: ApiContext) -> ASGIApp:
    piles = {p.id: PileInfo(p.id, p.v2g) for p in ctx.cfg.piles}
    strict = bool(ctx.cfg.mqtt and ctx.cfg.mqtt.strict)
    sec = ctx.section
    feed = TickFeed(ctx)
    doc = openapi_document(ctx.cfg, ctx.live.version)

    def auth(request: Request, role: str) -> Principal:
        who = ctx.tokens.who(request.headers.get("authorization"))
        if who is None:
            raise ApiError(401, "UNAUTHORIZED", "a valid bearer token is needed",
                           headers={"WWW-Authenticate": 'Bearer realm="youxu"'})
        if not who.may(role):
            raise ApiError(403, "FORBIDDEN", f"token {who.name!r} may only read")
        return who

    def endpoint(role: str, fn: Callable[[Request, Principal], Awaitable[Response]]
                 ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                who = auth(request, role)
                response = await fn(request, who)
            except ApiError as exc:
                return exc.response()
            response.headers["X-Token-Role"] = who.role  # the page shows the write actions to write tokens
            return response
        return handle

    async def body_of(request: Request) -> bytes:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > sec.max_body_bytes:
                raise ApiError(413, "TOO_LARGE", f"request body over {sec.max_body_bytes} bytes")
        return bytes(data)

    def pile_of(request: Request) -> str:
        pid = request.path_params["pile_id"]
        if pid not in piles:
            raise ApiError(404, "UNKNOWN_PILE", f"no pile {pid!r} at this site", field="pile_id")
        return pid

    # ---- reads ------------------------------------------------------------------------------
    async def status(request: Request, who: Principal) -> Response:
        st = ctx.live.status()
        if st is None:
            raise ApiError(503, "STARTING", "the control loop has not ticked yet")
        return JSONResponse(st)

    async def get_piles(request: Request, who: Principal) -> Response:
        return JSONResponse({"piles": ctx.live.piles()})

    async def get_sessions(request: Request, who: Principal) -> Response:
        return JSONResponse(ctx.live.sessions())

    async def get_commands(request: Request, who: Principal) -> Response:
        return JSONResponse({"commands": ctx.live.commands()})

    async def get_events(request: Request, who: Principal) -> Response:
        since = request.query_params.get("since")
        if since is None:
            since_s = ctx.clock.now() - EVENTS_DEFAULT_S
        else:
            try:
                since_s = parse_rfc3339(since)
            except ValueError as exc:
                raise ApiError(422, "BAD_QUERY", str(exc), field="since") from None
        rows = await asyncio.to_thread(ctx.events_since, since_s)  # older ones come from the database
        return JSONResponse({"events": [event_json(ctx.live, r) for r in rows]})

    async def openapi(request: Request, who: Principal) -> Response:
        return JSONResponse(doc)

    # ---- writes -----------------------------------------------------------------------------
    async def booking(request: Request, who: Principal) -> Response:
        pid = pile_of(request)
        body = await body_of(request)
        now = ctx.clock.now()
        res = parse_booking(body, pid, piles, now, strict=strict)
        if isinstance(res, Rejection):
            ctx.emit("booking_rejected", f"booking for {pid} refused: {res.field}: {res.detail}", pile=pid,
                     reason=res.reason, field=res.field, by=who.name)
            raise ApiError(422, res.reason, res.detail, field=res.field)
        ctx.link.push_booking(res)
        ctx.emit("booking_accepted", f"booking for {pid} accepted", pile=pid, energy_kwh=res.energy_kwh,
                 priority=res.priority, by=who.name)
        return JSONResponse({"status": "accepted", "pile_id": pid, "departure": ctx.live.t(res.departure_s),
                             "energy_kwh": res.energy_kwh, "v2g": res.v2g, "priority": res.priority}, status_code=202)

    async def override(request: Request, who: Principal) -> Response:
        pid = pile_of(request)
        body = await body_of(request)
        try:
            req = OverrideRequest.model_validate_json(body or b"null")
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            raise ApiError(422, "BAD_SCHEMA", err["msg"], field=error_path(tuple(err["loc"]))) from None
        if req.action != "resume" and req.minutes is None:
            raise ApiError(422, "BAD_SCHEMA", f"{req.action} needs minutes", field="minutes")
        now = ctx.clock.now()
        until_s = now + (req.minutes or 0.0) * 60.0
        ctx.link.push_override(Override(pid, req.action, until_s, received_s=now, by=who.name))
        return JSONResponse({"status": "queued", "pile_id": pid, "action": req.action,
                             "until": ctx.live.t(until_s) if req.action != "resume" else None}, status_code=202)

    # ---- the page ---------------------------------------------------------------------------
    async def page_file(request: Request) -> Response:
        name = request.path_params.get("name", "index.html")
        if name not in PAGE_FILES:
            return JSONResponse({"error": "NOT_FOUND"}, status_code=404)
        data = resources.files("youxu.controller.ops").joinpath("status_page", name).read_bytes()
        return Response(data, media_type=PAGE_FILES[name], headers={"Cache-Control": "no-cache"})

    async def live(request: Request) -> Response:
        if feed.open >= sec.max_streams:
            return JSONResponse({"error": "BUSY", "detail": "too many live pages open"}, status_code=503)
        return StreamingResponse(feed.stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    v1 = "/api/v1"
    routes = [
        Route("/", page_file), Route("/static/{name}", page_file), Route("/live", live),
        Route(f"{v1}/status", endpoint("read", status)),
        Route(f"{v1}/piles", endpoint("read", get_piles)),
        Route(f"{v1}/sessions", endpoint("read", get_sessions)),
        Route(f"{v1}/commands", endpoint("read", get_commands)),
        Route(f"{v1}/events", endpoint("read", get_events)),
        Route(f"{v1}/openapi.json", endpoint("read", openapi)),
        Route(f"{v1}/sessions/{{pile_id}}/request", endpoint("write", booking), methods=["POST"]),
        Route(f"{v1}/piles/{{pile_id}}/override", endpoint("write", override), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    return Bounded(app, RateLimit(sec.rate_per_s, sec.rate_burst), sec.max_body_bytes)


def event_json(live: LiveState, r: EventRow) -> dict[str, Any]:
    out: dict[str, Any] = {"at": live.t(r.t_s), "kind": r.kind, "message": r.message}
    for k, v in r.fields.items():
        out.setdefault(k, v)
    return out


def page_view(ctx: ApiContext, p: Published | None) -> dict[str, Any]:
    """Everything the page shows, from one published picture (alarms: the event log's latest of the last day)."""
    since = (p.report.t_s if p is not None else ctx.clock.now()) - 86400.0
    alarms = [event_json(ctx.live, r) for r in ctx.events_since(since, database=False)][-ALARMS_ON_PAGE:]
    return {"status": ctx.live.status(p), "piles": ctx.live.piles(p), "sessions": ctx.live.sessions(p),
            "commands": ctx.live.commands(), "alarms": alarms}


class TickFeed:
    """The page's live messages: woken once per tick (one hand-over from the loop's thread, however many
    pages are open), each tick's message built once and sent to every open page."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.open = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticked = asyncio.Event()
        self._built: tuple[int, str] = (-1, "")

    def _wake(self) -> None:  # the fast loop's thread: hand over, nothing more
        if self.open and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the API's loop has closed
                self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        ticked, self._ticked = self._ticked, asyncio.Event()
        ticked.set()

    def _message(self, p: Published) -> str:
        if self._built[0] != p.seq:
            view = page_view(self.ctx, p)
            r = p.report
            view["point"] = [round(r.t_s, 3), r.base_kw, r.ev_kw, r.total_kw, r.limit_kw]
            self._built = (p.seq, sse("tick", view))
        return self._built[1]

    async def stream(self) -> AsyncIterator[str]:
        """Server-sent events: the page's view now (with the load history), then one message per tick."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self.ctx.live.add_waiter(self._wake)
        self.open += 1
        try:
            p = self.ctx.live.latest
            view = await asyncio.to_thread(page_view, self.ctx, p)
            view["history"] = self.ctx.live.history_points()
            yield sse("view", view)
            seen = p.seq if p is not None else 0
            while True:
                p = self.ctx.live.latest
                if p is None or p.seq == seen:  # nothing new since the last message: wait for the next tick
                    try:
                        await asyncio.wait_for(self._ticked.wait(), KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                    continue
                if p is None or p.seq == seen:
                    continue
                seen = p.seq
                yield self._message(p)
        finally:
            self.open -= 1


def sse(event: str, data: dict[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False)
    return f"event: {event}\ndata: {text}\n\n"


class Bounded:
    """ASGI wrapper: each client's request rate (429) and the declared body size (413), before routing."""

    def __init__(self, app: ASGIApp, limiter: RateLimit, max_body_bytes: int) -> None:
        self.app, self.limiter, self.max_body_bytes = app, limiter, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        wait_s = self.limiter.take(str(client[0]))
        if wait_s > 0:
            err = ApiError(429, "RATE_LIMITED", "too many requests", headers={"Retry-After": str(int(wait_s) + 1)})
            await err.response()(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            err = ApiError(413, "TOO_LARGE", f"request body over {self.max_body_bytes} bytes")
            await err.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)
