"""The Ray executor on a real local Ray cluster (2 nodes, 1 CPU each, started once per session):
the same records as a local run, streamed, a node lost mid-run, Ctrl-C, resume, fault plugins."""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from attnbench.measure.timing import TimerConfig
from attnbench.plugin.registry import build_registry
from attnbench.record import Status, record_key
from attnbench.results import read_run
from attnbench.run.execute import Options
from attnbench.run.plan import RunResult, make_plan
from attnbench.run.progress import Progress
from attnbench.run.runner import RunConfig, run_plan
from attnbench.scenario import resolve_scenario

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'attnbench[ray]')")
from attnbench.run.executors.ray_driver import RayExecutor  # noqa: E402 (needs ray)

# the cluster's nodes, Ray workers and attnbench workers, with worker start-up limits: alone
pytestmark = [pytest.mark.process, pytest.mark.alone]
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
FAULTS = ["test-segfaults", "test-hangs"]  # numpy-naive, but seq_kv 64 segfaults / hangs
TIMEOUT_S = 15.0  # a worker start (torch, numba imports) is under it too: room on a busy host


def scenario(tmp: Path, seqs: list[int], masks: tuple[str, ...] = ("none",)) -> Path:
    path = tmp / "tiny.toml"
    path.write_text(f'name = "tiny"\n[base]\nbatch = 1\nheads = 2\nhead_dim = 16\n[sweep]\n'
                    f'seq_len = {seqs}\nmask = {json.dumps(list(masks))}\n')
    return path


@functools.cache
def fault_registry() -> Any:
    """One registry of the fault plugins for the whole module (built once: it is the same
    for every sweep, and two sweeps may ask for it at once from two threads)."""
    plugins = [str(PLUGINS / f) for f in ("segfaults.py", "hangs.py", "sleeps.py")]
    reg = build_registry(plugins, autoload=False)
    assert not reg.failures, reg.failures  # a plugin that did not load: say why
    return reg


def sweep(out: Path, toml: Path, backends: list[str], executor: Any = None,
          on_record: Callable[[dict], None] | None = None, progress: Progress | None = None,
          resume: bool = False, timed: bool = False) -> RunResult:
    """A check-only run of the test plugins in-process (its workers are real processes)."""
    reg = fault_registry()
    plan = make_plan(reg, [resolve_scenario(str(toml), reg.scenario_dirs())], backends,
                     ["cpu"], [])
    opts = Options(time_it=timed, memory=timed, timer=TimerConfig(budget_s=0.05))
    return run_plan(plan, RunConfig(out_dir=out, opts=opts, timeout_s=TIMEOUT_S, resume=resume,
                                    executor=executor, on_record=on_record,
                                    progress=progress or Progress(io.StringIO())))


def statuses(records: list[dict]) -> dict[tuple, str]:
    keys = [record_key(r) for r in records]
    assert len(keys) == len(set(keys)), "a record key was written twice"
    return {record_key(r): r["status"] for r in records}


