"""The physical ceiling of a device's FLOP/s: generous, so no real matmul roof is above it.

CPU: logical cores x the highest clock this machine reports x a generous FLOPs per cycle per
core (two AVX-512 FMA units: 32 float64, 64 float32; AMX tiles: 1024 bfloat16/float16), times
CPU_SLACK. CUDA: the dense tensor-core peak of the fastest part of the device's compute
capability, times CUDA_SLACK. A value above the ceiling cannot have been measured here.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

CPU_FLOPS_PER_CYCLE = {"float64": 32, "float32": 64, "bfloat16": 1024, "float16": 1024}
CPU_SLACK = 2.0  # turbo above the reported clock, SMT counted as cores, wider units to come
TURBO = 1.5  # /proc/cpuinfo's "cpu MHz" is the current (often base) clock
DEFAULT_GHZ = 6.5  # no clock readable: above any shipping CPU's turbo
# dense float16/bfloat16 tensor-core FLOP/s of the fastest part per compute capability major
# (V100/T4 125-130 T, A100 312 T, L40S 362 T, H100/H200 989 T, B200 2.25 P, RTX 50xx ~0.4 P)
CUDA_HALF_PEAK = {7: 130e12, 8: 370e12, 9: 1000e12, 10: 2500e12, 12: 1000e12}
CUDA_UNKNOWN = 1e16  # a capability not in the table (newer): above anything shipping
CUDA_DTYPE_SHARE = {"float16": 1.0, "bfloat16": 1.0, "float32": 0.5, "float64": 0.125}
CUDA_SLACK = 1.5
CPUINFO = "/proc/cpuinfo"
CPUFREQ = "/sys/devices/system/cpu"


def max_clock_ghz(cpufreq: str = CPUFREQ, cpuinfo: str = CPUINFO) -> float | None:
    """The highest clock of any core: cpufreq's cpuinfo_max_freq, else the largest
    "cpu MHz" of /proc/cpuinfo times TURBO; None when neither can be read."""
    khz = []
    for f in Path(cpufreq).glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        try:
            khz.append(int(f.read_text().strip()))
        except (OSError, ValueError):
            continue
    if khz and max(khz) > 0:
        return max(khz) / 1e6
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return None
    mhz = []
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == "cpu MHz":
            try:
                mhz.append(float(value))
            except ValueError:
                continue
    return max(mhz) / 1e3 * TURBO if mhz and max(mhz) > 0 else None


def cpu_ceiling(dtype: str, cores: int | None = None, ghz: float | None = None) -> float:
    """The most FLOP/s a CPU matmul in dtype can reach on this machine (generous)."""
    cores = cores or os.cpu_count() or 1
    ghz = ghz or max_clock_ghz() or DEFAULT_GHZ
    per_cycle = CPU_FLOPS_PER_CYCLE.get(dtype, max(CPU_FLOPS_PER_CYCLE.values()))
    return CPU_SLACK * cores * ghz * 1e9 * per_cycle


def parse_compute_cap(text: str) -> tuple[int, int] | None:
    """The highest compute capability in `nvidia-smi --query-gpu=compute_cap` output."""
    caps = []
    for line in text.splitlines():
        major, dot, minor = line.strip().partition(".")
        if dot and major.isdigit() and minor.isdigit():
            caps.append((int(major), int(minor)))
    return max(caps) if caps else None


@cache
def compute_capability() -> tuple[int, int] | None:
    """This machine's GPU compute capability from nvidia-smi (no CUDA context), or None."""
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_compute_cap(smi.stdout) if smi.returncode == 0 else None


def cuda_ceiling(dtype: str, capability: tuple[int, int] | None) -> float:
    """The most FLOP/s a CUDA matmul in dtype can reach on a device of that capability."""
    peak = CUDA_HALF_PEAK.get(capability[0], CUDA_UNKNOWN) if capability else CUDA_UNKNOWN
    return CUDA_SLACK * peak * CUDA_DTYPE_SHARE.get(dtype, 1.0)


def flops_ceiling(device: str, dtype: str) -> float:
    """The ceiling of a (device, dtype) on this machine; an unknown device gets the largest."""
    if device == "cpu":
        return cpu_ceiling(dtype)
    return cuda_ceiling(dtype, compute_capability() if device == "cuda" else None)


def stored_ceiling(device: str, dtype: str, cores: int | None) -> float:
    """A ceiling from a run's stored readings alone (no reading of this machine): its cores at
    DEFAULT_GHZ on the CPU, an unknown capability on CUDA. For judging a stored run."""
    if device == "cpu":
        return cpu_ceiling(dtype, cores=cores, ghz=DEFAULT_GHZ)
    return cuda_ceiling(dtype, None)
