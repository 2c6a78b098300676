"""GPU readings during a run (nvidia-smi, no CUDA context): clocks, temperature, power,
slowdown reasons, and the compute processes on the GPUs that are not this run's own."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

SMI_GPU = "index,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,utilization.gpu"
REASON_FIELDS = ("clocks_event_reasons.active", "clocks_throttle_reasons.active")  # new, old
# clock event reasons (NVML bit masks) that slow a GPU down for a reason other than our work
SLOWDOWNS = {0x4: "software power cap", 0x8: "hardware slowdown",
             0x20: "software thermal slowdown", 0x40: "hardware thermal slowdown",
             0x80: "hardware power brake"}


def smi(args: list[str], timeout: float = 10.0) -> str:
    """nvidia-smi's CSV output (no header, no units); raises OSError where it cannot run."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise OSError("nvidia-smi not found")
    try:
        res = subprocess.run([exe, *args, "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.SubprocessError as exc:
        raise OSError(f"nvidia-smi failed: {exc}") from None
    if res.returncode != 0:
        raise OSError(f"nvidia-smi exited {res.returncode}: {res.stdout.strip()[:200]}")
    return res.stdout


def gpu_reading(run: Any = smi, own: frozenset[int] = frozenset(),
                stray: frozenset[int] = frozenset(),
                visible: frozenset[int] | None = None) -> dict[str, Any] | str:
    """Per GPU clocks, temperature, power, utilisation and slowdown reasons, and the compute
    processes on the GPUs: "other_processes" (not this run's), "stray_processes" (the run's,
    outside its live workers: ownership.py) and, given the pids visible here, "unattributed"
    (a pid this /proc does not list: another PID namespace, so it cannot be told apart from
    this run's own). own is the run's parent and live workers. run is nvidia-smi (tests pass
    a fake)."""
    try:
        rows, reasons = _gpu_rows(run)
        apps = [line.split(", ") for line in run(
            ["--query-compute-apps=pid,process_name,used_memory"]).strip().splitlines()]
    except OSError as exc:
        return f"unmeasured: {exc}"
    gpus = []
    for row in rows:
        keys = ("index", "sm_mhz", "max_sm_mhz", "temperature_c", "power_w", "utilization_pct")
        gpu: dict[str, Any] = dict(zip(keys, (_num(x) for x in row), strict=False))
        mask = _mask(row[len(keys)]) if len(row) > len(keys) and reasons else None
        gpu["slowdowns"] = ([why for bit, why in SLOWDOWNS.items() if mask & bit]
                            if mask is not None else "unmeasured: no clock event reasons")
        gpus.append(gpu)
    out: dict[str, Any] = {"gpus": gpus, "other_processes": [], "stray_processes": []}
    for a in apps:
        if not (a and a[0].strip()) or _num(a[0]) in own:
            continue
        pid = _num(a[0])
        entry = {"pid": pid, "name": a[1][:60] if len(a) > 1 else "?",
                 "memory_mib": _num(a[2]) if len(a) > 2 else None}
        if pid in stray:
            out["stray_processes"].append(entry)
        elif visible is not None and pid not in visible:
            out.setdefault("unattributed", []).append(entry)
        else:
            out["other_processes"].append(entry)
    return out


def _gpu_rows(run: Any) -> tuple[list[list[str]], bool]:
    """The per-GPU rows, with the clock event reasons where this driver knows either name."""
    for name in REASON_FIELDS:
        try:
            out = run([f"--query-gpu={SMI_GPU},{name}"])
            return [line.split(", ") for line in out.strip().splitlines()], True
        except OSError:
            continue
    out = run([f"--query-gpu={SMI_GPU}"])
    return [line.split(", ") for line in out.strip().splitlines()], False


def _num(text: str) -> float | int | str:
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        try:
            return float(t)
        except ValueError:
            return t


def _mask(text: str) -> int | None:
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None
