"""The test plumbing itself: `process` marks, the guard on unmarked processes, Chromium in CI."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import attnbench

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

TESTS = Path(__file__).resolve().parent
INNER = '''
import subprocess, sys

import pytest


def test_pure():
    pass


def test_starts_python_unmarked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.mark.process
def test_starts_python_marked():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_uses_cli(cli):
    assert cli("--help").returncode == 0


def test_needs_chromium(chromium):
    pass
'''


def inner_pytest(folder: Path, *args: str, ci: bool) -> subprocess.CompletedProcess:
    """pytest on INNER beside a copy of this conftest, with our pytest settings; no Chromium."""
    (folder / "test_inner.py").write_text(INNER)
    shutil.copy(TESTS / "conftest.py", folder / "conftest.py")
    env = {**os.environ, "PATH": str(folder / "no-such-bin")}
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-rs", "--strict-markers", "-p", "no:cacheprovider",
         "-c", str(TESTS.parent / "pyproject.toml"), "--rootdir", str(folder), *args,
         "test_inner.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def outcomes(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """test name -> PASSED/FAILED/SKIPPED/ERROR, from pytest -v's lines."""
    got = {}
    for line in proc.stdout.splitlines():
        if line.startswith("test_inner.py::"):
            name, outcome = line.split("::", 1)[1].split()[:2]
            if outcome in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
                got.setdefault(name, outcome)
    return got


@pytest.mark.process
def test_in_ci_an_unmarked_process_and_a_missing_chromium_fail(tmp_path: Path):
    proc = inner_pytest(tmp_path, ci=True)
    got = outcomes(proc)
    assert got == {"test_pure": "PASSED", "test_starts_python_unmarked": "FAILED",
                   "test_starts_python_marked": "PASSED", "test_uses_cli": "PASSED",
                   "test_needs_chromium": "ERROR"}, proc.stdout[-3000:]
    assert "test_starts_python_unmarked started 1 Python process(es)" in proc.stdout
    assert "add @pytest.mark.process" in proc.stdout
    assert "chromium is not installed" in proc.stdout and "CI must render" in proc.stdout
    assert proc.returncode == 1


@pytest.mark.process
def test_locally_chromium_skips_and_not_process_leaves_out_the_marked(tmp_path: Path):
    proc = inner_pytest(tmp_path, "-m", "not process", ci=False)
    got = outcomes(proc)
    # test_uses_cli is marked through its fixture; the skip carries its reason
    assert got == {"test_pure": "PASSED", "test_starts_python_unmarked": "FAILED",
                   "test_needs_chromium": "SKIPPED"}, proc.stdout[-3000:]
    assert "2 deselected" in proc.stdout
    assert "chromium is not installed (apt-get install chromium)" in proc.stdout


def test_version_comes_from_the_installed_metadata(monkeypatch):
    project = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["project"]
    assert attnbench.__version__ == importlib.metadata.version("attnbench") == project["version"]

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    try:
        assert importlib.reload(attnbench).__version__ == "0+unknown"
    finally:
        monkeypatch.undo()
        importlib.reload(attnbench)
    assert attnbench.__version__ == project["version"]


@pytest.mark.process
def test_worker_overhead_benchmark_still_runs():
    script = TESTS.parent / "benchmarks" / "worker_overhead.py"
    proc = subprocess.run([sys.executable, str(script), "2"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    starts = ("worker start", "per-task overhead", "whole round trip")
    assert [line.startswith(s) for line, s in zip(lines, starts, strict=True)] == [True] * 3
    medians = [float(re.search(r"median ([0-9.]+) ms", line).group(1)) for line in lines]
    assert all(m > 0 for m in medians) and medians[0] > medians[1], proc.stdout
