"""The status page in a real browser (Debian's Chromium driven by Playwright) against `youxu run`
controlling `sim serve`: live values, a refused token, a booking made in the page, a phone screen."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.api_site import READ_TOKEN, WRITE_TOKEN, auth, start_api_site, until
from tests.fixtures_mqtt import Broker
from tests.site_processes import RunningSite, logs_on_failure, mosquitto_pub_binary, rfc3339

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def pub_binary() -> str:
    b = mosquitto_pub_binary()
    if b is None:
        pytest.skip("mosquitto_pub not installed")
    return b


@pytest.fixture
async def page_site(mqtt_broker: Broker, tmp_path: Path, pub_binary: str) -> AsyncIterator[tuple[RunningSite, str]]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    site, base = await start_api_site(tmp_path, mqtt_broker.port, f"page-{time.monotonic_ns() % 10**9}", pub_binary)
    try:
        with logs_on_failure(site):
            yield site, base
    finally:
        await site.close()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            await b.close()


async def api_piles(base: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=base, headers=auth(READ_TOKEN), timeout=5.0) as c:
        return (await c.get("/api/v1/piles")).json()["piles"]


def kw_of(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


async def test_page_is_live_refuses_a_bad_token_and_books_a_charge(page_site: tuple[RunningSite, str], browser,
                                                                    tmp_path: Path) -> None:
    site, base = page_site
    ctx = await browser.new_context(viewport=PHONE, locale="en-GB", is_mobile=True, has_touch=True)
    page = await ctx.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    await page.goto(base + "/")
    try:
        # the live total, as the meter reads it
        await page.wait_for_function("() => /^\\d+\\.\\d$/.test(document.getElementById('total-kw').textContent)")
        assert site.probe is not None
        await site.probe.until(lambda kw: kw > 135.0, 15.0, "the cars charging")
        total = page.locator("#total-kw")

        async def page_as_meter() -> bool:
            shown, meter = kw_of(await total.inner_text()), site.probe.latest_kw()
            return shown is not None and meter is not None and abs(shown - meter) < 1.0

        await until(page_as_meter, 15.0, "the page's total as the meter's")
        # it updates by itself: the time of the picture moves on, and a pile paused elsewhere shows
        first = await page.locator("#updated").inner_text()
        await until(lambda: _changed(page, "#updated", first), 10.0, "the page updating")
        assert await page.locator("#pile-rows tr").count() == 6
        before = kw_of(await total.inner_text())
        async with httpx.AsyncClient(base_url=base, headers=auth(WRITE_TOKEN), timeout=5.0) as c:
            r = await c.post("/api/v1/piles/P01/override", json={"action": "pause", "minutes": 30})
            assert r.status_code == 202
        row = page.locator('#pile-rows tr[data-pile="P01"]')
        await until(lambda: _text_has(row.locator(".override"), "pause"), 10.0, "P01 paused in the page")

        async def total_dropped() -> bool:
            now = kw_of(await total.inner_text())
            return now is not None and before is not None and now < before - 5.0

        await until(total_dropped, 15.0, "the page's total without P01")
        await page.screenshot(path=str(tmp_path / "status-phone.png"), full_page=True)
        # readable on a phone: nothing wider than the screen but the pile table's own scroller
        overflow = await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1
        assert await page.locator("#book-form").is_hidden()  # no token: no write actions

        # a bad token is refused, a read token does not unlock the writes
        await page.fill("#login-token", "not-the-token")
        await page.click("#login-btn")
        await until(lambda: _text_has(page.locator("#login-msg"), "refused"), 5.0, "the bad token refused")
        assert await page.locator("#book-form").is_hidden()
        await page.fill("#login-token", READ_TOKEN)
        await page.click("#login-btn")
        await until(lambda: _text_has(page.locator("#login-msg"), "read-only"), 5.0, "the read token noted")
        assert await page.locator("#book-form").is_hidden()

        # a write token: book P04 for 9.5 kWh from the page; the pile table shows it
        await page.fill("#login-token", WRITE_TOKEN)
        await page.click("#login-btn")
        await page.locator("#book-form").wait_for(state="visible", timeout=5000)
        await page.select_option("#book-pile", "P04")
        await page.fill("#book-energy", "9.5")
        await page.click("#book-btn")
        await until(lambda: _text_has(page.locator("#book-msg"), "accepted"), 5.0, "the booking accepted")
        row = page.locator('#pile-rows tr[data-pile="P04"]')
        await until(lambda: _text_has(row.locator(".energy"), "/ 9.5"), 10.0, "P04's booking in the table")
        p04 = next(p for p in await api_piles(base) if p["pile_id"] == "P04")
        assert p04["energy_wanted_kwh"] == pytest.approx(9.5)
        await page.screenshot(path=str(tmp_path / "status-booked.png"), full_page=True)

        # Chinese labels
        await page.click("#lang")
        assert await page.locator("[data-i18n=piles]").first.inner_text() == "充电桩"
        # everything came from the daemon: no CDN, no other host
        assert requested and all(u.startswith(base) for u in requested), requested
    finally:
        print(f"screenshots in {tmp_path}")
        await ctx.close()


async def test_page_on_a_desktop_shows_phases_dispatch_and_alarms(page_site: tuple[RunningSite, str], browser,
                                                                   tmp_path: Path) -> None:
    site, base = page_site
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-GB")
    await page.goto(base + "/")
    try:
        await page.wait_for_function("() => document.querySelectorAll('#phase-bars .phase').length === 3")
        await page.wait_for_function("() => document.querySelector('#chart path') !== null")
        # the six sessions that started are among the recent events
        await until(lambda: _count_at_least(page, "#alarm-list li", 6), 10.0, "the session events listed")
        text = await page.locator("#alarm-list").inner_text()
        assert len(re.findall(r"session started", text)) == 6
        assert await page.locator("#chart rect.dispatch").count() == 0
        # a limit from the grid for the next hour: in force in the list, the limit shown, its window shaded
        cid = str(uuid.uuid4())
        now = time.time()
        await site.publish("dispatch", {
            "schema": "youxu.dispatch/1", "command_id": cid, "issuer": "page-test", "seq": 1,
            "issued_at": rfc3339(now), "type": "limit", "scope": "site", "priority": 1,
            "valid_from": rfc3339(now - 1), "valid_until": rfc3339(now + 3600),
            "periods": [{"offset_s": 0, "import_max_kw": 125.0}], "response_required": True})
        item = page.locator(f'#command-list li[data-command="{cid}"]')
        await until(lambda: _text_has(item, "in force"), 10.0, "the command in force in the page")
        await until(lambda: _text_has(page.locator("#limit-kw"), "125.0"), 10.0, "the dispatch limit shown")
        assert await page.locator("#chart rect.dispatch").count() >= 1
        await page.screenshot(path=str(tmp_path / "status-desktop.png"), full_page=True)
    finally:
        print(f"screenshots in {tmp_path}")
        await page.close()


async def _changed(page, selector: str, old: str) -> bool:
    return (await page.locator(selector).inner_text()) != old


async def _text_has(locator, text: str) -> bool:
    return text in (await locator.inner_text())


async def _count_at_least(page, selector: str, n: int) -> bool:
    return await page.locator(selector).count() >= n
