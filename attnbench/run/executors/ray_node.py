"""Node side of a Ray task: one backend's share of the plan in an isolated worker, streamed back.

This runs inside a Ray worker process on a cluster node, which imports no plugin: it runs the
cases through the same TaskRunner as a local sweep (a `python -m attnbench.worker.child`
process for the backend, importing only the plugin that defines it: crash, timeout and oom
isolation, threads, memory all unchanged; the node's own libraries decide what is supported),
verifies each output here against the oracle, and yields one message per event, which Ray
streams to the driver as it is yielded. It writes no record: the driver does. Messages, in order:
`{"node": info}`, `{"roofs": {...}}` (timed runs), then per case `{"start": case_id}` and
`{"record": rec, "sent": unix time}`, then `{"stats": ..., "process": ...}`; or
`{"missing": why}` when the backend is not registered on this node.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.measure import environment
from attnbench.run.tasks import TaskRunner
from attnbench.worker.parent import START_TIMEOUT_S, WorkerDied, WorkerTimeout

# fingerprint keys that say what a number was measured with (not clocks, temperatures, threads)
STABLE_KEYS = ("host", "platform", "cpu", "cores", "python", "versions", "git_commit")
ROOF_TIMEOUT_S = 300.0
# a worker killed as its node is removed can die before this Ray task does: its case would be
# sent back `crashed` instead of retried elsewhere; a crash waits this long before it is sent
CRASH_GRACE_S = 2.0


def env_id(env: dict[str, Any]) -> str:
    """A short hash of what makes a node's numbers comparable (libraries, CPU, GPU, commit)."""
    gpu = env.get("gpu") or {}
    stable = {k: env.get(k) for k in STABLE_KEYS}
    stable["gpu"] = {k: gpu.get(k) for k in ("name", "driver", "cuda")} if gpu else None
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]


def node_info() -> dict[str, Any]:
    """This node: Ray node id and address, host, environment fingerprint and its id."""
    import ray

    env = environment.fingerprint()
    gpu = env.get("gpu") or {}
    return {"node_id": ray.get_runtime_context().get_node_id(), "host": env["host"],
            "ip": ray.util.get_node_ip_address(), "environment": env, "env_id": env_id(env),
            "cpu": env.get("cpu"), "gpu": gpu.get("name")}


def work_dir(run_id: str) -> Path:
    """Where this node keeps a run's worker logs and roofs (its own temporary folder)."""
    return Path(tempfile.gettempdir()) / "attnbench-ray" / run_id


def run_share(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The body of one Ray task: spec holds hello, backend, items, timeouts, run id, device."""
    from attnbench.errors import UsageError
    from attnbench.plugin.catalog import BackendInfo

    yield {"node": node_info()}
    hello = spec["hello"]
    try:
        backend = BackendInfo.from_dict(spec["backend"])
    except UsageError as exc:
        yield {"missing": f"the task's backend entry is not valid: {exc}"}
        return
    seed = int((hello.get("options") or {}).get("seed") or 0)
    tasks = TaskRunner(hello, work_dir(spec["run_id"]) / "logs", spec["timeout_s"], seed=seed)
    try:
        if spec.get("roof_s"):
            yield {"roofs": node_roofs(tasks, spec)}
        with tasks.pool() as pool:
            for scenario, case_dict in spec["items"]:
                case = Case.from_dict(case_dict)
                yield {"start": case.id}
                rec, = tasks.round(pool, scenario, case, [backend])
                if rec.get("status") == "crashed":  # perhaps its node is going down: if so,
                    time.sleep(CRASH_GRACE_S)  # this task dies meanwhile and the case is retried
                yield {"record": rec, "sent": time.time()}
    finally:
        tasks.close()
    yield {"stats": tasks.worker_stats, "process": tasks.process_info}


def node_roofs(tasks: TaskRunner, spec: dict[str, Any]) -> dict[str, Any]:
    """The matmul roofs of this node for the share's device, measured once per run and node."""
    device, dtypes = spec["device"], spec["dtypes"]
    cache = work_dir(spec["run_id"]) / f"roofs-{spec.get('run_key', '')}-{device}.json"
    try:
        roofs = json.loads(cache.read_text())
        if all(d in roofs for d in dtypes):
            return {device: roofs}
    except (OSError, ValueError):
        roofs = {}
    w = tasks.new_worker(f"roof-{device}", role="roof")
    try:
        w.start(min(tasks.timeout_s, START_TIMEOUT_S))
        msg = {"roof": device, "dtypes": dtypes, "seconds": spec["roof_s"]}
        got = w.request(msg, ROOF_TIMEOUT_S).data.get("roofs")
        roofs.update(got if isinstance(got, dict) else {})
    except (WorkerDied, WorkerTimeout):
        return {device: roofs}
    finally:
        w.stop()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(roofs))
    return {device: roofs}
