"""The API's small parts: the tokens file, the rate limit, and overrides in the fast loop on a
virtual clock (a pause ends by itself when its minutes are up)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.scenarios import small_site
from youxu.config.errors import UserError
from youxu.controller.daemon import Daemon
from youxu.controller.gridlink import NoGridLink, Override
from youxu.controller.ops.api_auth import Principal, RateLimit, Tokens, parse_tokens
from youxu.controller.siteconfig import parse_site_config
from youxu.drivers.clock import VirtualClock
from youxu.sim.devices import SimulatedSite
from youxu.sim.ports import free_port
from youxu.sim.site_config import scenario_site_config


def test_tokens_file_lines_comments_and_default_role() -> None:
    tokens = parse_tokens("# operators\nalice:aaaaaaaaaa:write  # the electrician\n\nbob:bbbbbbbbbb\n"
                          "carol:cccccccccc:read\n")
    assert tokens == {"aaaaaaaaaa": Principal("alice", "write"), "bbbbbbbbbb": Principal("bob", "read"),
                      "cccccccccc": Principal("carol", "read")}
    t = Tokens(tokens)
    assert t.who("Bearer aaaaaaaaaa") == Principal("alice", "write")
    assert t.who("bearer  bbbbbbbbbb ") == Principal("bob", "read")
    assert t.who("Basic aaaaaaaaaa") is None and t.who("Bearer aaaaaaaaab") is None and t.who(None) is None
    assert Principal("bob", "read").may("read") and not Principal("bob", "read").may("write")
    assert Principal("alice", "write").may("read")


@pytest.mark.parametrize(("text", "problem"), [
    ("alice:aaaaaaaaaa:admin", "line 1: role 'admin'"),
    ("x\nalice:short:read", "line 1: expected name:token:role; line 2: token of 'alice' is shorter"),
    ("a:aaaaaaaaaa\nb:aaaaaaaaaa", "line 2: token of 'b' is also 'a''s"),
])
def test_tokens_file_problems_name_the_line(text: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem.replace("(", r"\(")):
        parse_tokens(text)


def test_rate_limit_burst_then_rate_per_client() -> None:
    now = [0.0]
    rl = RateLimit(2.0, 3, now=lambda: now[0])
    assert [rl.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.take("a") == pytest.approx(0.5)
    assert rl.take("b") == 0.0  # another client has its own bucket
    now[0] = 0.5
    assert rl.take("a") == 0.0 and rl.take("a") > 0


async def test_pause_and_urgent_last_their_minutes_then_end_with_an_event() -> None:
    sc = small_site(n_piles=3, base_kw=50.0, limit_kw=200.0)
    clock = VirtualClock(sc.start.timestamp())
    site = SimulatedSite(sc, clock)
    await site.start(port=free_port(), layout="units")
    raw = scenario_site_config(sc, site.addresses, site_id="ov",
                               control={"period_s": 1.0, "budget_ms": 2000.0, "strategy": "fairshare",
                                        "failsafe": False})
    link = NoGridLink()
    daemon = Daemon.build(parse_site_config(raw, "override config"), clock=clock, link=link, with_store=False)
    loop = daemon.loop

    async def ticks(n: int) -> None:
        for _ in range(n):
            await loop.tick()
            clock.set(clock.now() + 1.0)

    try:
        await ticks(3)
        assert (loop.last_setpoints > 1.0).all()
        now = clock.now()
        link.push_override(Override("P01", "pause", now + 60.0, received_s=now, by="test"))
        link.push_override(Override("P02", "urgent", now + 120.0, received_s=now, by="test"))
        await ticks(2)
        assert loop.last_setpoints[0] == 0.0 and loop.last_setpoints[1] > 1.0
        assert loop.last_snapshot is not None and list(loop.last_snapshot.sessions.urgent) == [False, True, False]
        kinds = [(k, f.get("pile")) for k, _m, f in link.events]
        assert ("pile_override", "P01") in kinds and ("pile_override", "P02") in kinds
        await ticks(60)  # the pause's minute is up: the pile charges again, the urgent override still holds
        assert loop.last_setpoints[0] > 1.0
        assert ("pile_override_ended", "P01") in [(k, f.get("pile")) for k, _m, f in link.events]
        assert list(loop.last_snapshot.sessions.urgent) == [False, True, False]
        # the overrides are saved with the sessions and come back after a restart
        state = loop.tracker.to_state()
        assert set(state["overrides"]) == {"P02"}
        loop.tracker.overrides = {}
        loop.tracker.restore(state)
        assert loop.tracker.overrides["P02"].action == "urgent"
        link.push_override(Override("P02", "resume", clock.now(), received_s=clock.now()))
        await ticks(1)
        assert not loop.tracker.overrides and not np.any(loop.last_snapshot.sessions.urgent)
    finally:
        daemon.close()
        await site.stop()
