"""The best matmul roof seen per machine fingerprint: a small JSON cache shared by runs.

~/.cache/attnbench/roofs.json (ATTNBENCH_ROOF_CACHE names another file; "off" disables it).
A key names what sets a roof: host, CPU model, cores, the threads the workers use, the GPU and
the torch and NumPy versions; under it, per device and dtype, the best FLOP/s and the run that
measured it. Only a higher roof replaces a stored one, so a busy run never lowers the bar.

Each entry is signed (HMAC-SHA256) with a secret kept beside the cache (roofs.key, mode 0600)
that the run's parent creates and reads; an entry without a valid signature, or above the
device's physical ceiling (measure/ceiling.py), is ignored when read and never written.
docs/reliability.md says what this stops and what it does not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnbench.measure.ceiling import flops_ceiling

ENV = "ATTNBENCH_ROOF_CACHE"
Ceiling = Callable[[str, str], float]  # (device, dtype) -> the most FLOP/s it can reach


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


def secret_path(path: Path) -> Path:
    """The signing secret's file, beside the cache (roofs.json -> roofs.key)."""
    return path.with_suffix(".key")


def _secret(path: Path, create: bool) -> bytes | None:
    """The cache's signing secret; created (0600) when asked and missing; None if unreadable."""
    key = secret_path(path)
    try:
        return bytes.fromhex(key.read_text().strip()) or None
    except FileNotFoundError:
        if not create:
            return None
    except (OSError, ValueError):
        return None
    try:
        key.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another run made it first
        return _secret(path, create=False)
    except OSError:
        return None
    value = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as f:
        f.write(value.hex())
    return value


def _signature(secret: bytes, key: str, device: str, dtype: str, held: dict[str, Any]) -> str:
    text = json.dumps([key, device, dtype, float(held["flops_per_s"]), held.get("run_id"),
                       held.get("at")])
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def _clean(entry: Any, key: str, secret: bytes | None,
           ceiling: Ceiling) -> dict[str, dict[str, Any]]:
    """The trusted part of a machine's entry: {device: {dtype: {"flops_per_s": > 0, ...}}},
    signed with this cache's secret and under the device's ceiling; anything else (a hand
    edit, another tool's file, a value no hardware here reaches) is dropped, never trusted."""
    out: dict[str, dict[str, Any]] = {}
    if secret is None:
        return out
    for device, per in (entry.items() if isinstance(entry, dict) else ()):
        for dtype, held in (per.items() if isinstance(per, dict) else ()):
            value = held.get("flops_per_s") if isinstance(held, dict) else None
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and 0 < value <= ceiling(str(device), str(dtype))):
                continue
            sig = held.get("sig")
            if isinstance(sig, str) and hmac.compare_digest(
                    sig, _signature(secret, key, str(device), str(dtype), held)):
                out.setdefault(str(device), {})[str(dtype)] = held
    return out


def best_known(key: str, path: Path | None = None,
               ceiling: Ceiling = flops_ceiling) -> dict[str, dict[str, Any]]:
    """{device: {dtype: {"flops_per_s", "run_id", "at"}}} stored (and trusted) for a key."""
    path = path or cache_path()
    if path is None:
        return {}
    entry = _clean(_read(path).get(key), key, _secret(path, create=False), ceiling)
    return {device: {dtype: {k: v for k, v in held.items() if k != "sig"}
                     for dtype, held in per.items()} for device, per in entry.items()}


def remember(key: str, roofs: list[dict[str, Any]], run_id: str | None, at: str,
             path: Path | None = None, ceiling: Ceiling = flops_ceiling) -> list[str]:
    """Store each measured roof ({device: {dtype: FLOP/s}}) that beats the cached one; return
    a sentence for each roof refused as above the device's physical ceiling."""
    path = path or cache_path()
    if path is None:
        return []
    secret = _secret(path, create=True)
    data = _read(path)
    entry = _clean(data.get(key), key, secret, ceiling)
    changed, refused = False, []
    for per_device in roofs:
        for device, per in (per_device or {}).items():
            for dtype, value in (per or {}).items() if isinstance(per, dict) else ():
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                    continue
                top = ceiling(device, dtype)
                if value > top:
                    refused.append(f"the {dtype} roof of {value:.3g} FLOP/s on {device} is "
                                   f"above what this {device} can reach ({top:.3g}): not kept")
                    continue
                held = (entry.get(device) or {}).get(dtype) or {}
                if secret is not None and value > (held.get("flops_per_s") or 0):
                    new = {"flops_per_s": value, "run_id": run_id, "at": at}
                    entry.setdefault(device, {})[dtype] = {
                        **new, "sig": _signature(secret, key, device, dtype, new)}
                    changed = True
    if secret is not None and (changed or entry != data.get(key)):  # untrusted ones purged
        data[key] = entry
        _write(path, data)
    return refused


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the run goes on without a cache
