"""Shared pytest setup: fixtures live in tests/fixtures_*.py plugins; tests/ci_skips.py turns skips into
failures under CI=true."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_here = Path(__file__).parent
pytest_plugins = [
    f"tests.{stem}" for stem in [*(p.stem for p in sorted(_here.glob("fixtures_*.py"))), "ci_skips"]
    if importlib.util.find_spec("tests") is not None
]
