"""The import contract (pyproject.toml, `lint-imports`): one namespace, folders that import one way,
controller rooms that meet only through their public modules, and no circle between files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("controller", "drivers", "scheduler", "sim", "config")
LINT = shutil.which("lint-imports")

pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is part of the dev extra")


def lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([LINT, "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def copy_tree(tmp_path: Path) -> Path:
    """The five folders as a `youxu` package of their own, found before the installed one."""
    root = tmp_path / "youxu"
    root.mkdir()
    for d in FOLDERS:
        shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_contract_holds() -> None:
    r = lint(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("controller/tariff.py", "from youxu.sim import ports", "youxu.controller.tariff -> youxu.sim.ports"),
    ("scheduler/forecast.py", "from youxu.config import errors", "youxu.scheduler.forecast -> youxu.config.errors"),
    ("drivers/meter.py", "from youxu.controller import siteconfig", "youxu.drivers.meter -> youxu.controller"),
    ("controller/loop/ticker.py", "from youxu.controller.grid import intake",
     "youxu.controller.loop.ticker -> youxu.controller.grid.intake"),
    ("controller/store/values.py", "from youxu.controller.loop import sessions",
     "youxu.controller.store.values -> youxu.controller.loop.sessions"),
])
def test_an_import_against_the_contract_breaks_it(tmp_path: Path, module: str, line: str, broken: str) -> None:
    root = copy_tree(tmp_path)
    with (root / module).open("a") as f:
        f.write(f"\n{line}  # noqa\n")
    r = lint(tmp_path, pythonpath=tmp_path)
    assert r.returncode != 0
    assert broken in r.stdout, r.stdout


def test_no_circle_between_files() -> None:
    graph = grimp.build_graph(*(f"youxu.{d}" for d in FOLDERS))
    adj = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(adj[m]):
            if state.get(n) == 1:
                circles.append([*path[path.index(n):], n])
            elif n not in state:
                visit(n, path)
        path.pop()
        state[m] = 2

    for m in sorted(graph.modules):
        if m not in state:
            visit(m, [])
    assert circles == []


def test_bare_folder_names_are_not_importable_outside_the_checkout() -> None:
    for name in FOLDERS:
        r = subprocess.run([sys.executable, "-c", f"import {name}"], cwd="/", capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=60)
        assert r.returncode != 0, f"`import {name}` works from /"
    r = subprocess.run([sys.executable, "-c", "import youxu.config, youxu.controller.cli"], cwd="/",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
