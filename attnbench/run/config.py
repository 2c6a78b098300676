"""The run.json `config`: the flags a run was started with, as --resume reads them back."""

from __future__ import annotations

import argparse
from typing import Any


def run_config(args: argparse.Namespace, scenarios: list[Any], opts: Any) -> dict[str, Any]:
    """What run.json keeps of the flags (run/resume.py FLAGS names the keys it adopts)."""
    return {"scenarios": [{"name": s.name, "path": s.path, "spec": s.spec} for s in scenarios],
            "backends": args.backend, "devices": args.device, "dtypes": args.dtype,
            "seed": args.seed, "budget_s": args.budget, "plugins": args.plugin,
            "timed": args.command == "run", "timeout_s": args.timeout,
            "threads": getattr(args, "threads", None),
            "executor": args.executor or "local", "ray_address": args.ray_address,
            "ray_cpus_per_task": args.ray_cpus_per_task, "ray_resources": args.ray_resource,
            "repeat": opts.repeat}
