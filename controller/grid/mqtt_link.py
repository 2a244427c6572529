"""`MqttGridLink`: the daemon's `GridLink` over MQTT (contract section 4).

Threads and tasks:
- paho's network thread receives; `_from_network` hands each message to the asyncio loop
  (`call_soon_threadsafe` onto an `asyncio.Queue`);
- one asyncio task handles messages in arrival order, as many at a time as have arrived:
  validation, duplicate and sequence checks (the store runs on a single worker thread, so the
  database never blocks the loop; a batch costs one lookup and one accepting transaction), the
  `received` acknowledgements as soon as that transaction is committed, bookings, heartbeats;
  what the transitions and acks change goes to the `DispatchMemory` once per loop turn, and into
  the database with the next batch's transaction (or the housekeeping flush, twice a second);
  while the database is away memory holds every record and answers for it;
- `after_tick` (called by the fast loop) and a twice-a-second housekeeping task drive the command
  state machine (`applied`, `completed`, ...), link-loss detection, telemetry, pile state, events;
- a publisher thread in `youxu.drivers.mqtt_link` feeds paho; nothing here waits for the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from typing import Any

import numpy as np

from youxu.config.errors import UserError
from youxu.controller.grid.arbitration import dispatch_limits
from youxu.controller.grid.bookings import PileInfo, parse_booking
from youxu.controller.grid.cadence import Cadence
from youxu.controller.grid.command_log import CommandLog
from youxu.controller.grid.commands import Ack, CommandBook, CommandRecord, Transition
from youxu.controller.grid.dispatch_memory import DispatchMemory
from youxu.controller.grid.dispatch_schema import Rejection, decode_json_object, parse_rfc3339
from youxu.controller.grid.intake import CommandIntake, Incoming, Verdict
from youxu.controller.grid.link_watch import FALLBACK_ENDED, LINK_LOST, LINK_RESTORED, LinkWatch
from youxu.controller.grid.payloads import (
    event_payload,
    pile_state_changed,
    pile_state_payload,
    status_payload,
    telemetry_payload,
    to_json,
)
from youxu.controller.grid.site_alarms import AlarmWatch
from youxu.controller.gridlink import DispatchLimits, PendingInputs, TickReport
from youxu.controller.siteconfig import SiteConfig
from youxu.controller.storelink import DispatchStore, EventRecorder, StorageError, StoredAck, StoredCommand
from youxu.drivers.clock import Clock
from youxu.drivers.mqtt_link import Inbound, MqttConnection, MqttSettings, Outbound
from youxu.drivers.mqtt_topics import SiteTopics, classify_topic

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 0.5
MAX_BATCH = 500  # messages handled together at most (a flood is drained in batches of this)
RESTORE_RETRY_S = 5.0  # how often the open commands are asked for again when the database was away at start
DRAIN_RETRY_MAX_S = 10.0  # longest wait between attempts to write what waits, while the database is away


def _version() -> str:
    try:
        return metadata.version("youxu")
    except metadata.PackageNotFoundError:
        return "dev"


def setpoint_grace_s(cfg: SiteConfig) -> float:
    """How long a setpoint may take to be met before it is acked INFEASIBLE. The rolling planner (mpc)
    takes a new command into account at its next planning period; judging it earlier would call a
    feasible setpoint infeasible. The configured `apply_grace_s` applies when it is longer."""
    c = cfg.control
    return c.planning_period_s + 2.0 * c.period_s if c.strategy == "mpc" else 2.0 * c.period_s


class MqttGridLink(PendingInputs):
    """Dispatch, bookings, acknowledgements, telemetry and events over one MQTT broker."""

    def __init__(self, cfg: SiteConfig, clock: Clock, store: DispatchStore | None = None, *,
                 open_store: Callable[[], DispatchStore] | None = None, owns_store: bool = False,
                 recorder: EventRecorder | None = None) -> None:
        """`store` is the dispatch memory to use, or `open_store` opens it when the link starts (off the
        loop; the link closes it at stop if `owns_store`); `recorder` takes the link's own events."""
        super().__init__()
        if cfg.mqtt is None:
            raise UserError("the site config has no mqtt section")
        self.cfg, self.m, self.clock, self.tz = cfg, cfg.mqtt, clock, cfg.tz
        self.site_id = cfg.site.id
        self.topics = SiteTopics(self.site_id)
        self.key = self.m.hmac_key()
        self.version = _version()
        self.book = CommandBook(apply_grace_s=self.m.apply_grace_s, setpoint_tolerance_kw=self.m.setpoint_tolerance_kw,
                                setpoint_grace_s=setpoint_grace_s(cfg))
        self.watch = LinkWatch(self.m.link_loss_s, clock.now())
        self.piles = {p.id: PileInfo(p.id, p.v2g) for p in cfg.piles}
        if store is None and open_store is None:
            raise TypeError("MqttGridLink needs a dispatch store or a way to open one")
        self._open = open_store or (lambda: store)
        self.store: DispatchMemory | None = None  # the store behind memory, once started
        self._draining = False
        self._drain_wait_s = HOUSEKEEPING_S
        self._drain_next_s = -math.inf  # steady time of the next attempt
        self._store_backlog = 0  # as last seen by housekeeping
        self._restore_pending = False  # the open commands could not be read at start
        self._restore_tried_s = -math.inf
        self._owns_store = owns_store
        self.recorder = recorder
        self._lock = threading.RLock()
        self.intake = CommandIntake(self.site_id, self.book, self._db_call, key=self.key, strict=self.m.strict,
                                    clock_skew_s=self.m.clock_skew_s, lock=self._lock)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="youxu-dispatch-db")
        self._db_lock = threading.Lock()
        self._db_waiting = 0  # store calls submitted, not started yet
        self._ambient: tuple[float, float] | None = None  # (epoch s taken, °C) from the `ambient` topic
        self._status = "online"
        # due on a grid of telemetry periods; a tick up to half a fast-loop period early counts as on time
        self._telemetry = Cadence(self.m.telemetry_period_s, cfg.control.period_s / 2.0)
        self._pile_sent: dict[str, dict[str, Any]] = {}
        self.alarms = AlarmWatch(cfg.phase_limits_kw())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[Inbound] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.acks_published = 0
        self._writes_lock = threading.Lock()  # commands and acks to store, written together
        self._pending_commands: dict[str, StoredCommand] = {}
        self._pending_acks: list[StoredAck] = []
        self._flush_scheduled = False
        self.command_log = CommandLog()  # the latest commands and their acks, for the local API
        settings = MqttSettings.from_section(self.m, self.site_id)
        will = Outbound(self.topics.status, to_json(status_payload("offline", clock.now(), self.tz, self.version)),
                        qos=1, retain=True)
        self.conn = MqttConnection(settings, self.topics.subscriptions(), clock, on_message=self._from_network,
                                   will=will, birth=self._birth)

    # ---- GridLink ------------------------------------------------------------------------------
    def limits(self, t_s: np.ndarray) -> DispatchLimits:
        now = self.clock.now()
        with self._lock:
            fallback = self.watch.fallback or self.watch.silent_s(now) > self.watch.link_loss_s
            return dispatch_limits(self.book.in_force(), t_s, default=self.book.default_command(),
                                   link_lost=fallback, fallback_limit_kw=self.m.fallback_limit_kw)

    def after_tick(self, report: TickReport) -> None:
        try:
            with self._lock:
                transitions = self.book.update(report.t_s) + self.book.check_applied(report)
            self._emit(transitions, report.t_s)
            self._check_link(report.t_s)
            self._alarms(report)
            self._pile_states(report)
            if self._telemetry.due(report.t_s):
                active = self.limits(np.array([report.t_s])).active_command_ids
                self.conn.publish(Outbound(self.topics.telemetry, to_json(telemetry_payload(report, active, self.tz)),
                                           qos=0), "telemetry")
        except Exception:  # the tick must never fail because of the grid link
            log.exception("grid link: after_tick failed")

    def event(self, kind: str, message: str, **fields: object) -> None:
        payload = event_payload(kind, message, self.clock.now(), self.tz, dict(fields))
        self.conn.publish(Outbound(self.topics.events, to_json(payload), qos=1), "reliable")

    def _own_event(self, kind: str, message: str, **fields: object) -> None:
        """An event of the link's own (link lost, bookings, ...): to the grid and into the events table."""
        self.event(kind, message, **fields)
        self._record(kind, message, dict(fields))

    def _record(self, kind: str, message: str, fields: dict) -> None:
        if self.recorder is not None:  # the daemon's store (queued, off the hot path)
            try:
                self.recorder.event(self.clock.now(), kind, message, fields)
            except Exception:
                log.exception("grid link: storing event %s failed", kind)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self.store = DispatchMemory(await self._loop.run_in_executor(self._db, self._open))
        restore_error = None
        try:
            stored = await self._db_call(self.store.load)
        except StorageError as exc:  # control goes on with what the grid sends from now on
            log.error("dispatch store unavailable at start, no commands restored: %s", exc)
            stored, restore_error = [], str(exc)
        now = self.clock.now()
        with self._lock:
            self.book.restore(stored)
            self.intake.store = self.store
            self.intake.remember_book()
            transitions = self.book.update(now)
            self.watch = LinkWatch(self.m.link_loss_s, now)
        self._emit(transitions, now)
        self.conn.start()
        if restore_error is not None:
            self._restore_pending, self._restore_tried_s = True, now
            self._own_event("dispatch_store_error", f"open commands not restored at start: {restore_error}")
        self._tasks = [asyncio.create_task(self._consume(), name="youxu-dispatch-in"),
                       asyncio.create_task(self._housekeeping(), name="youxu-dispatch-housekeeping")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        offline = Outbound(self.topics.status,
                           to_json(status_payload("offline", self.clock.now(), self.tz, self.version)), retain=True)
        await asyncio.get_running_loop().run_in_executor(None, lambda: self.conn.stop(final=offline))
        store = self.store
        if store is not None and not await self._db_call(store.flush):  # with this turn's writes (`_db_call`)
            log.error("%d dispatch records not written at shutdown (database unavailable: %s); commands "
                      "accepted meanwhile are forgotten", store.backlog, store.last_error)
        await asyncio.get_running_loop().run_in_executor(None, lambda: self._db.shutdown(wait=True))
        if self._owns_store and store is not None:
            store.close()

    # ---- state for others -----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.conn.connected

    @property
    def link_lost(self) -> bool:
        return self.watch.lost

    def stats(self) -> dict[str, Any]:
        """For metrics: broker connection, queues, link state, commands held."""
        st = self.conn.stats
        return {"connected": self.conn.connected, "protocol": st.protocol, "connects": st.connects,
                "disconnects": st.disconnects, "published": st.published, "received": st.received,
                "telemetry_dropped": st.telemetry_dropped, "queued": self.conn.queued(),
                "acks_published": self.acks_published, "link_lost": self.watch.lost,
                "fallback": self.watch.fallback, "commands_open": len(self.book.open),
                "default_command_id": self.book.default.command_id if self.book.default else None}

    def commands_view(self) -> list[dict[str, Any]]:
        """Commands in force and recent ones, newest first, each with the acks sent for it (any thread)."""
        with self._lock:  # copied under the lock, formatted outside it
            held = set(self.book.open) | ({self.book.default.command_id} if self.book.default else set())
            items = self.command_log.snapshot()
        return self.command_log.view(items, held, self.tz)

    def _remember(self, command_id: str | None, rec: CommandRecord | None = None,
                  ack: dict[str, Any] | None = None) -> None:
        with self._lock:
            held = set(self.book.open) | ({self.book.default.command_id} if self.book.default else set())
            self.command_log.remember(command_id, rec, ack, held)

    def _birth(self) -> Outbound:
        payload = status_payload(self._status, self.clock.now(), self.tz, self.version)
        return Outbound(self.topics.status, to_json(payload), qos=1, retain=True)

    # ---- plumbing -------------------------------------------------------------------------------
    def _from_network(self, msg: Inbound) -> None:
        """paho's thread: hand the message to the asyncio side."""
        assert self._loop is not None and self._inbox is not None
        self._loop.call_soon_threadsafe(self._inbox.put_nowait, msg)

    async def _db_call(self, fn: Callable[..., Any], *args: Any, write_follows: bool = False) -> Any:
        """`fn(*args)` on the store's thread. `write_follows`: the caller writes right after (a batch's
        lookup before its accept), so what memory has pending waits for that transaction."""
        assert self._loop is not None
        self._flush_writes()  # the store's one worker runs in order: what was written before is read back
        return await asyncio.wrap_future(self._enqueue(fn, *args, write_follows=write_follows), loop=self._loop)

    def _enqueue(self, fn: Callable[..., Any], *args: Any, write_follows: bool = False) -> Future[Any]:
        with self._db_lock:
            self._db_waiting += 1
        try:
            return self._db.submit(self._db_run, fn, args, write_follows)
        except RuntimeError:  # shut down
            with self._db_lock:
                self._db_waiting -= 1
            raise

    def _db_run(self, fn: Callable[..., Any], args: tuple[Any, ...], write_follows: bool) -> Any:
        """On the store's thread: `fn`, then, if no other call waits behind it, what the dispatch memory
        has pending (state changes, acks) is committed at once; else the next call carries it (a batch's
        accepts: one transaction for all, a group commit)."""
        with self._db_lock:
            self._db_waiting -= 1
        try:
            return fn(*args)
        finally:
            store = self.store
            if not write_follows and store is not None and store.pending and self._db_waiting == 0:
                try:
                    store.flush()
                except Exception:
                    log.exception("dispatch store: writing pending records failed")

    def _db_submit(self, fn: Callable[..., Any], *args: Any) -> None:
        def done(f: Future[Any]) -> None:
            if f.exception() is not None:
                log.error("dispatch store: %s failed: %s", getattr(fn, "__name__", fn), f.exception())

        try:
            self._enqueue(fn, *args).add_done_callback(done)
        except RuntimeError:  # shut down
            log.warning("dispatch store closed; %s not persisted", getattr(fn, "__name__", fn))

    def _publish_ack(self, ack: Ack, rec: CommandRecord | None = None, *, response_topic: str | None = None,
                     correlation: bytes | None = None) -> None:
        payload = ack.payload(self.tz)
        data = to_json(payload)
        self.conn.publish(Outbound(self.topics.ack, data, qos=1), "reliable")
        self._remember(ack.command_id, rec, payload)
        rt = response_topic or (rec.response_topic if rec else None)
        if rt:
            corr = correlation if correlation is not None else (rec.correlation_data if rec else None)
            self.conn.publish(Outbound(rt, data, qos=1, correlation_data=corr), "reliable")
        self.acks_published += 1
        if self.store is not None:
            self._write(ack=StoredAck(ack.command_id, ack.status, ack.reason, ack.at_s, data.decode()))

    def _save(self, rec: CommandRecord, now_s: float) -> None:
        if self.store is None:  # not started: nothing was accepted that needs saving
            return
        self._write(command=rec.to_stored(now_s))

    def _write(self, command: StoredCommand | None = None, ack: StoredAck | None = None) -> None:
        """Queue a command's new state or an ack for the dispatch memory: everything queued in one turn
        of the loop goes to it at once (a command saved twice in it, as it was last), and from there
        into the database with the next accept's transaction or the next flush."""
        with self._writes_lock:
            if command is not None:
                self._pending_commands.pop(command.command_id, None)
                self._pending_commands[command.command_id] = command
            if ack is not None:
                self._pending_acks.append(ack)
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        loop = self._loop
        if loop is None or loop.is_closed():
            self._flush_writes()
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            loop.call_soon(self._flush_writes)
        else:
            loop.call_soon_threadsafe(self._flush_writes)

    def _flush_writes(self) -> None:
        with self._writes_lock:
            commands, acks = list(self._pending_commands.values()), self._pending_acks
            self._pending_commands, self._pending_acks, self._flush_scheduled = {}, [], False
        if self.store is not None and (commands or acks):
            self._db_submit(self.store.write_behind, commands, acks)

    def _emit(self, transitions: list[Transition], now_s: float) -> None:
        for rec, ack in transitions:
            self._save(rec, now_s)
            self._remember(rec.command_id, rec)
            if ack is not None and (rec.cmd.response_required or ack.status == "rejected"):
                self._publish_ack(ack, rec)

    def _link_event(self, kind: str, now_s: float) -> None:
        d = self.book.default_command()
        silent = self.watch.silent_s(now_s)
        if kind == LINK_LOST:
            applies = (f"default {d.command_id}" if d else
                       f"fallback {self.m.fallback_limit_kw:g} kW" if self.m.fallback_limit_kw else "no fallback limit")
            self._own_event(LINK_LOST, f"no message from the grid for {silent:.0f} s; applying {applies}",
                       silent_s=round(silent, 1), default_command_id=d.command_id if d else None,
                       fallback_limit_kw=self.m.fallback_limit_kw)
        elif kind == LINK_RESTORED:
            self._own_event(LINK_RESTORED, "the grid is heard again; the default applies until a fresh command")
        elif kind == FALLBACK_ENDED:
            self._own_event(FALLBACK_ENDED, "fresh dispatch command accepted; the fallback no longer applies")

    def _check_link(self, now_s: float) -> None:
        with self._lock:
            change = self.watch.check(now_s)
        if change:
            log.warning("grid link lost: nothing heard for %.0f s", self.watch.silent_s(now_s))
            self._link_event(change, now_s)

    def _heard(self, now_s: float, *, command: bool) -> None:
        with self._lock:
            changes = self.watch.command_accepted(now_s) if command else [self.watch.heard(now_s)]
        for c in changes:
            if c:
                self._link_event(c, now_s)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                now = self.clock.now()
                with self._lock:
                    transitions = self.book.update(now)
                self._emit(transitions, now)
                self._check_link(now)
                self._write_behind()
            except Exception:
                log.exception("grid link housekeeping failed")

    def _write_behind(self) -> None:
        """While dispatch records wait for the database, try to write them; say so when they are in."""
        store = self.store
        if store is None:
            return
        backlog = store.backlog
        if backlog == 0 and self._store_backlog > 0:
            self._own_event("dispatch_store_restored", "dispatch records held in memory are in the database again",
                            records=store.written_late)
        self._store_backlog = backlog
        now = self.clock.now()
        if self._restore_pending and not self._draining and now - self._restore_tried_s >= RESTORE_RETRY_S:
            self._restore_tried_s = now
            self._submit_restore(store)
        steady = time.monotonic()
        if store.needs_write() and not self._draining and steady >= self._drain_next_s:
            self._draining = True

            def done(f: Future[Any]) -> None:  # back off while the database stays away (its worker is shared)
                self._draining = False
                ok = f.exception() is None and bool(f.result())
                self._drain_wait_s = HOUSEKEEPING_S if ok else min(DRAIN_RETRY_MAX_S, self._drain_wait_s * 2)
                self._drain_next_s = time.monotonic() + (0.0 if ok else self._drain_wait_s)

            try:
                self._enqueue(store.flush).add_done_callback(done)
            except RuntimeError:  # shut down
                self._draining = False

    async def _consume(self) -> None:
        assert self._inbox is not None
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < MAX_BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            try:
                await self._handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("grid link: messages on %s failed", sorted({m.topic for m in batch}))
            finally:
                for msg in batch:
                    self.conn.ack(msg)

    async def _handle(self, batch: list[Inbound]) -> None:
        """The messages in arrival order; consecutive commands together."""
        commands: list[Incoming] = []
        for msg in batch:
            kind, site, pile = classify_topic(msg.topic)
            if kind in ("dispatch", "default"):
                commands.append(Incoming(msg, kind, site))
                continue
            await self._on_commands(commands)
            commands = []
            try:
                if kind == "heartbeat":
                    self._on_heartbeat(msg)
                elif kind == "ambient":
                    self._on_ambient(msg)
                elif kind == "session_request" and pile is not None:
                    self._on_booking(msg, pile)
            except Exception:
                log.exception("grid link: message on %s failed", msg.topic)
        await self._on_commands(commands)

    def _submit_restore(self, store: DispatchMemory) -> None:
        """Read the open commands that the database could not give at start; admit them once it can."""
        loop = self._loop
        assert loop is not None

        def done(f: Future[Any]) -> None:
            if f.exception() is None:
                loop.call_soon_threadsafe(self._late_restore, f.result())

        with contextlib.suppress(RuntimeError):  # shut down
            self._enqueue(store.load).add_done_callback(done)

    def _late_restore(self, stored: list[StoredCommand]) -> None:
        """The commands in force before the start, read late: those the book does not know join it (a
        default only if none arrived meanwhile); the tightest limit in force wins as always."""
        if not self._restore_pending:
            return
        self._restore_pending = False
        now = self.clock.now()
        with self._lock:
            known = [s for s in stored if not s.final and self.book.get(s.command_id) is None
                     and not (s.role == "default" and self.book.default is not None)]
            self.book.restore(known)
            self.intake.remember_book()
            transitions = self.book.update(now)
        self._emit(transitions, now)
        log.warning("dispatch store reachable: %d open commands restored late", len(known))
        self._own_event("dispatch_store_restored", f"{len(known)} open commands restored from the database",
                        restored=[s.command_id for s in known])

    # ---- incoming ----------------------------------------------------------------------------
    def _reject(self, rej: Rejection, msg: Inbound, now_s: float) -> None:
        log.info("dispatch %s rejected: %s %s %s", rej.command_id, rej.reason, rej.field, rej.detail)
        ack = Ack(rej.command_id, "rejected", now_s, reason=rej.reason, field=rej.field, detail=rej.detail)
        self._publish_ack(ack, response_topic=msg.response_topic, correlation=msg.correlation_data)

    async def _on_commands(self, items: list[Incoming]) -> None:
        if not items:
            return
        now = self.clock.now()
        while items:
            try:
                verdicts = await self.intake.commands(items, now)
            except Exception:  # something in the batch the batch cannot take: each on its own, as it fares
                if len(items) == 1:
                    raise
                log.exception("grid link: a batch of %d commands failed; one at a time", len(items))
                for it in items:
                    try:
                        await self._on_commands([it])
                    except Exception:
                        log.exception("grid link: message on %s failed", it.msg.topic)
                return
            for it, v in zip(items, verdicts, strict=False):
                try:
                    self._answer(it.msg, v, now)
                except Exception:  # one answer that cannot be sent never holds up the others
                    log.exception("grid link: answering the message on %s failed", it.msg.topic)
            items = items[len(verdicts):]  # from a copy of a command in the batch on: answered after it

    def _answer(self, msg: Inbound, v: Verdict, now: float) -> None:
        if v.rejection is not None:
            self._reject(v.rejection, msg, now)
        if v.previous_ack is not None:
            data = to_json(v.previous_ack)
            self.conn.publish(Outbound(self.topics.ack, data, qos=1), "reliable")
            if msg.response_topic:
                self.conn.publish(Outbound(msg.response_topic, data, qos=1, correlation_data=msg.correlation_data),
                                  "reliable")
        if v.store_error:
            self._own_event("dispatch_store_error", v.store_error)
        self._emit(v.transitions, now)
        if v.heard:
            self._heard(now, command=(v.heard == "command"))

    def _on_heartbeat(self, msg: Inbound) -> None:
        now = self.clock.now()
        obj = decode_json_object(msg.payload)
        try:
            if isinstance(obj, Rejection):
                raise ValueError(obj.detail)
            at_s = parse_rfc3339(obj.get("at"))
        except ValueError as exc:
            log.debug("ignoring heartbeat: %s", exc)
            return
        if msg.retain or abs(at_s - now) > self.m.clock_skew_s:
            log.warning("ignoring heartbeat at %s (retained or outside the clock skew)", obj.get("at"))
            return
        self._heard(now, command=False)

    def _on_ambient(self, msg: Inbound) -> None:
        """`{"at", "ambient_c"}` from the grid: the latest reading, kept by when it was taken."""
        obj = decode_json_object(msg.payload)
        try:
            if isinstance(obj, Rejection):
                raise ValueError(obj.detail)
            at_s = parse_rfc3339(obj.get("at"))
            c = obj.get("ambient_c")
            if isinstance(c, bool) or not isinstance(c, int | float) or not -60.0 <= float(c) <= 60.0:
                raise ValueError(f"ambient_c must be a number of °C between -60 and 60 (got {c!r})")
        except ValueError as exc:
            log.warning("ignoring ambient: %s", exc)
            return
        if at_s - self.clock.now() > self.m.clock_skew_s:
            log.warning("ignoring ambient at %s (in the future beyond the clock skew)", obj.get("at"))
            return
        if self._ambient is None or at_s >= self._ambient[0]:
            self._ambient = (at_s, float(c))

    def ambient(self) -> tuple[float, float] | None:
        return self._ambient

    def _on_booking(self, msg: Inbound, pile_id: str) -> None:
        now = self.clock.now()
        res = parse_booking(msg.payload, pile_id, self.piles, now, strict=self.m.strict)
        if isinstance(res, Rejection):
            kind, message = "booking_rejected", f"booking for {pile_id} refused: {res.field}: {res.detail}"
            fields: dict[str, object] = {"pile": pile_id, "reason": res.reason, "field": res.field}
        else:
            self.push_booking(res)
            kind, message = "booking_accepted", f"booking for {pile_id} accepted"
            fields = {"pile": pile_id, "energy_kwh": res.energy_kwh, "priority": res.priority}
        payload = event_payload(kind, message, now, self.tz, fields)
        self.conn.publish(Outbound(self.topics.events, to_json(payload), qos=1), "reliable")
        self._record(kind, message, fields)
        if msg.response_topic:
            self.conn.publish(Outbound(msg.response_topic, to_json(payload), qos=1,
                                       correlation_data=msg.correlation_data), "reliable")

    # ---- derived from ticks ----------------------------------------------------------------------
    def _alarms(self, r: TickReport) -> None:
        for alarm in self.alarms.observe(r):
            if alarm.kind in ("safe_mode", "safe_mode_cleared"):
                # the status topic follows the tick; the event itself comes from the loop, which says why
                self._status = "safe_mode" if r.safe_mode else "online"
                self.conn.publish(self._birth(), "reliable")
                continue
            self._own_event(alarm.kind, alarm.message, **alarm.fields)

    def _pile_states(self, r: TickReport) -> None:
        for pid in r.pile_status:
            state = pile_state_payload(pid, r, self.tz)
            if pile_state_changed(self._pile_sent.get(pid), state):
                self._pile_sent[pid] = state
                self.conn.publish(Outbound(self.topics.pile_state(pid), to_json(state), qos=0, retain=True), "state")
