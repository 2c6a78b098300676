"""Tiny real runs shared by the report, compare and JUnit tests (built once per test session)."""

from __future__ import annotations

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
RUNS = {  # name -> (backends, environment)
    "base": (["numpy-naive", "slow-copy", "test-markup"], {}),
    "slow": (["slow-copy"], {"ATTNBENCH_TEST_SLEEP_MS": "3"}),
    "wrong": (["slow-copy"], {"ATTNBENCH_TEST_WRONG": "1"}),
}


@cache
def workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="attnbench-report-tests-"))
    (d / "tiny.toml").write_text(TINY)
    return d


@cache
def real_run(name: str) -> Path:
    """Run the named tiny sweep through the real CLI and return its folder."""
    backends, env = RUNS[name]
    out = workdir() / name
    args = ["run", "-s", str(workdir() / "tiny.toml"), "--budget", "0.05", "--out", str(out),
            *PLUGIN_ARGS]
    for b in backends:
        args += ["-b", b]
    proc = run_cli(*args, cwd=ROOT, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out
