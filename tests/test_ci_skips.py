"""Under CI=true a skipped test is a failure (tests/ci_skips.py); without CI it stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SKIPPING = '''
import shutil
import pytest

@pytest.fixture
def tool():
    pytest.skip("no-such-tool not found")

def test_needs_a_tool(tool):
    pass

@pytest.mark.skipif(shutil.which("no-such-tool") is None, reason="no no-such-tool")
def test_marked():
    pass

def test_inline():
    pytest.skip("nothing here")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

def test_runs():
    pass
'''


SKIPPED_MODULE = '''
import pytest

pytest.importorskip("no_such_module_for_youxu", reason="no no_such_module_for_youxu")


def test_never_collected():
    pass
'''


def run(tmp_path: Path, ci: str | None, *names: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    (tmp_path / "test_skipped_module.py").write_text(SKIPPED_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "-p", "tests.ci_skips", "--rootdir", str(tmp_path), *names],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", [None, "false"])
def test_without_ci_skips_stay_skips(tmp_path: Path, ci: str | None) -> None:
    r = run(tmp_path, ci, "test_skipping.py", "test_skipped_module.py")
    assert r.returncode == 0, r.stdout
    assert "1 passed, 4 skipped, 1 xfailed" in r.stdout


def test_under_ci_a_skip_is_a_failure_with_its_reason(tmp_path: Path) -> None:
    r = run(tmp_path, "true", "test_skipping.py")
    assert r.returncode == 1, r.stdout
    assert "skipped" not in r.stdout.splitlines()[-1]
    assert "1 failed, 1 passed, 1 xfailed, 2 errors" in r.stdout  # skips in setup (fixture, skipif) are errors
    for reason in ("no-such-tool not found", "no no-such-tool", "nothing here"):
        assert f"CI=true: this test may not skip, but it did: {reason}" in r.stdout


def test_under_ci_a_module_skipped_at_import_is_a_collection_error(tmp_path: Path) -> None:
    r = run(tmp_path, "true", "test_skipped_module.py")
    assert r.returncode == 2, r.stdout  # pytest stops: an error during collection
    assert "CI=true: this test may not skip, but it did: no no_such_module_for_youxu" in r.stdout
