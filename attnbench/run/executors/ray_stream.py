"""What the Ray driver does with each message a task streams back (see ray_node.py's list)."""

from __future__ import annotations

from typing import Any, Protocol

from attnbench.plugin.backend import name_of
from attnbench.record import Status, new_record
from attnbench.run.executors.ray_share import Share


class RayExecutor(Protocol):
    """What these handlers use of the driver (ray_driver.RayExecutor)."""

    ray: Any
    sweep: Any
    running: dict[Any, Share]
    nodes: dict[str, dict[str, Any]]
    roofs: dict[str, dict[str, Any]]

    def ended(self, gen: Any, error: str | None) -> None: ...

    def take(self, share: Share, rec: dict[str, Any], sent: float | None = None) -> None: ...

    def per_node(self) -> Any: ...


def one_line(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its text."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def handle_next(ex: RayExecutor, gen: Any) -> None:
    """Take the next message of a task whose next message is ready (or its end, or its error)."""
    share = ex.running[gen]
    try:
        msg = ex.ray.get(next(gen))
    except StopIteration:
        ex.ended(gen, None)
        return
    except ex.ray.exceptions.RayError as exc:  # node died, Ray worker killed, node code raised
        ex.ended(gen, one_line(exc))
        return
    if "record" in msg:
        ex.take(share, msg["record"], msg.get("sent"))
    elif "start" in msg:
        where = share.label
        ex.sweep.progress.starting(str(msg["start"]), f"{name_of(share.backend)} on {where}")
    elif "node" in msg:
        on_node(ex, share, msg["node"])
    elif "roofs" in msg:
        on_roofs(ex, share, msg["roofs"])
    elif "stats" in msg:
        on_stats(ex, msg)
    elif "missing" in msg:
        for s, c in list(share.left.values()):
            ex.sweep.finish(new_record(s, c, share.backend, Status.ERROR,
                                       error=f"{msg['missing']} ({share.label})"))
        share.left.clear()


def on_node(ex: RayExecutor, share: Share, info: dict[str, Any]) -> None:
    """A task says where it runs: the node joins run.json's `nodes` the first time."""
    share.node = info
    node_id = str(info.get("node_id"))
    if node_id not in ex.nodes:
        ex.nodes[node_id] = {k: info.get(k) for k in ("host", "ip", "env_id", "cpu", "gpu",
                                                      "environment")}
        ex.sweep.writer.write_meta(nodes=ex.nodes)
    ex.sweep.progress.cluster(ex.per_node())


def on_roofs(ex: RayExecutor, share: Share, roofs: dict[str, Any]) -> None:
    """A node's matmul roofs, kept for the roof fraction of its records and in run.json."""
    node_id = str((share.node or {}).get("node_id"))
    ex.roofs.setdefault(node_id, {}).update(roofs)
    if node_id in ex.nodes:
        ex.nodes[node_id]["roofs"] = ex.roofs[node_id]
        ex.sweep.writer.write_meta(nodes=ex.nodes)


def on_stats(ex: RayExecutor, msg: dict[str, Any]) -> None:
    """A task's worker starts and overheads, added to the run's (run.json's `workers`)."""
    mine, theirs = ex.sweep.worker_stats, msg.get("stats") or {}
    mine["starts"].extend(theirs.get("starts") or [])
    mine["overhead_ms"].extend(theirs.get("overhead_ms") or [])
    mine["restarts"] += int(theirs.get("restarts") or 0)
    if ex.sweep.tasks.process_info is None:
        ex.sweep.tasks.process_info = msg.get("process")
