"""The environment fingerprint stored in run.json: host, CPU, GPU, threads, versions, code."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LIBRARIES = ("attnbench", "numpy", "torch", "numba", "scipy", "pandas", "pluggy",
             "xformers", "flash-attn", "triton")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The project's commit when running from a git checkout, else None."""
    here = Path(__file__).resolve().parent.parent
    try:
        res = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() + ("-dirty" if dirty else "")


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def threads() -> dict[str, Any]:
    """Thread counts of this process (torch, numba, BLAS via threadpoolctl) and thread env vars.

    The counts the cases ran with are those the workers set: run.json's `worker_process`.
    """
    out: dict[str, Any] = {"os_cpu_count": os.cpu_count(),
                           "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ}}
    try:
        out["affinity_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    if "numba" in sys.modules:
        out["numba"] = sys.modules["numba"].get_num_threads()
    try:
        from threadpoolctl import threadpool_info

        out["blas"] = [{"api": i.get("internal_api"), "threads": i.get("num_threads")}
                       for i in threadpool_info()]
    except Exception as exc:  # threadpoolctl is best effort
        out["blas"] = f"unknown: {exc}"
    return out


SMI_FIELDS = ("name", "driver_version", "memory.total", "clocks.sm", "clocks.mem",
              "clocks.max.sm", "temperature.gpu", "power.draw", "pstate")


def gpu_state() -> list[dict[str, str]] | None:
    """Per-GPU name, driver, memory, clocks, temperature, power (nvidia-smi; no CUDA init)."""
    try:
        smi = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(SMI_FIELDS)}",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if smi.returncode != 0 or not smi.stdout.strip():
        return None
    rows = [line.split(", ") for line in smi.stdout.strip().splitlines()]
    return [dict(zip(SMI_FIELDS, row, strict=False)) for row in rows]


def gpu() -> dict[str, Any] | None:
    """GPU name, driver, clocks (nvidia-smi) and the CUDA version torch was built with."""
    state = gpu_state()
    if state is None:
        return None
    info: dict[str, Any] = {"name": state[0].get("name"), "driver": state[0].get("driver_version"),
                            "devices": state}
    try:
        import torch

        info["cuda"] = torch.version.cuda
    except ImportError:
        info["cuda"] = None
    return info


def plugin_files(specs: Sequence[str], helpers: Mapping[str, Sequence[str]] | None = None
                 ) -> dict[str, str | None]:
    """Each --plugin (a file, or a module name) -> "sha256:<hex>" of the file that defines it
    (None for a module that has no file), and each module of its own it imports (helpers:
    the catalog's module_files) as "SPEC imports FILE". Resume refuses a run whose plugin
    files changed."""
    out: dict[str, str | None] = {}
    for spec in specs:
        path = spec if spec.endswith(".py") or os.sep in spec else _module_file(spec)
        out[spec] = None if path is None else _digest(path)
        for helper in (helpers or {}).get(spec, ()):
            out[f"{spec} imports {helper}"] = _digest(helper)
    return out


def _digest(path: str) -> str:
    try:
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def _module_file(name: str) -> str | None:
    """The source file of a module given by name (already imported by the registry, or found
    without importing it)."""
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) if module is not None else None
    if origin is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None and spec.has_location else None
    return origin


def fingerprint(plugins: Sequence[str] = (), helpers: Mapping[str, Sequence[str]] | None = None
                ) -> dict[str, Any]:
    """Everything that makes two runs comparable, or not (plugins: the --plugin specs;
    helpers: the modules of their own they import)."""
    return {
        "host": socket.gethostname(), "platform": platform.platform(), "cpu": cpu_model(),
        "cores": os.cpu_count(), "python": sys.version.split()[0], "versions": versions(),
        "threads": threads(), "gpu": gpu(), "git_commit": git_commit(),
        "plugin_files": plugin_files(plugins, helpers),
    }
