"""The best matmul roof seen per machine fingerprint: a small JSON cache shared by runs.

~/.cache/attnbench/roofs.json (ATTNBENCH_ROOF_CACHE names another file; "off" disables it).
A key names what sets a roof: host, CPU model, cores, the threads the workers use, the GPU and
the torch and NumPy versions; under it, per device and dtype, the best FLOP/s and the run that
measured it. Only a higher roof replaces a stored one, so a busy run never lowers the bar.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "ATTNBENCH_ROOF_CACHE"


def cache_path() -> Path | None:
    """Where the cache lives, or None when ATTNBENCH_ROOF_CACHE=off."""
    given = os.environ.get(ENV)
    if given == "off":
        return None
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "attnbench" / "roofs.json"


def machine_key(env: dict[str, Any], threads: int | None) -> str:
    """The fingerprint a roof belongs to, readable: host | cpu | cores | threads | gpu | libs."""
    versions = env.get("versions") or {}
    gpu = env.get("gpu")
    gpu_name = gpu.get("name") if isinstance(gpu, dict) else None
    cores = (env.get("threads") or {}).get("affinity_cores") or env.get("cores")
    return " | ".join(str(x) for x in (
        env.get("host"), env.get("cpu"), f"{cores} cores", f"threads {threads or 'all'}",
        f"gpu {gpu_name or 'none'}", f"torch {versions.get('torch')}",
        f"numpy {versions.get('numpy')}"))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or damaged: start afresh (it is only a cache)
    return data if isinstance(data, dict) else {}


def _clean(entry: Any) -> dict[str, dict[str, Any]]:
    """The well-formed part of a machine's entry: {device: {dtype: {"flops_per_s": > 0, ...}}};
    anything else in it (a hand edit, another tool's file) is dropped, never trusted."""
    out: dict[str, dict[str, Any]] = {}
    for device, per in (entry.items() if isinstance(entry, dict) else ()):
        for dtype, held in (per.items() if isinstance(per, dict) else ()):
            value = held.get("flops_per_s") if isinstance(held, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                out.setdefault(str(device), {})[str(dtype)] = held
    return out


def best_known(key: str, path: Path | None = None) -> dict[str, dict[str, Any]]:
    """{device: {dtype: {"flops_per_s", "run_id", "at"}}} stored for a machine key."""
    path = path or cache_path()
    return _clean(_read(path).get(key)) if path else {}


def remember(key: str, roofs: list[dict[str, Any]], run_id: str | None, at: str,
             path: Path | None = None) -> None:
    """Store each measured roof ({device: {dtype: FLOP/s}}) that beats the cached one."""
    path = path or cache_path()
    if path is None:
        return
    data = _read(path)
    entry = _clean(data.get(key))
    changed = False
    for per_device in roofs:
        for device, per in (per_device or {}).items():
            for dtype, value in (per or {}).items() if isinstance(per, dict) else ():
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                    continue
                held = (entry.get(device) or {}).get(dtype) or {}
                if value > (held.get("flops_per_s") or 0):
                    entry.setdefault(device, {})[dtype] = {"flops_per_s": value,
                                                            "run_id": run_id, "at": at}
                    changed = True
    if changed:
        data[key] = entry
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=2))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home: the run goes on without a cache
