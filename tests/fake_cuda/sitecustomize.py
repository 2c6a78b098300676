"""Test aid: torch.cuda.is_available() says True with no CUDA behind it (see docs/gpu.md).

Put this folder first on PYTHONPATH (`PYTHONPATH=tests/fake_cuda .venv/bin/python -m pytest
...`): every process of the run, the CLI's and the workers' too, then believes a GPU is there,
as on a GPU box. A test that means the CPU but leaves `--device` at auto then plans CUDA cases
and fails, while a test pinned to the CPU passes; any real CUDA work fails ("Torch not compiled
with CUDA enabled"), so only the device choice is exercised, never a CUDA result.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any


def _pretend_torch(module: ModuleType) -> None:
    module.cuda.is_available = lambda: True  # type: ignore[attr-defined]
    module.cuda.device_count = lambda: 1  # type: ignore[attr-defined]


def _pretend_driver(module: ModuleType) -> None:
    """attnbench asks torch only where the driver's device files exist: pretend they do."""
    module.no_gpu_driver = lambda *args: False  # type: ignore[attr-defined]


PRETEND = {"torch": _pretend_torch, "attnbench.plugin.probes": _pretend_driver}


class _PretendCuda(importlib.abc.MetaPathFinder):
    """Finds torch (and attnbench's probes) as usual, then patches them once imported."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in PRETEND:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            PRETEND[name](module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _PretendCuda())
