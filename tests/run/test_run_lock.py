"""One writer per run folder: a second run or --resume into a folder in use exits 2, naming it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.process

# seq 32 finishes, seq 64 hangs (test-hangs): the first run holds the folder while it waits
SCENARIO = """name = "tiny"
[base]
batch = 1
heads = 2
head_dim = 16
[sweep]
seq_len = [32, 64]
"""


def test_a_second_run_into_a_busy_folder_is_refused(cli, tmp_path, plugin_path):
    (tmp_path / "tiny.toml").write_text(SCENARIO)
    env = {**os.environ, "ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "attnbench", "check", "-s", "tiny.toml", "-b", "test-hangs",
         "--plugin", plugin_path("hangs.py"), "--device", "cpu", "--timeout", "120",
         "--out", "run"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    records = tmp_path / "run" / "records.jsonl"
    deadline = time.monotonic() + 120
    while (not records.exists() or not records.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    written = records.read_text()
    try:
        again = cli("check", "-s", "tiny.toml", "-b", "numpy-naive", "--out", "run",
                    "--overwrite")  # not even --overwrite deletes what a running run writes
        resumed = cli("check", "--resume", "run")
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    for proc in (again, resumed):
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip()
        assert "\n" not in line and "Traceback" not in line
        assert "being written by another attnbench run" in line
        assert f"pid {first.pid} on " in line and "attnbench check -s tiny.toml" in line
    assert first.returncode == 130, err
    assert records.read_text() == written  # nothing the first run wrote was lost
    assert json.loads(written)["status"] == "ok"
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["stopped"] == "interrupted by SIGTERM"
    after = cli("check", "-s", "tiny.toml", "-b", "numpy-naive", "--out", "run", "--overwrite")
    assert after.returncode == 0, after.stderr  # the lock went with its run
