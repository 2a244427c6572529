"""The run report: charts and KPIs in one self-contained HTML page a newcomer can read."""

from __future__ import annotations

import base64
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from tests import contract
from tests.dispatch_builders import command
from tests.scenarios import small_site
from youxu.sim.engine import run_scenario
from youxu.sim.outputs import write_outputs
from youxu.sim.report import Buckets, pile_soc, tariff_bands
from youxu.sim.report_text import CHART_HELP, KPI_LABELS
from youxu.sim.scenario import Scenario

START = "2026-07-01T18:00:00+08:00"


def report_site() -> Scenario:
    """Four hours, six piles (three V2G), a TOU tariff with three levels, a dispatch limit and a setpoint."""
    sc = small_site(n_piles=6, base_kw=100.0, limit_kw=150.0, hours=4, v2g_every=2, start=START)
    t0 = sc.start.timestamp()
    raw = sc.model_dump(mode="json")
    raw["tariff"] = {"resolution_s": 3600, "import_yuan_per_kwh": [0.95, 0.6, 0.3, 0.3]}
    raw["dispatch"] = [
        {"at_s": 1800, "command": command(t0 + 1800, minutes=30, import_max_kw=125.0)},
        {"at_s": 9000, "command": command(t0 + 9000, kind="setpoint", scope="ev", minutes=20, setpoint_kw=20.0)},
    ]
    return Scenario.model_validate(raw)


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, str] = {}
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images[a["id"] or ""] = a["src"] or ""
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report")
    kpis = write_outputs(out, run_scenario(report_site(), "llf"))
    return out, kpis


def test_html_holds_both_charts_the_kpis_and_their_explanations(report: tuple[Path, dict]) -> None:
    out, kpis = report
    page = Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert set(page.images) == {"load", "served"}
    for src in page.images.values():
        assert src.startswith("data:image/png;base64,")
        w, h = png_size(base64.b64decode(src.split(",", 1)[1]))
        assert w >= 900 and h >= 250
    main_png = base64.b64decode(page.images["load"].split(",", 1)[1])
    assert main_png == (out / "report.png").read_bytes()
    table = {r[0]: r[1:] for r in page.rows if r}
    for key in contract.KPI_FIGURES:  # every figure of the contract is in the table, with its explanation
        label = KPI_LABELS[key]
        value = "—" if kpis[key] is None else str(kpis[key])
        assert table[label][0] == value, key
        assert table[label][1], f"no explanation for {key}"
    text = re.sub(r"\s+", " ", "".join(page.text))
    for key in ("load", "dispatch", "bands", "price", "soc"):  # every chart drawn here is explained
        plain = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", CHART_HELP[key]))
        assert plain.split(".")[0] in text, key
    assert "fully served" in text


def test_tariff_bands_follow_the_price_levels() -> None:
    bands = tariff_bands(np.array([0.3, 0.6, 0.95, 0.6, 0.3]))
    assert list(bands) == ["valley", "flat", "peak", "flat", "valley"]
    assert list(tariff_bands(np.array([0.5, 0.5]))) == ["flat", "flat"]
    assert set(tariff_bands(np.linspace(0.1, 1.0, 50))) == {"valley", "flat", "peak"}


def test_state_of_charge_follows_the_energy_each_car_got(report: tuple[Path, dict]) -> None:
    sc = report_site()
    res = run_scenario(sc, "llf")
    v2g = np.array([i for i, p in enumerate(sc.piles) if p.v2g])
    soc = pile_soc(sc, res, v2g)
    assert soc.shape == (sc.n_steps, v2g.size)
    for j, i in enumerate(v2g):
        s = next(k for k, x in enumerate(sc.sessions) if x.pile == sc.piles[i].id)
        session = sc.sessions[s]
        assert soc[0, j] > session.soc_arrival  # llf charges from the first step
        assert soc[-1, j] == pytest.approx(session.soc_arrival + res.delivered_kwh[s] / session.battery_kwh)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium to render the page")
def test_a_browser_renders_the_report(report: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = report
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--hide-scrollbars", "--window-size=1200,1600", f"--screenshot={shot}",
                    (out / "report.html").as_uri()], capture_output=True, timeout=120, check=True)
    img = mpimg.imread(shot)
    assert img.shape[:2] == (1600, 1200)
    # the charts are there: many colours, not a blank page
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200


def test_long_runs_are_plotted_in_whole_buckets() -> None:
    week = small_site(n_piles=2, hours=24 * 7)
    b = Buckets(week)
    assert (b.size, b.label) == (15, "15 minutes") and len(b.edges) == 7 * 96 + 1
    day = Buckets(small_site(n_piles=2, hours=24))
    assert day.size == 1  # a day of minutes is drawn step by step
    x = np.full(week.n_steps, np.nan)
    x[3:10] = 2.0  # a car plugged in for part of the first bucket only
    x[20] = 4.0
    mean = b.nanmean(x)
    assert mean[0] == 2.0 and mean[1] == 4.0 and np.isnan(mean[2:]).all()
