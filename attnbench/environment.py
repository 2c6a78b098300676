"""The environment fingerprint stored in run.json: host, CPU, GPU, threads, versions, commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
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


def threads() -> dict[str, Any]:
    """Thread counts of torch, numba and the BLAS libraries (via threadpoolctl)."""
    out: dict[str, Any] = {"os_cpu_count": os.cpu_count()}
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


def gpu() -> dict[str, Any] | None:
    """GPU name, driver and CUDA version when torch sees a CUDA device."""
    if "torch" not in sys.modules:
        return None
    torch = sys.modules["torch"]
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {"name": props.name, "cuda": torch.version.cuda,
                            "memory_gib": round(props.total_memory / 2**30, 1),
                            "capability": f"{props.major}.{props.minor}"}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.mem",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
        info["driver_clocks"] = smi.stdout.strip().splitlines()[0] if smi.stdout else None
    except (OSError, subprocess.SubprocessError):
        info["driver_clocks"] = None
    return info


def fingerprint() -> dict[str, Any]:
    """Everything that makes two runs comparable, or not."""
    return {
        "host": socket.gethostname(), "platform": platform.platform(), "cpu": cpu_model(),
        "cores": os.cpu_count(), "python": sys.version.split()[0], "versions": versions(),
        "threads": threads(), "gpu": gpu(), "git_commit": git_commit(),
    }
