"""Under CI=true nothing skips: a test that would skip (a missing broker, database, socat, chromium,
mosquitto_pub, ...) fails instead, with the skip's reason, so CI never reports green for tests it did
not run. Locally (CI unset) the skips stay skips and `pytest -rs` lists them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def skips_fail() -> bool:
    return os.environ.get("CI") == "true"


def _fail_skip(rep: pytest.TestReport | pytest.CollectReport) -> None:
    if not (skips_fail() and rep.skipped) or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = reason.removeprefix("Skipped: ")
    rep.outcome = "failed"
    rep.longrepr = f"CI=true: this test may not skip, but it did: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """A whole module skipped at import (`pytest.importorskip`, `pytest.skip(allow_module_level=True)`)."""
    outcome = yield
    _fail_skip(outcome.get_result())
