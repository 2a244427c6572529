"""Pile failsafe: each pile's own fallback for when youxu stops talking to it.

At start-up `FailsafeKeeper.program` writes every pile's safe current (the site's
`failsafe_a`) and communication timeout where the pile lets us, reads them back, and checks
the ones set in a vendor tool (Alfen's safe current). `run` then sends each pile its
keep-alive at the profile's interval: a register write (Vestel, simulator), the timeout
written again (KEBA), the setpoint written again before its validity ends (Alfen) or a read
(ABB). If youxu dies, the keep-alives stop and every pile falls back to its safe current
after its timeout, so the transformer only carries the failsafe total.

The keep-alive proves the control loop is alive, not just the process: with `stale_s`, the
keeper stops keeping piles alive when the loop has not called `feed()` for that long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from youxu.drivers.clock import Clock, RealClock
from youxu.drivers.pile import ModbusPile
from youxu.drivers.profiles import Failsafe
from youxu.drivers.transport import DeviceError

log = logging.getLogger(__name__)

MATCH_TOL_A = 0.2  # read-back tolerance for currents
MATCH_TOL_KW = 0.1
MATCH_TOL_S = 0.5


def fallback_active(now_s: float, last_contact_s: float, timeout_s: float) -> bool:
    """True when a pile honouring a communication timeout has fallen back to its safe value:
    nothing heard for longer than `timeout_s` (a timeout of 0 means the failsafe is off).
    Pure, for simulated piles."""
    return timeout_s > 0 and now_s - last_contact_s > timeout_s


@dataclass
class FailsafeState:
    """One pile as the keeper sees it."""

    pile_id: str
    pile: ModbusPile
    safe_kw: float
    spec: Failsafe | None
    programmed: bool = False
    safe_a: float | None = None  # what the pile falls back to, as read back (A per phase)
    safe_kw_read: float | None = None  # the same for piles whose safe value is a power
    timeout_s: float | None = None
    warnings: list[str] = field(default_factory=list)
    keepalives: int = 0
    failures: int = 0
    last_error: str = ""
    next_due_s: float = 0.0

    @property
    def interval_s(self) -> float | None:
        ka = self.spec.keepalive if self.spec is not None else None
        return None if ka is None else ka.interval_s

    def report(self) -> dict[str, Any]:
        return {
            "pile": self.pile_id, "profile": self.pile.profile.name, "programmed": self.programmed,
            "safe_a": self.safe_a, "safe_kw": self.safe_kw_read, "timeout_s": self.timeout_s,
            "keepalive_s": self.interval_s, "keepalives": self.keepalives, "failures": self.failures,
            "last_error": self.last_error, "warnings": list(self.warnings),
        }


class FailsafeKeeper:
    """Programs the piles' failsafe at start-up and keeps them alive.

    The daemon: `keeper = FailsafeKeeper(clock, stale_s=...)`; for every pile
    `await keeper.program(pile, safe_kw, pile_id)`; then
    `asyncio.create_task(keeper.run(stop_event))`, `keeper.feed()` once per control tick,
    and on shutdown `stop_event.set()` and `await keeper.apply_safe_setpoints()`.
    """

    def __init__(self, clock: Clock | None = None, stale_s: float | None = None,
                 timeout_s: float | None = None) -> None:
        self.clock: Clock = clock or RealClock()
        self.stale_s = stale_s
        self.timeout_s = timeout_s  # per request; default: each pile's own
        self.states: dict[str, FailsafeState] = {}
        self.last_feed_s: float | None = None
        self._stale_logged = False

    # ---- start-up --------------------------------------------------------------------
    async def program(self, pile: ModbusPile, safe_kw: float, pile_id: str | None = None) -> FailsafeState:
        """Write (or check) the pile's safe current and timeout; remember it for keep-alives.
        Never raises for device problems: they end up in the state's `warnings`, and an
        unprogrammed pile is tried again at its next keep-alive."""
        pid = pile_id or pile.label
        st = FailsafeState(pid, pile, max(safe_kw, 0.0), pile.profile.failsafe)
        self.states[pid] = st
        if st.spec is None:
            st.warnings.append(f"{pid} ({pile.profile.name}): no failsafe registers; if youxu stops, the pile "
                               "keeps its last setpoint (configure a fallback in the pile itself)")
            return st
        await self._program(st)
        st.next_due_s = self.clock.now() + (st.interval_s or 0.0)
        return st

    async def _program(self, st: FailsafeState) -> None:
        spec, pile = st.spec, st.pile
        assert spec is not None
        st.warnings.clear()
        try:
            if spec.current is not None:
                await self._program_current(st)
            if spec.timeout is not None:
                await self._program_timeout(st)
            else:
                st.timeout_s = spec.timeout_s
            st.programmed = True
            st.last_error = ""
        except DeviceError as exc:
            st.programmed = False
            st.failures += 1
            st.last_error = str(exc)
            st.warnings.append(f"{st.pile_id} ({pile.profile.name}): failsafe not programmed: {exc}")
            log.warning("%s: failsafe not programmed: %s", st.pile_id, exc)

    async def _program_current(self, st: FailsafeState) -> None:
        spec, pile = st.spec, st.pile
        assert spec is not None and spec.current is not None
        reg = spec.current
        is_current = reg.canonical_unit == "A"
        want = pile.register_limit(pile.kw_to_a(st.safe_kw), reg, as_current=is_current)  # never above it
        if reg.writable:
            await pile.write_canonical(reg, want, self.timeout_s)
            got = await pile.read_register(spec.current_readback or reg, self.timeout_s)
        else:
            got = await pile.read_register(reg, self.timeout_s)
        if is_current:
            st.safe_a, st.safe_kw_read = got, pile.a_to_kw(got)
        else:
            st.safe_kw_read, st.safe_a = got, pile.kw_to_a(got)
        tol = MATCH_TOL_A if is_current else MATCH_TOL_KW
        unit = "A" if is_current else "kW"
        if not reg.writable and got > want + tol:
            st.warnings.append(
                f"{st.pile_id} ({pile.profile.name}): the pile's own safe current is {got:.1f} {unit}, above the "
                f"site's failsafe {want:.1f} {unit}; lower it in the vendor's installer tool")
        elif reg.writable and abs(got - want) > tol:
            st.warnings.append(f"{st.pile_id} ({pile.profile.name}): wrote failsafe {want:.1f} {unit} but the pile "
                               f"reports {got:.1f} {unit}")
        spec_min = pile.setpoint_spec.min_a
        amps = got if is_current else pile.kw_to_a(got)
        if 0 < amps < spec_min - MATCH_TOL_A:
            st.warnings.append(f"{st.pile_id}: failsafe {amps:.1f} A is below the pile's minimum {spec_min:.0f} A; "
                               "cars may stop instead of charging slowly")

    async def _program_timeout(self, st: FailsafeState) -> None:
        spec, pile = st.spec, st.pile
        assert spec is not None and spec.timeout is not None
        if spec.timeout.writable:
            await pile.write_canonical(spec.timeout, spec.timeout_s, self.timeout_s)
            got = await pile.read_register(spec.timeout_readback or spec.timeout, self.timeout_s)
        else:
            got = await pile.read_register(spec.timeout, self.timeout_s)
        st.timeout_s = got
        if abs(got - spec.timeout_s) > MATCH_TOL_S:
            st.warnings.append(f"{st.pile_id} ({pile.profile.name}): failsafe timeout is {got:.0f} s, "
                               f"expected {spec.timeout_s:.0f} s")

    # ---- keep-alive ------------------------------------------------------------------
    def feed(self) -> None:
        """The control loop is alive (call once per tick when `stale_s` is set)."""
        self.last_feed_s = self.clock.now()
        self._stale_logged = False

    def loop_stale(self, now_s: float) -> bool:
        if self.stale_s is None or self.last_feed_s is None:
            return False
        return now_s - self.last_feed_s > self.stale_s

    async def keepalive(self, st: FailsafeState) -> None:
        """One keep-alive for one pile (programs it first if that failed before)."""
        spec, pile = st.spec, st.pile
        if spec is None or spec.keepalive is None:
            return
        if not st.programmed:
            await self._program(st)
            if not st.programmed:
                return
        ka = spec.keepalive
        try:
            if ka.action == "write":
                assert ka.reg is not None
                await pile.write_raw(ka.reg, ka.value, self.timeout_s)
            elif ka.action == "rewrite_timeout":
                assert spec.timeout is not None
                await pile.write_canonical(spec.timeout, spec.timeout_s, self.timeout_s)
            elif ka.action == "rewrite_setpoint":
                await pile.rewrite_setpoint(self.timeout_s)
            else:
                assert ka.reg is not None
                await pile.read_register(ka.reg, self.timeout_s)
            st.keepalives += 1
            st.last_error = ""
        except DeviceError as exc:
            st.failures += 1
            st.last_error = str(exc)
            log.warning("%s: keep-alive failed: %s", st.pile_id, exc)

    async def tick(self) -> float | None:
        """Send the keep-alives that are due; return when the next one is (clock seconds)."""
        now = self.clock.now()
        due = [st for st in self.states.values() if st.interval_s is not None and st.next_due_s <= now]
        if due and self.loop_stale(now):
            if not self._stale_logged:
                log.error("control loop silent for %.0f s: no keep-alives, piles fall back to their failsafe",
                          now - (self.last_feed_s or now))
                self._stale_logged = True
            for st in due:
                st.next_due_s = now + (st.interval_s or 0.0)
        elif due:
            await asyncio.gather(*(self.keepalive(st) for st in due))
            for st in due:
                st.next_due_s = now + (st.interval_s or 0.0)
        pending = [st.next_due_s for st in self.states.values() if st.interval_s is not None]
        return min(pending) if pending else None

    async def run(self, stop_event: asyncio.Event) -> None:
        """Keep every pile alive at its interval until `stop_event` is set."""
        while not stop_event.is_set():
            next_s = await self.tick()
            if next_s is None:
                await stop_event.wait()
                return
            sleeper = asyncio.ensure_future(self.clock.sleep_until(next_s))
            stopper = asyncio.ensure_future(stop_event.wait())
            try:
                await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (sleeper, stopper):
                    t.cancel()
                await asyncio.gather(sleeper, stopper, return_exceptions=True)

    async def apply_safe_setpoints(self) -> dict[str, str]:
        """Write every pile's safe power as its setpoint (on shutdown); return failures."""
        states = list(self.states.values())
        results = await asyncio.gather(*(st.pile.write_setpoint_kw(st.safe_kw, self.timeout_s) for st in states),
                                       return_exceptions=True)
        return {st.pile_id: str(r) for st, r in zip(states, results, strict=True) if isinstance(r, BaseException)}

    def report(self) -> list[dict[str, Any]]:
        return [st.report() for st in self.states.values()]

    def warnings(self) -> list[str]:
        return [w for st in self.states.values() for w in st.warnings]


def failsafe_summary(states: Iterable[FailsafeState]) -> str:
    """One line for logs: how many piles are programmed and kept alive."""
    sts = list(states)
    ok = sum(st.programmed for st in sts)
    kept = sum(st.interval_s is not None for st in sts)
    return f"failsafe: {ok}/{len(sts)} piles programmed, {kept} kept alive"
