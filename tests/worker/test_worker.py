"""Worker isolation: a sweep with misbehaving plugins finishes and marks each bad case."""

from __future__ import annotations

import json

import pytest

from attnbench.plugin.registry import build_registry
from attnbench.run.execute import Options
from attnbench.run.plan import make_plan
from attnbench.run.runner import RunConfig, run_plan
from attnbench.scenario import load_scenario
from attnbench.worker.process_group import exit_reason

pytestmark = pytest.mark.process  # sweeps in worker processes

BAD = {"test-segfaults": "crashed", "test-hangs": "timeout", "test-hog": "oom",
       "test-raises": "error", "test-returns-nan": "mismatch", "test-cuda-poison": "error"}
PLUGINS = ["segfaults.py", "hangs.py", "hog.py", "raises.py", "returns_nan.py",
           "cuda_poison.py"]
# the bad case (seq 64) comes first, so a dead worker must be restarted for the next case
SCENARIO = """name = "tiny"
[base]
batch = 1
heads = 2
head_dim = 16
[sweep]
seq_len = [64, 32]
"""


pytestmark = pytest.mark.process


def test_exit_reason_names_signals_and_codes():
    assert exit_reason(-11) == "killed by SIGSEGV"
    assert exit_reason(-6) == "killed by SIGABRT"
    assert exit_reason(3) == "exited with code 3"
    assert "out-of-memory" in exit_reason(-9)


@pytest.fixture(scope="module")
def bad_sweep(tmp_path_factory, plugin_path):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "tiny.toml").write_text(SCENARIO)
    reg = build_registry([plugin_path(p) for p in PLUGINS], autoload=False)
    plan = make_plan(reg, [load_scenario(tmp / "tiny.toml")], ["numpy-naive", *BAD], ["cpu"], [])
    config = RunConfig(out_dir=tmp / "run", opts=Options(time_it=False),
                       meta={"command": "test"}, timeout_s=15.0)
    return run_plan(plan, config)


def test_sweep_with_bad_plugins_finishes(bad_sweep):
    assert bad_sweep.finished
    assert len(bad_sweep.records) == 14
    lines = (bad_sweep.out_dir / "records.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines] == [r["status"] for r in bad_sweep.records]
    meta = json.loads((bad_sweep.out_dir / "run.json").read_text())
    assert meta["finished"] is True and meta["stopped"] is None
    assert meta["workers"]["restarts"] >= 2  # after the segfault and after the timeout


def test_each_bad_case_gets_its_status(bad_sweep):
    by = {(r["backend"], r["seq_kv"]): r for r in bad_sweep.records}
    for backend, status in BAD.items():
        assert by[(backend, 64)]["status"] == status, by[(backend, 64)]
        assert by[(backend, 32)]["status"] == "ok", by[(backend, 32)]
    assert by[("numpy-naive", 64)]["status"] == by[("numpy-naive", 32)]["status"] == "ok"
    assert "SIGSEGV" in by[("test-segfaults", 64)]["error"]
    assert "Segmentation fault" in by[("test-segfaults", 64)]["log_tail"]  # faulthandler
    assert "15 s" in by[("test-hangs", 64)]["error"]
    assert "MemoryError" in by[("test-hog", 64)]["error"]
    assert "fails on purpose" in by[("test-raises", 64)]["error"]


def test_records_come_from_separate_worker_processes(bad_sweep):
    import os

    pids = {r["backend"]: r["worker"]["pid"] for r in bad_sweep.records if "worker" in r}
    assert len(set(pids.values())) == len(pids) and os.getpid() not in pids.values()
    overheads = [r["worker"]["overhead_ms"] for r in bad_sweep.records if "worker" in r]
    assert all(0 <= x < 1000 for x in overheads)


def test_a_broken_cuda_context_gets_a_fresh_worker(bad_sweep):
    by = {r["seq_kv"]: r for r in bad_sweep.records if r["backend"] == "test-cuda-poison"}
    assert by[64]["status"] == "error" and by[64]["worker"]["restarted_after"]
    assert by[32]["status"] == "ok" and by[32]["worker"]["pid"] != by[64]["worker"]["pid"]
    plain = {r["seq_kv"]: r for r in bad_sweep.records if r["backend"] == "test-raises"}
    assert plain[32]["worker"]["pid"] == plain[64]["worker"]["pid"]  # an ordinary error: kept


def test_an_oom_gets_a_fresh_worker(bad_sweep):
    by = {r["seq_kv"]: r for r in bad_sweep.records if r["backend"] == "test-hog"}
    assert by[64]["status"] == "oom" and by[64]["worker"]["restarted_after"]
    assert by[32]["worker"]["pid"] != by[64]["worker"]["pid"]
