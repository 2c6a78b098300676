"""Observers of records (hooks, on_record) get copies; what they raise never stops the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnbench.plugin.registry import build_registry
from attnbench.results_writer import strict_json
from attnbench.run.execute import Options
from attnbench.run.plan import make_plan
from attnbench.run.runner import RunConfig, run_plan
from attnbench.scenario import load_scenario

pytestmark = pytest.mark.process

SCENARIO = """name = "tiny"
[base]
batch = 1
heads = 2
head_dim = 16
[sweep]
seq_len = [64, 32, 16]
"""


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]


def test_a_hook_cannot_rewrite_the_verdict_or_end_the_run(cli, tmp_path, plugin_path):
    (tmp_path / "tiny.toml").write_text(SCENARIO)
    proc = cli("check", "-s", "tiny.toml", "-b", "test-returns-nan", "--out", "run",
               "--plugin", plugin_path("returns_nan.py"),
               "--plugin", plugin_path("rewrites_verdict.py"))
    assert proc.returncode == 1, proc.stderr  # the mismatch still fails the check
    records = _records(tmp_path / "run")
    assert [r["status"] for r in records] == ["mismatch", "ok", "ok"]
    assert records[0]["agreement"]["passed"] is False
    lines = [x for x in proc.stderr.splitlines() if "rewrites_verdict" in x]
    assert len(lines) == 1 and "raised SystemExit: observer ends the run" in lines[0], lines
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["finished"] is True
    assert list(meta["observer_failures"].values()) == [3]  # SystemExit, Ctrl-C, RuntimeError


def test_on_record_gets_a_copy_and_its_exit_is_ignored(tmp_path, plugin_path, capfd):
    (tmp_path / "tiny.toml").write_text(SCENARIO)
    reg = build_registry([plugin_path("returns_nan.py")], autoload=False)
    plan = make_plan(reg, [load_scenario(tmp_path / "tiny.toml")], ["test-returns-nan"],
                     ["cpu"], [])

    def meddle(rec):
        rec["status"] = "ok"
        rec["agreement"]["outputs"][0]["passed"] = True
        raise SystemExit(3)

    config = RunConfig(out_dir=tmp_path / "run", opts=Options(time_it=False),
                       meta={"command": "test"}, on_record=meddle)
    result = run_plan(plan, config)
    assert result.finished
    assert [r["status"] for r in result.records] == ["mismatch", "ok", "ok"]
    assert result.records[0]["agreement"]["outputs"][0]["passed"] is False
    # as written: strict JSON (the NaN output's error/bound, inf in memory, is null on disk)
    assert _records(tmp_path / "run") == [json.loads(strict_json(r)) for r in result.records]
    assert "the on_record callback raised SystemExit: 3" in capfd.readouterr().err


def test_a_real_sigterm_during_a_slow_hook_stops_the_run(tmp_path, plugin_path):
    (tmp_path / "tiny.toml").write_text(SCENARIO)
    mark = tmp_path / "observing"
    env = {**os.environ, "ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1",
           "ATTNBENCH_TEST_MARK": str(mark)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnbench", "check", "-s", "tiny.toml", "-b", "numpy-naive",
         "--device", "cpu", "--out", "run", "--plugin", plugin_path("slow_observer.py")],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["stopped"] == "interrupted by SIGTERM" and meta["finished"] is False
    assert [r["status"] for r in _records(tmp_path / "run")] == ["ok"]
