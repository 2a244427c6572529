"""Shared pytest setup: fixtures live in tests/fixtures_*.py plugins."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_here = Path(__file__).parent
pytest_plugins = [
    f"tests.{p.stem}" for p in sorted(_here.glob("fixtures_*.py")) if importlib.util.find_spec("tests") is not None
] + ["tests.ci_skips"]
