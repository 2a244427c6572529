"""deploy/grafana/youxu-dashboard.json: valid JSON whose every query names metrics a real daemon
exports (collected from LoopMetrics on a daemon ticking against simulated devices, with a store and
an MQTT grid link on a real broker)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.fixtures_mqtt import Broker
from tests.scenarios import small_site
from youxu.controller.daemon import Daemon
from youxu.controller.ops.metrics import LoopMetrics
from youxu.controller.siteconfig import parse_site_config
from youxu.controller.store.storage import Store
from youxu.drivers.clock import VirtualClock
from youxu.sim.devices import SimulatedSite
from youxu.sim.ports import free_port
from youxu.sim.site_config import scenario_site_config

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "youxu-dashboard.json"
METRIC = re.compile(r"\byouxu_[a-z0-9_]+\b")


async def exported_names(tmp_path: Path, broker: Broker) -> set[str]:
    sc = small_site(n_piles=3, base_kw=100.0, limit_kw=130.0)
    clock = VirtualClock(sc.start.timestamp())
    site = SimulatedSite(sc, clock)
    await site.start(port=free_port(), layout="units")
    raw = scenario_site_config(sc, site.addresses, site_id="grafana", mqtt_url=broker.url,
                               control={"period_s": 1.0, "budget_ms": 2000.0, "strategy": "mpc", "failsafe": False,
                                        "plan_in_thread": False})
    store = Store(f"sqlite:///{tmp_path / 'y.sqlite'}", flush_s=0.05)
    daemon = Daemon.build(parse_site_config(raw, "grafana config"), clock=clock, store=store)
    metrics = LoopMetrics(daemon.loop)
    await daemon.link.start()
    try:
        for _ in range(3):
            await daemon.loop.tick()
            clock.set(clock.now() + 1.0)
        return {s.name for fam in metrics.registry.collect() for s in fam.samples}
    finally:
        await daemon.link.stop()
        daemon.close()
        await site.stop()


def queries(panel: dict) -> list[str]:
    return [t["expr"] for t in panel.get("targets", []) if t.get("expr")]


async def test_every_panel_queries_metrics_the_daemon_exports(tmp_path: Path, mqtt_broker: Broker) -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exported = await exported_names(tmp_path, mqtt_broker)
    assert "youxu_grid_link_connected" in exported and "youxu_tick_duration_seconds_bucket" in exported
    panels = dash["panels"]
    assert panels and len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        exprs = queries(p)
        assert exprs, f"panel {p['title']!r} has no query"
        named = {m for e in exprs for m in METRIC.findall(e)}
        assert named, f"panel {p['title']!r} names no youxu metric"
        unknown = named - exported
        assert not unknown, f"panel {p['title']!r}: {sorted(unknown)} not exported by the daemon"
    # what the dashboard is for, each on a panel of its own
    titles = " | ".join(p["title"].lower() for p in panels)
    for subject in ("load vs limit", "tick time percentiles", "deadline misses", "planner fallbacks", "device faults",
                    "grid link"):
        assert subject in titles, subject
    uses = " ".join(e for p in panels for e in queries(p))
    assert "histogram_quantile(0.99, sum by (le) (rate(youxu_tick_duration_seconds_bucket" in uses