@pytest.fixture(scope="session")
def cluster():
    """A head and one more node, 1 CPU each; the driver (this process) connected to it."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


def test_same_records_as_local_faults_included_and_streamed(cluster, tmp_path):
    toml = scenario(tmp_path, [16, 32, 64])
    arrived: dict[tuple, float] = {}
    with ThreadPoolExecutor(1) as pool:  # the local run meanwhile: both wait out a hang
        local_run = pool.submit(sweep, tmp_path / "local", toml, FAULTS)
        remote = sweep(tmp_path / "ray", toml, FAULTS, RayExecutor(),
                       lambda r: arrived.setdefault(record_key(r), time.time()))
        local = local_run.result()
    assert local.finished and remote.finished
    assert statuses(remote.records) == statuses(local.records)
    got = statuses(read_run(tmp_path / "ray")[1])  # what the driver wrote, once each
    assert got == statuses(local.records)
    assert got[("tiny", "b1-h2:2-q64-k64-d16-float32-none-fwd", "cpu", "test-segfaults")] \
        == Status.CRASHED
    assert got[("tiny", "b1-h2:2-q64-k64-d16-float32-none-fwd", "cpu", "test-hangs")] \
        == Status.TIMEOUT
    meta = read_run(tmp_path / "ray")[0]
    assert len(meta["nodes"]) == 2 and meta["executor"]["name"] == "ray"
    for rec in remote.records:  # every record names its node and that node's environment
        node = meta["nodes"][rec["node"]["node_id"]]
        assert rec["node"]["environment"] == node["env_id"] and node["environment"]["versions"]
        assert rec["node"]["host"] == node["host"]
    # streamed: the task that hangs on seq 64 sent its other record long before its last one.
    # Two nodes split the three cases interleaved: seqs 16 and 64 are one task, on one node
    # (Ray may also run the seq-32 task on that node, after or before it: not grouped by node)
    share = [r for r in remote.records if r["backend"] == "test-hangs" and r["seq_kv"] != 32]
    assert len(share) == 2 and len({r["node"]["node_id"] for r in share}) == 1
    first = min(share, key=lambda r: arrived[record_key(r)])
    assert first["seq_kv"] == 16
    assert arrived[record_key(first)] < max(r["node"]["sent"] for r in share) - TIMEOUT_S / 2

class KillOnStart(Progress):
    """Progress that removes the victim node as it starts a 3 s case (test-sleeps, seq 48)."""

    def __init__(self, cluster: Any, victim: Any):
        super().__init__(io.StringIO())
        self.ray_cluster, self.victim, self.killed = cluster, victim, False

    def starting(self, case_id: str, backend: str) -> None:
        if not self.killed and "-q48-" in case_id and self.victim.node_id[:6] in backend:
            self.killed = True
            self.ray_cluster.remove_node(self.victim, allow_graceful=False)


def test_a_dead_node_costs_only_its_cases_which_are_retried(cluster, tmp_path):
    toml = scenario(tmp_path, [16, 48], ("none", "causal"))  # 2 cases a node, one of 3 s
    victim = next(n for n in cluster.list_all_nodes() if n is not cluster.head_node)
    progress = KillOnStart(cluster, victim)
    executor = RayExecutor()
    try:
        result = sweep(tmp_path / "run", toml, ["test-sleeps"], executor, progress=progress)
    finally:
        cluster.add_node(num_cpus=1)  # the next tests get their two nodes back
        cluster.wait_for_nodes()
    assert progress.killed and result.finished
    records = read_run(tmp_path / "run")[1]
    assert len(statuses(records)) == 4 and {r["status"] for r in records} == {Status.OK}
    retried = [r for r in records if r["node"]["attempt"] == 2]
    assert retried and all(r["node"]["node_id"] != victim.node_id for r in retried)
    assert any(r["seq_kv"] == 48 for r in retried)  # the case it was running when it died
    assert executor.counts["retried"] == 1


def test_interrupt_cancels_the_cluster_tasks(cluster, tmp_path):
    toml = scenario(tmp_path, [16, 128, 32])  # the task with seq 128 sleeps a minute

    def interrupt(rec: dict) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to the driver

    executor = RayExecutor()
    t0 = time.time()
    result = sweep(tmp_path / "run", toml, ["test-sleeps"], executor, interrupt)
    assert result.stopped == "interrupted by SIGINT" and not result.finished
    assert executor.counts["cancelled"] >= 1
    cpus = ray.cluster_resources()["CPU"]
    while ray.available_resources().get("CPU", 0) < cpus and time.time() - t0 < 40:
        time.sleep(0.2)  # a task not cancelled would hold its CPU for its 60 s sleep
    assert ray.available_resources().get("CPU", 0) == cpus
    meta, records = read_run(tmp_path / "run")
    assert meta["finished"] is False and meta["stopped"] == "interrupted by SIGINT"
    assert 1 <= len(records) < 3


def test_cli_run_on_a_cluster_then_resume(cluster, tmp_path, cli):
    toml = scenario(tmp_path, [16, 32])
    args = ["run", "-s", str(toml), "-b", "numpy-naive", "--budget", "0.05", "--out", "run"]
    proc = cli(*args, "--executor", "ray", "--ray-address", cluster.address)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cluster: " in proc.stderr  # the progress over the cluster's nodes
    meta, full = read_run(tmp_path / "run")
    assert meta["config"]["executor"] == "ray" and len(meta["nodes"]) == 2
    assert all(r["status"] == Status.OK and r["roof_fraction"] > 0 for r in full)
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "run" / "records.jsonl").write_text(lines[0])  # as if stopped after one
    # the CLI's --resume adopts the executor from run.json (test_executors.py); here the run
    result = sweep(tmp_path / "run", toml, ["numpy-naive"], RayExecutor(), resume=True,
                   timed=True)
    meta, records = read_run(tmp_path / "run")
    assert statuses(records).keys() == statuses(full).keys() and len(result.records) == 2
    assert len(meta["resumes"]) == 1
    assert all(r["node"]["node_id"] in meta["nodes"] for r in records)  # old and new nodes
