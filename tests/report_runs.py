"""Tiny real runs shared by the report, compare and JUnit tests (built once per test session)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

from conftest import PLUGINS, ROOT, run_cli

TINY = """name = "tiny"
description = "small cases for the report tests"
[base]
batch = 1
heads = 2
head_dim = 16
[sweep]
mask = ["none", "causal"]
seq_len = [16, 32, 64]
"""
PLUGIN_ARGS = ["--plugin", str(PLUGINS / "slow_copy.py"), "--plugin", str(PLUGINS / "markup.py")]
# The same scenario name with two of its cases: comparable with the base run, and quicker.
SMALL = TINY.replace('mask = ["none", "causal"]', 'mask = ["none"]').replace("16, 32, 64", "32, 64")
RUNS = {  # name -> (verb, scenario text, backends, environment, expected exit code)
    "base": ("run", TINY, ["numpy-naive", "slow-copy", "test-markup"], {}, 0),
    "slow": ("run", SMALL, ["slow-copy"], {"ATTNBENCH_TEST_SLEEP_MS": "3"}, 0),
    "wrong": ("check", SMALL, ["numpy-naive", "slow-copy"], {"ATTNBENCH_TEST_WRONG": "1"}, 1),
}


@cache
def workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="attnbench-report-tests-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


@cache
def real_run(name: str) -> Path:
    """Run the named tiny sweep through the real CLI and return its folder.

    The check run also writes <folder>/junit.xml through check --junit-xml.
    """
    verb, text, backends, env, code = RUNS[name]
    out = workdir() / name
    scenario = workdir() / f"{name}.toml"
    scenario.write_text(text)
    args = [verb, "-s", str(scenario), "--budget", "0.05", "--out", str(out), *PLUGIN_ARGS]
    if verb == "check":
        args += ["--junit-xml", str(out / "junit.xml")]
    for b in backends:
        args += ["-b", b]
    proc = run_cli(*args, cwd=ROOT, env=env, timeout=240)
    assert proc.returncode == code, proc.stderr[-2000:]
    return out
