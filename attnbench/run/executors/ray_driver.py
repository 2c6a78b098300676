"""The Ray executor, driver side: one Ray task per (backend, device, node share), records
streamed back as each finishes and written here, the only writer; retries for dead nodes.

Each task is a streaming generator (attnbench/run/executors/ray_node.py): every message it
yields reaches the driver before the task ends, and `ray.wait` on the tasks' generators says
which one has a message ready. Ray's own retries are off (a re-executed generator would run its
finished cases again); a task that fails (its node died, its Ray worker was killed) is
resubmitted once, on another live node, with only the cases it had not sent back; cases it loses
again are recorded `crashed` with both reasons. Ctrl-C (or SIGTERM) cancels every task.
"""

from __future__ import annotations

import hashlib
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from attnbench.case import Case
from attnbench.errors import UsageError
from attnbench.plugin.backend import name_of
from attnbench.plugin.catalog import BackendInfo
from attnbench.record import Status, new_record, record_key
from attnbench.run.executors import Work
from attnbench.run.executors.ray_share import Share, node_label
from attnbench.run.sweep import Sweep

POLL_S = 0.5  # ray.wait returns at least this often, so Ctrl-C is seen promptly
QUEUED = "queued"  # per_node's name for tasks whose node is not known yet
PROBE_S = 5.0  # how long --ray-address's host:port may take to accept a connection
MAX_ATTEMPTS = 2  # a share's first run and one retry on another node


@dataclass
class RayOptions:
    """Where the cluster is and what each task asks of it."""

    address: str | None = None  # None: start a local Ray; "auto" or "ray://host:port"
    cpus_per_task: int = 1  # CPU tasks; their worker runs this many threads unless --threads
    resources: dict[str, float] = field(default_factory=dict)  # e.g. {"accelerator_type:H100": 1}


