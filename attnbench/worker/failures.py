"""What a backend's exception means: the record's status, and whether the worker must restart.

Out of memory comes from the exception's type (MemoryError, torch's OutOfMemoryError), never
from words a backend could put in any message; a CUDA error that leaves the process's context
unusable (an illegal access, a device-side assert) restarts the worker.
"""

from __future__ import annotations

# CUDA errors after which the process's CUDA context is unusable: every later case would fail
POISON = ("cuda error", "illegal memory access", "device-side assert", "cublas_status",
          "cudaerror", "cudnn_status", "unspecified launch failure", "cuda_error_")


def classify(exc: BaseException) -> tuple[str, bool]:
    """(status, restart): "oom" or "error", and True when the worker must be replaced."""
    if _is_oom(exc):
        return "oom", True
    text = f"{type(exc).__name__}: {exc}".lower()
    return "error", any(s in text for s in POISON)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    return any(t.__name__ == "OutOfMemoryError" and t.__module__.startswith("torch")
               for t in type(exc).__mro__)
