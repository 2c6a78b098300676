"""Executors without a cluster: flags, the progress line, node fingerprints, device types."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from attnbench.cli import main
from attnbench.cli_parser import build_parser
from attnbench.errors import UsageError
from attnbench.report.groups import Run, device_type, make_groups
from attnbench.results_schema import SCHEMA_VERSION
from attnbench.run.executors.ray_node import env_id
from attnbench.run.executors.ray_setup import executor_from_args
from attnbench.run.progress import cluster_line
from attnbench.run.resume import adopt


def test_cluster_line_counts_tasks_per_node_and_queued():
    assert cluster_line({"vm:1a2b3c": 2, "vm:4d5e6f": 1, "queued": 4}) == \
        "cluster: 3 tasks running (vm:1a2b3c 2, vm:4d5e6f 1), 4 queued"
    assert cluster_line({}) == "cluster: 0 tasks running"


@pytest.mark.parametrize(("flags", "message"), [
    (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    (["--ray-cpus-per-task", "2"], "--ray-cpus-per-task needs --executor ray"),
    (["--executor", "ray", "--ray-resource", "gpu=-1"], "--ray-resource 'gpu=-1'"),
    (["--executor", "ray", "--ray-resource", "=1"], "--ray-resource '=1'"),
    (["--executor", "ray", "--frontier"], "--frontier runs on this machine only"),
    (["--executor", "ray", "--wait-idle", "5"], "--wait-idle watches this machine only"),
])
def test_bad_executor_flags_are_one_line_usage_errors(flags, message, tmp_path, capsys):
    code = main(["run", "-s", "smoke", "-b", "numpy-naive", "--out", str(tmp_path / "r"),
                 *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # refused before anything ran


@pytest.mark.parametrize("resource", ["CPU=1", "GPU=1", "x=0.00001"])
def test_resources_ray_refuses_are_usage_errors_before_the_run(resource, tmp_path, capsys):
    """Ray's own rules for a task's resources, checked before a cluster or a run folder."""
    pytest.importorskip("ray", reason="Ray is not installed")
    code = main(["run", "-s", "smoke", "-b", "numpy-naive", "--out", str(tmp_path / "r"),
                 "--executor", "ray", "--ray-resource", resource])
    err = capsys.readouterr().err
    assert code == 2 and "--ray-resource" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_executor_ray_without_ray_says_how_to_install(monkeypatch):
    # fakes a missing library (sys.modules entry None makes `import ray` fail) to test our message
    monkeypatch.setitem(sys.modules, "ray", None)
    from attnbench.run.executors.ray_driver import import_ray

    with pytest.raises(UsageError, match=r"pip install 'attnbench\[ray\]'"):
        import_ray()


def test_env_id_ignores_what_changes_while_a_node_runs():
    env = {"host": "a", "cpu": "X", "versions": {"numpy": "2.0"}, "threads": {"torch": 4},
           "gpu": {"name": "H100", "driver": "550", "cuda": "12.4",
                   "devices": [{"clocks.sm": "1980", "temperature.gpu": "40"}]}}
    hot = {**env, "threads": {"torch": 1},
           "gpu": {**env["gpu"], "devices": [{"clocks.sm": "1410", "temperature.gpu": "80"}]}}
    assert env_id(env) == env_id(hot)
    assert env_id(env) != env_id({**env, "versions": {"numpy": "2.1"}})
    assert env_id(env) != env_id({**env, "gpu": {**env["gpu"], "name": "A100"}})


def test_gpu_types_of_a_cluster_run_are_grouped_apart():
    base = {"scenario": "s", "backend": "b", "device": "cuda", "seq_q": 1, "seq_kv": 1}
    recs = [{**base, "seq_kv": n, "node": {"gpu": gpu}} for n in (1, 2) for gpu in ("H100", "A100")]
    groups = make_groups([Run(Path("."), {}, recs + [{**base, "device": "cpu"}])])
    assert sorted(g.device for g in groups) == ["cpu", "cuda (A100)", "cuda (H100)"]
    assert device_type({**base, "device": "cpu", "node": {"cpu": "EPYC"}}) == "cpu (EPYC)"
    assert device_type(base) == "cuda"  # a local run's records: as before


def _stored_run(tmp_path: Path, **config: object) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "config": {
        "scenarios": [], "timed": True, **config}}))
    return run


def test_resume_takes_the_executor_and_cluster_from_run_json(tmp_path):
    run = _stored_run(tmp_path, executor="ray", ray_address="ray://head:10001",
                      ray_cpus_per_task=4, ray_resources=["accelerator_type:H100"])
    args = build_parser().parse_args(["run", "--resume", str(run)])
    adopt(args, build_parser().parse_args(["run"]))
    assert (args.executor, args.ray_address, args.ray_cpus_per_task, args.ray_resource) == \
        ("ray", "ray://head:10001", 4, ["accelerator_type:H100"])
    args = build_parser().parse_args(["run", "--resume", str(run), "--ray-address", "auto"])
    adopt(args, build_parser().parse_args(["run"]))
    assert args.ray_address == "auto"  # a cluster's address may change: the given one wins
    args = build_parser().parse_args(["run", "--resume", str(run), "--executor", "local"])
    with pytest.raises(UsageError, match="--executor local differs from the run's ray"):
        adopt(args, build_parser().parse_args(["run"]))


def test_resume_of_a_run_from_before_executors_stays_local(tmp_path):
    args = build_parser().parse_args(["run", "--resume", str(_stored_run(tmp_path))])
    adopt(args, build_parser().parse_args(["run"]))
    assert args.executor == "local" and executor_from_args(args) is None


def test_a_cluster_address_that_takes_no_connection_is_refused_quickly():
    from attnbench.run.executors.ray_driver import probe

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UsageError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        probe(f"127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(UsageError, match="use auto, host:port or ray://host:port"):
        probe("ray://nohost")
    with pytest.raises(UsageError, match="use auto, host:port or ray://host:port"):
        probe("127.0.0.1:99999999999999999999")  # once an OverflowError traceback
    probe("auto")  # found by Ray itself
