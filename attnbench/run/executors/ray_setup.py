"""The executor the --executor and --ray-* flags ask for, checked before the run folder exists."""

from __future__ import annotations

import argparse
import math
from typing import Any

from attnbench.errors import UsageError


def executor_from_args(args: argparse.Namespace) -> Any:
    """The Ray executor when --executor ray, else None (the local one); --ray-* flags checked."""
    ray_flags = [f for f, given in (("--ray-address", args.ray_address),
                                    ("--ray-resource", args.ray_resource),
                                    ("--ray-cpus-per-task", (args.ray_cpus_per_task or 1) != 1))
                 if given]
    if (args.executor or "local") != "ray":
        if ray_flags:
            raise UsageError(f"{ray_flags[0]} needs --executor ray")
        return None
    if getattr(args, "frontier", False):
        raise UsageError("--frontier runs on this machine only: leave out --executor ray")
    if getattr(args, "wait_idle", None) is not None:
        raise UsageError("--wait-idle watches this machine only, and the cases of --executor ray "
                         "run on the cluster's nodes: leave out one of them")
    from attnbench.run.executors.ray_driver import RayExecutor, RayOptions

    executor = RayExecutor(RayOptions(args.ray_address, args.ray_cpus_per_task or 1,
                                      ray_resources(args.ray_resource)))
    executor.connect()  # a cluster that cannot be reached: exit 2 before the run folder exists
    return executor


def ray_resources(labels: list[str]) -> dict[str, float]:
    """--ray-resource LABEL[=AMOUNT] values as Ray's resources dict (amount 1 by default)."""
    out: dict[str, float] = {}
    for text in labels:
        label, _, amount = text.partition("=")
        try:
            value = float(amount) if amount else 1.0
        except ValueError:
            value = -1.0
        if not label or not math.isfinite(value) or value <= 0:
            raise UsageError(f"--ray-resource {text!r}: use LABEL or LABEL=AMOUNT (AMOUNT > 0)")
        out[label] = value
    return out
