"""Availability probes: whether a module imports, is new enough, and a device can be used."""

from __future__ import annotations

import importlib
import os
import re
import sys
from functools import cache

# device files without which no CUDA device can be opened on Linux: the NVIDIA driver's
# (bare metal, containers given a GPU) and WSL2's GPU paravirtualisation
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def first_line(exc: BaseException) -> str:
    """An exception's first line of text, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@cache
def import_failure(module: str) -> str | None:
    """The reason a module cannot be imported, or None when it imports."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # any failure (ImportError, OSError, RuntimeError) is a reason
        return f"{module} not importable: {first_line(exc)}"
    return None


def parse_version(text: str) -> tuple[int, ...] | None:
    """The leading numeric release of a version ('2.1.0.post1' -> (2, 1, 0)), or None."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(text or ""))
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


@cache
def version_failure(module: str, minimum: str) -> str | None:
    """Why the installed module is older than minimum (or has no readable version), or None."""
    failure = import_failure(module)
    if failure:
        return failure
    version = str(getattr(importlib.import_module(module), "__version__", "") or "")
    if not version:
        # imported here, not at the top: every worker imports this module, few get this far
        from importlib.metadata import version as installed

        try:
            version = installed(module.split(".")[0])
        except Exception:  # no distribution metadata: the version stays unknown
            version = ""
    found, need = parse_version(version), parse_version(minimum) or ()
    if found is None:
        return f"{module} has no readable version ({version!r}); need >= {minimum}"
    if found < need:
        return f"{module} {version} is older than {minimum}, the lowest version supported"
    return None


def no_gpu_driver(files: tuple[str, ...] = GPU_DEVICE_FILES) -> bool:
    """True on Linux when none of the GPU driver's device files exists: CUDA cannot be there,
    and torch (seconds to import) need not be asked. Elsewhere False: torch is asked."""
    return sys.platform.startswith("linux") and not any(os.path.exists(f) for f in files)


@cache
def device_failure(device: str) -> str | None:
    """The reason a device cannot be used here, or None."""
    if device == "cpu":
        return None
    if device == "cuda":
        if no_gpu_driver():
            return ("no CUDA device: no NVIDIA driver's device files here (/dev/nvidiactl, "
                    "/dev/nvidia0, /dev/dxg)")
        if import_failure("torch"):
            return "CUDA needs torch, which is not importable"
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device: torch.cuda.is_available() is False"
        return None
    return f"unknown device {device!r}"
