"""What differs between the environments two runs were measured in (a Ray run's: its nodes'),
and between the settings they were measured with (threads, timing budget, seed...)."""

from __future__ import annotations

import json
from typing import Any

from attnbench.report.groups import Run

ENV_KEYS = ("host", "cpu", "gpu", "python", "versions")
GPU_KEYS = ("name", "driver", "cuda")  # not clocks, temperature, power: they vary every run
# run.json config keys that change what is timed or how (None: the default, e.g. all threads)
SETTING_KEYS = ("threads", "budget_s", "seed", "repeat", "executor", "ray_cpus_per_task")


def environment_differences(base: Run, new: Run) -> list[str]:
    """What differs between the environments the two runs were measured in (device name,
    versions, host...): a Ray run's are its nodes', not its driver's."""
    bs, ns = measured_environments(base), measured_environments(new)
    out = _env_diff(bs[0], ns[0])
    if len(bs) > 1 or len(ns) > 1:
        if {_env_key(e) for e in bs} != {_env_key(e) for e in ns}:
            out.append(f"the runs' node environments differ: {len(bs)} kind(s) in the base run, "
                       f"{len(ns)} in the new one")
    return out


def setting_differences(base: Run, new: Run) -> list[str]:
    """The run.json settings that differ between two timed runs: `threads None vs 1`."""
    bc, nc = (run.meta.get("config") for run in (base, new))
    if not isinstance(bc, dict) or not isinstance(nc, dict):
        return []
    ray = bc.get("executor") == nc.get("executor") == "ray"  # else its CPUs per task: unused
    return [f"{key} {bc.get(key)!r} vs {nc.get(key)!r}" for key in SETTING_KEYS
            if bc.get(key) != nc.get(key) and (ray or key != "ray_cpus_per_task")]


def measured_environments(run: Run) -> list[dict[str, Any]]:
    """The environments a run's records were measured in, distinct (by what compare looks
    at), in order: its Ray nodes' (run.json `nodes`), else its own."""
    nodes = run.meta.get("nodes")
    envs = [n["environment"] for n in nodes.values()
            if isinstance(n, dict) and isinstance(n.get("environment"), dict)
            ] if isinstance(nodes, dict) else []
    return list({_env_key(e): e for e in envs or [run.environment]}.values())


def _env_key(env: dict[str, Any]) -> str:
    return json.dumps(_comparable(env), sort_keys=True, default=str)


def _env_diff(be: dict[str, Any], ne: dict[str, Any]) -> list[str]:
    out = []
    be, ne = _comparable(be), _comparable(ne)
    for key in ENV_KEYS:
        if key == "versions":
            bv, nv = be.get(key) or {}, ne.get(key) or {}
            for lib in sorted(set(bv) | set(nv)):
                if bv.get(lib) != nv.get(lib):
                    out.append(f"{lib} version {bv.get(lib)} vs {nv.get(lib)}")
        elif be.get(key) != ne.get(key):
            out.append(f"{key} {be.get(key)!r} vs {ne.get(key)!r}")
    return out


def _comparable(env: dict[str, Any]) -> dict[str, Any]:
    """The environment without what changes between any two runs (GPU clocks, temperature)."""
    gpu = env.get("gpu")
    view = {k: env.get(k) for k in ENV_KEYS}
    if isinstance(gpu, dict):
        view["gpu"] = {k: gpu.get(k) for k in GPU_KEYS}
    return view
