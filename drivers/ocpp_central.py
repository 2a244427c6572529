"""The OCPP central system: charge points on the site's LAN connect to the daemon over websockets
(`ws://host:port/{charge_point_id}`, OCPP 1.6J or 2.0.1, chosen by the websocket subprotocol).

Built on the `ocpp` package: one `ChargePoint` per connection (`ocpp_sessions.py`), the
connector state (`ocpp_state.py`) kept here across reconnects. Security profiles: 0 plain, 1
HTTP basic auth with a password per charge point, 2 the same over TLS. A charge point with an
id the site config does not name is refused at the handshake, and so is a wrong password; both
raise an event. A second connection with the same id replaces the first (a charge point that
lost its network reconnects while the old TCP connection is still half open).

Limits: each charge point gets, once it has booted, a permanent `TxDefaultProfile` at its safe
current (stack level 0): that is its failsafe. Control then rides on short-lived profiles above
it (`TxProfile` for a running transaction, else `TxDefaultProfile` at stack level 1) whose
`validTo` the daemon renews while its loop lives; a charge point that loses the daemon falls
back to the safe current by itself when the last one expires.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import ssl
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from youxu.drivers.clock import Clock
from youxu.drivers.ocpp_sessions import SESSIONS, Session
from youxu.drivers.ocpp_state import CentralSettings, ChargePointSpec, ChargePointState

log = logging.getLogger(__name__)

SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
EventFn = Callable[..., None]


def parse_passwords(text: str, source: str) -> dict[str, str]:
    """`charge_point_id:password` per line; `#` starts a comment."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cp, sep, pw = line.partition(":")
        if not sep or not cp.strip() or not pw.strip():
            raise ValueError(f"{source}:{n}: expected charge_point_id:password")
        out[cp.strip()] = pw.strip()
    return out


class CentralSystem:
    def __init__(self, settings: CentralSettings, charge_points: list[ChargePointSpec], clock: Clock,
                 on_event: EventFn | None = None) -> None:
        bad = [v for v in settings.versions if v not in SUBPROTOCOLS]
        if bad:
            raise ValueError(f"OCPP versions {bad}: use 1.6 and/or 2.0.1")
        if settings.security_profile in (1, 2) and not settings.passwords:
            raise ValueError("OCPP security profiles 1 and 2 need a password for every charge point")
        self.settings = settings
        self.specs = {cp.id: cp for cp in charge_points}
        self.clock = clock
        self.on_event = on_event or (lambda kind, message, **fields: log.warning("%s: %s", kind, message))
        self.states = {cp.id: ChargePointState(cp.id) for cp in charge_points}
        self.sessions: dict[str, Session] = {}
        self._server: Server | None = None
        self._tasks: set[asyncio.Task] = set()

    # ---- server --------------------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext | None:
        if self.settings.security_profile != 2:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.settings.cert_file or "", self.settings.key_file or None)
        return ctx

    async def start(self) -> None:
        s = self.settings
        subprotocols = [SUBPROTOCOLS[v] for v in s.versions]
        self._server = await serve(self._connection, s.host, s.port, subprotocols=subprotocols,  # type: ignore[arg-type]
                                   process_request=self._admit, ssl=self._ssl(), ping_interval=30, ping_timeout=30)
        log.info("OCPP central system on %s:%d (%s, security profile %d)", s.host, self.port,
                 ", ".join(s.versions), s.security_profile)

    @property
    def port(self) -> int:
        """The port listened on (the configured one, or the one the OS chose for port 0)."""
        if self._server is None:
            return self.settings.port
        return next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _charge_point_id(self, path: str) -> str:
        return path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse unknown charge points and wrong passwords before the websocket opens."""
        cp_id = self._charge_point_id(request.path)
        peer = connection.remote_address[0] if connection.remote_address else "?"
        if cp_id not in self.specs:
            self.on_event("ocpp_unknown_charge_point", f"charge point {cp_id!r} from {peer} is not in the site "
                          "config: refused", charge_point=cp_id, peer=peer)
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown charge point\n")
        if self.settings.security_profile in (1, 2) and not self._password_ok(cp_id, request):
            self.on_event("ocpp_auth_failed", f"charge point {cp_id!r} from {peer}: wrong or missing password",
                          charge_point=cp_id, peer=peer)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "authorization required\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="youxu"'
            return response
        return None

    def _password_ok(self, cp_id: str, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        want = (self.settings.passwords or {}).get(cp_id, "")
        return user == cp_id and bool(want) and hmac.compare_digest(password.encode(), want.encode())

    async def _connection(self, connection: ServerConnection) -> None:
        cp_id = self._charge_point_id(connection.request.path if connection.request else "")
        version = next((v for v, sp in SUBPROTOCOLS.items() if sp == connection.subprotocol), None)
        if version is None:
            self.on_event("ocpp_protocol_refused", f"charge point {cp_id!r} offers no OCPP version this site "
                          f"speaks ({', '.join(self.settings.versions)})", charge_point=cp_id)
            await connection.close(1002, "no common OCPP version")
            return
        state = self.states[cp_id]
        old = self.sessions.get(cp_id)
        session = SESSIONS[version](cp_id, connection, self, state, self.specs[cp_id])
        self.sessions[cp_id] = session
        if old is not None:
            log.info("charge point %s connected again; closing its previous connection", cp_id)
            with contextlib.suppress(Exception):
                await old.connection.close(1000, "replaced by a new connection")
        state.connected, state.version = True, version
        state.last_seen_s = self.clock.now()
        if old is None:
            self.on_event("ocpp_connected", f"charge point {cp_id} connected (OCPP {version})", charge_point=cp_id)
        try:
            await session.start()
        except Exception as exc:  # the connection closed, or the charge point sent what cannot be routed
            log.info("charge point %s: connection ended (%s)", cp_id, exc or type(exc).__name__)
        finally:
            if self.sessions.get(cp_id) is session:
                del self.sessions[cp_id]
                state.connected = False
                self.on_event("ocpp_disconnected", f"charge point {cp_id} disconnected", charge_point=cp_id)

    # ---- for the sessions and the piles ---------------------------------------------------------
    def spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def session(self, cp_id: str) -> Session | None:
        return self.sessions.get(cp_id)
