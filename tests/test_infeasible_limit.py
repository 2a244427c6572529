"""An infeasible limit is applied as closely as physics allows and acked `applied` with reason
INFEASIBLE and `achieved_kw` (contract section 4), as soon as the site has done all it can: a
50 kW site limit with 100 kW of household load, through `youxu sim serve` and `youxu run`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.dispatch_builders import command, report
from tests.fixtures_mqtt import Broker
from tests.site_processes import (
    RunningSite,
    logs_on_failure,
    mosquitto_pub_binary,
    readings_until,
    start_site,
)
from youxu.controller.grid.commands import INFEASIBLE, CommandBook, CommandRecord
from youxu.controller.grid.dispatch_schema import DispatchCommand, parse_rfc3339, validate_command
from youxu.controller.gridlink import TickReport

BASE_KW = 100.0  # the scenario's households
GRACE_S = 30.0  # mqtt.apply_grace_s, the config default


@pytest.fixture(scope="module")
def pub_binary() -> str:
    b = mosquitto_pub_binary()
    if b is None:
        pytest.skip("mosquitto_pub not found (apt-get install mosquitto-clients, or set MOSQUITTO_PUB=/path)")
    return b


@pytest.fixture
async def site(mqtt_broker: Broker, tmp_path: Path, pub_binary: str) -> AsyncIterator[RunningSite]:
    s = await start_site(tmp_path, mqtt_broker.port, f"infeasible-{time.monotonic_ns() % 10**9}", pub_binary,
                         base_kw=BASE_KW, control={"period_s": 1.0, "default_dwell_s": 3600.0,
                                                   "default_energy_kwh": 6.5},
                         mqtt_cfg={"telemetry_period_s": 1.0, "apply_grace_s": GRACE_S})
    yield s
    await s.close()


async def test_infeasible_site_limit_is_acked_applied_infeasible_once_the_piles_are_off(site: RunningSite) -> None:
    assert site.grid is not None and site.probe is not None
    with logs_on_failure(site):
        await site.probe.until(lambda kw: kw > BASE_KW + 30.0, 20.0, "charging above 130 kW")
        cmd = command(time.time(), import_max_kw=50.0, minutes=10)
        cid = cmd["command_id"]
        await site.publish("dispatch", cmd)
        received = await site.grid.until_ack(cid, "received", 5.0)
        applied = await site.grid.until_ack(cid, "applied", GRACE_S + 15.0)
        assert applied["reason"] == "INFEASIBLE"
        assert applied["achieved_kw"] == pytest.approx(BASE_KW, abs=2.0)  # the households: every pile off
        t_received, t_applied = parse_rfc3339(received["at"]), parse_rfc3339(applied["at"])
        # (acks carry milliseconds, readings the full tick time)
        ticks = [r for r in await readings_until(site.db, t_applied + 0.001) if r.t_s >= t_received - 0.001]
        # judged on the tick that measured the piles off, not after the grace time
        assert t_applied - t_received < GRACE_S / 2, (received, applied)
        assert 1 <= len(ticks) <= 5, [(r.t_s - t_received, r.total_kw) for r in ticks]
        assert ticks[-1].total_kw == pytest.approx(applied["achieved_kw"], abs=0.01)


# ---- the rule, in the command book (pure) ----------------------------------------------------------
T0 = 1_782_900_000.0


def _limit(book: CommandBook, import_max_kw: float, **kw: object) -> str:
    raw = command(T0, import_max_kw=import_max_kw, **kw)  # type: ignore[arg-type]
    c = validate_command(json.dumps(raw), site_id="s")
    assert isinstance(c, DispatchCommand), c
    book.admit(CommandRecord(cmd=c, role="dispatch", state="received", received_s=T0, payload=json.dumps(raw),
                             end_s=c.end_s), T0)
    return c.command_id


def _tick(t_s: float, total_kw: float, told_kw: float, draws_kw: float, **kw: object) -> TickReport:
    """Two piles told `told_kw` each and drawing `draws_kw` each, households the rest."""
    r = report(t_s, total_kw, 2 * draws_kw, pile_status={"P001": "charging", "P002": "charging"})
    return replace(r, setpoints_kw={"P001": told_kw, "P002": told_kw},
                   pile_power_kw={"P001": draws_kw, "P002": draws_kw}, **kw)  # type: ignore[arg-type]


def test_a_settled_site_outside_a_limit_is_infeasible_at_once_an_unsettled_one_waits() -> None:
    book = CommandBook(apply_grace_s=GRACE_S)
    _limit(book, 50.0)
    assert book.check_applied(_tick(T0 + 1, 114.0, 0.0, 7.0, settled=False)) == []  # piles still ramping down
    out = book.check_applied(_tick(T0 + 2, 100.0, 0.0, 0.0, settled=True))
    assert [(a.status, a.reason, a.achieved_kw) for _r, a in out] == [("applied", INFEASIBLE, 100.0)]


def test_settled_within_tolerance_but_projected_within_the_limit_is_not_infeasible() -> None:
    """Cars a little over what they were told (within the pile tolerance) keep the site just over the
    limit for a moment; the decision projects the site within it: wait, it gets there."""
    book = CommandBook(apply_grace_s=GRACE_S)
    cid = _limit(book, 110.0)
    assert book.check_applied(_tick(T0 + 1, 110.8, 4.0, 4.4, settled=True)) == []  # projected 110.0
    out = book.check_applied(_tick(T0 + 2, 108.0, 4.0, 4.0, settled=True))
    assert [(a.command_id, a.reason, a.achieved_kw) for _r, a in out] == [(cid, None, 108.0)]


def test_a_settled_tick_from_before_the_command_judges_nothing() -> None:
    book = CommandBook(apply_grace_s=GRACE_S)
    _limit(book, 50.0)
    assert book.check_applied(replace(report(T0 - 0.5, 100.0, 0.0), settled=True)) == []


def test_assumed_values_are_never_an_achievement() -> None:
    """Meter unread: `total_kw` is an assumption; a pile unread: `ev_kw` is. Neither is acked."""
    book = CommandBook(apply_grace_s=GRACE_S)
    site = _limit(book, 50.0)
    ev = _limit(book, 10.0, scope="ev", issuer="other")
    late = T0 + GRACE_S + 5
    assert book.check_applied(replace(report(late, 100.0, 0.0), meter_ok=False, unreachable_piles=("P001",))) == []
    out = book.check_applied(replace(report(late + 1, 40.0, 5.0), meter_ok=False))
    assert [(a.command_id, a.reason) for _r, a in out] == [(ev, None)]
    out = book.check_applied(report(late + 2, 40.0, 5.0))
    assert [(a.command_id, a.reason) for _r, a in out] == [(site, None)]