def probe(address: str | None, timeout_s: float = PROBE_S) -> None:
    """Refuse (exit 2) a host:port that takes no connection; ray.init would wait minutes."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--ray-address {address!r}: use auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {exc}") from None


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"--executor ray needs Ray ({exc}); install it with "
                         "pip install 'attnbench[ray]'") from None
    return ray


class RayExecutor:
    """Runs a sweep's work as Ray tasks on a cluster; see the module docstring."""

    name = "ray"

    def __init__(self, options: RayOptions | None = None):
        self.options = options or RayOptions()
        self.ray = import_ray()
        self.nodes: dict[str, dict[str, Any]] = {}  # node id -> what run.json says of it
        self.roofs: dict[str, dict[str, Any]] = {}  # node id -> its roofs
        self.running: dict[Any, Share] = {}  # generator -> its share
        self.counts = {"tasks": 0, "retried": 0, "cancelled": 0}
        self._own = False

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"name": self.name, "address": o.address, "cpus_per_task": o.cpus_per_task,
                "resources": o.resources, "ray_version": self.ray.__version__, **self.counts}

    def run(self, sweep: Sweep, work: Work, roof_s: float) -> None:
        self.sweep, self.roof_s = sweep, roof_s if sweep.opts.time_it else 0.0
        self.nodes = dict(sweep.writer.meta.get("nodes") or {})  # a resumed run's nodes stay
        self.roofs = {n: dict(v.get("roofs") or {}) for n, v in self.nodes.items()}
        self.connect()
        try:
            for backend, todo in work:
                for device in dict.fromkeys(c.device for _, c in todo):
                    self.split(backend, device, [(s, c) for s, c in todo if c.device == device])
            self.loop()
        finally:
            self.cancel_all()
            self.sweep.writer.write_meta(executor=self.describe(), nodes=self.nodes)
            self.disconnect()
        types = sorted({str(n.get("gpu") or n.get("cpu")) for n in self.nodes.values()})
        if len(types) > 1:
            print(f"attnbench: warning: this run spans {len(types)} device types "
                  f"({', '.join(types)}); reports show each apart", file=sys.stderr)

    def connect(self) -> None:
        """Join the cluster (or start a local Ray); the run's signal handlers stay in place."""
        self.check_options()  # pure validation: needs no cluster
        if self.ray.is_initialized():
            return
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        address = self.options.address
        probe(address)
        kw = {} if address else {"include_dashboard": False}
        try:
            self.ray.init(address=address, log_to_driver=False, **kw)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot reach the Ray cluster at {address}: "
                             f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None
        finally:
            for s, h in handlers.items():
                if h is not None:
                    signal.signal(s, h)
        self._own = True

    def check_options(self) -> None:
        """Ray's own rules for what a task asks (no CPU/GPU in resources, amounts of at least
        0.0001, accelerator quantities) checked now: exit 2 before the run folder exists."""
        from attnbench.run.executors.ray_node import run_share

        for device in ("cpu", "cuda"):
            try:
                self.ray.remote(run_share).options(**self.task_options(device))
            except ValueError as exc:
                raise UsageError(f"--ray-resource/--ray-cpus-per-task: {exc} (CPUs are asked "
                                 "with --ray-cpus-per-task; a CUDA task asks for one GPU)"
                                 ) from None

    def task_options(self, device: str) -> dict[str, Any]:
        """The Ray options of one task of this device: its CPUs, a GPU for CUDA, no retries."""
        opts: dict[str, Any] = {"num_cpus": self.options.cpus_per_task, "max_retries": 0,
                                "num_gpus": 1 if device == "cuda" else 0}
        if self.options.resources:
            opts["resources"] = dict(self.options.resources)
        return opts

    def disconnect(self) -> None:
        if self._own:
            self.ray.shutdown()
            self._own = False

    def need(self, device: str) -> dict[str, float]:
        """The resources one task of this device asks for."""
        need = {"CPU": float(self.options.cpus_per_task), **self.options.resources}
        return {**need, "GPU": 1.0} if device == "cuda" else need

    def fitting(self, device: str, avoid: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
        """Ids of the live nodes that can run a task of this device (and are not avoided)."""
        need = self.need(device)
        return [n["NodeID"] for n in self.ray.nodes() if n.get("Alive")
                and n["NodeID"] not in avoid
                and all(n.get("Resources", {}).get(r, 0) >= v for r, v in need.items())]

    def split(self, backend: BackendInfo, device: str, todo: list[tuple[str, Case]]) -> None:
        """One share per fitting node (interleaved, so each gets small and large cases)."""
        if not todo:
            return
        nodes = self.fitting(device)
        if not nodes:
            why = f"no live node of the Ray cluster offers {self.need(device)}"
            for s, c in todo:
                self.sweep.finish(new_record(s, c, backend, Status.ERROR, error=why))
            return
        n = min(len(nodes), len(todo))
        for i in range(n):
            self.submit(Share(backend, device, todo[i::n]))

    def submit(self, share: Share, node_id: str | None = None) -> None:
        from attnbench.run.executors.ray_node import run_share

        opts = self.task_options(share.device)
        if node_id is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        remote = self.ray.remote(run_share).options(**opts)
        self.running[remote.remote(self.spec(share))] = share
        self.counts["tasks"] += 1

    def spec(self, share: Share) -> dict[str, Any]:
        """What the node needs: the worker hello, the backend, its cases, limits and run id."""
        hello = {**self.sweep.hello, "options": dict(self.sweep.hello["options"])}
        if share.device == "cpu" and not hello["options"].get("threads"):
            hello["options"]["threads"] = self.options.cpus_per_task  # the CPUs it was given
        items = [(s, c.to_dict()) for s, c in share.left.values()]
        meta = self.sweep.writer.meta
        run_id = str(meta.get("run_id") or self.sweep.out.name)
        # this run (a resume included) and no other: what a node's roof cache is keyed by
        run_key = hashlib.sha256(f"{run_id} {meta.get('started')}".encode()).hexdigest()[:12]
        return {"hello": hello, "backend": share.backend.to_dict(), "items": items,
                "device": share.device, "dtypes": sorted({c.dtype for _, c in share.items}),
                "timeout_s": self.sweep.timeout_s, "run_limit": self.sweep.timeout_s,
                "run_id": run_id, "run_key": run_key, "roof_s": self.roof_s}

    def loop(self) -> None:
        """Take each task's messages as they come, until every task has ended."""
        from attnbench.run.executors.ray_stream import handle_next

        while self.running:
            ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
            for gen in ready:
                handle_next(self, gen)

    def ended(self, gen: Any, error: str | None) -> None:
        """A task is over: on success nothing is left; else retry once or record `crashed`."""
        share = self.running.pop(gen)
        self.sweep.progress.cluster(self.per_node())
        if not share.left:
            return
        why = error or "the task ended without sending back all its cases"
        share.failures.append(f"on {share.label}: {why}")
        if share.node:
            share.avoid.add(share.node["node_id"])
        others = self.fitting(share.device, share.avoid)
        if share.attempt < MAX_ATTEMPTS and others:
            self.counts["retried"] += 1
            print(f"attnbench: the {name_of(share.backend)} task failed {share.failures[-1]}; "
                  f"retrying its {len(share.left)} case(s) on another node", file=sys.stderr)
            retry = Share(share.backend, share.device, list(share.left.values()),
                          attempt=share.attempt + 1, failures=share.failures, avoid=share.avoid)
            self.submit(retry, others[0])
            return
        tail = "" if others else "; no other node to retry on"
        for s, c in share.left.values():
            self.sweep.finish(new_record(
                s, c, share.backend, Status.CRASHED,
                error="the Ray task running this case failed " + "; then ".join(share.failures)
                + tail))
        share.left.clear()

    def per_node(self) -> dict[str, int]:
        """Tasks running on each node; those not started yet (or not heard of) as `queued`."""
        out: dict[str, int] = {}
        for share in self.running.values():
            name = node_label(share.node) if share.node else QUEUED
            out[name] = out.get(name, 0) + 1
        return out

    def take(self, share: Share, rec: dict[str, Any], sent: float | None = None) -> None:
        """A record from a node: checked against the share, marked with its node, written."""
        k = record_key(rec)
        if k not in share.left:  # not asked of this task, or sent twice: never written twice
            print(f"attnbench: ignored a record of {k} that task did not owe", file=sys.stderr)
            return
        del share.left[k]
        node = share.node or {}
        rec["node"] = {"host": node.get("host"), "node_id": node.get("node_id"),
                       "environment": node.get("env_id"), "cpu": node.get("cpu"),
                       "gpu": node.get("gpu"), "attempt": share.attempt, "sent": sent}
        self.sweep.finish(rec, roofs=self.roofs.get(str(node.get("node_id")), {}))

    def cancel_all(self) -> None:
        """Cancel every task still running (Ctrl-C, SIGTERM, or an error in the driver)."""
        for gen in list(self.running):
            try:
                self.ray.cancel(gen, force=True)
                self.counts["cancelled"] += 1
            except Exception as exc:  # noqa: BLE001 (a task that ended meanwhile, a lost node)
                print(f"attnbench: could not cancel a Ray task: {exc}", file=sys.stderr)
        self.running.clear()
