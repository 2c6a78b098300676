"""What an exception a backend raised means: its status (oom, error...) and whether the worker
must be restarted. Decided by the exception's type and its library status code, never by prose:
a plain ValueError("... out of memory ...") is an error, not an out-of-memory."""

from __future__ import annotations

import re
import sys

from attnbench.record import Status

# status codes of CUDA and its libraries that mean an allocation failed (runtime, driver,
# cuBLAS, cuDNN, cuSPARSE, cuSOLVER, cuFFT, cuRAND, NCCL's out-of-memory is a system error)
ALLOC_FAILED = ("cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY",
                "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED",
                "CUSPARSE_STATUS_ALLOC_FAILED", "CUSOLVER_STATUS_ALLOC_FAILED",
                "CUFFT_ALLOC_FAILED", "CURAND_STATUS_ALLOCATION_FAILED")
_ALLOC = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(ALLOC_FAILED) + r")(?![A-Za-z0-9_])",
                    re.IGNORECASE)
# what a CUDA error looks like where torch or a CUDA library raises it: a status code, or the
# "CUDA error:" / "cuDNN error:" prefix torch puts before the runtime's sentence. After any of
# them the process's CUDA context may be unusable (illegal memory access, device-side assert,
# unspecified launch failure, ...), so the worker is restarted.
_CUDA_STATUS = re.compile(
    r"(?<![A-Za-z0-9_])(cudaError[A-Za-z]+|CUDA_ERROR_[A-Z_]+|CU(BLAS|SPARSE|SOLVER|RAND)_STATUS_"
    r"[A-Z_]+|CUDNN_STATUS_[A-Z_]+|CUFFT_[A-Z_]+)(?![A-Za-z0-9_])|\b(CUDA|cuDNN|cuBLAS) error\b",
    re.IGNORECASE)
# names (in an exception class's MRO) of the libraries whose errors carry those codes
LIBRARY_TYPES = re.compile(r"cuda|cublas|cudnn|cusparse|cusolver|cufft|curand|nvrtc|accelerator",
                           re.IGNORECASE)
OOM_TYPE_NAMES = ("outofmemoryerror",)  # torch's, cupy's: out of memory by the type itself
MAX_CHAIN = 8  # causes and contexts followed (raise ... from an OutOfMemoryError)


def classify_failure(exc: BaseException) -> tuple[Status, bool]:
    """(status, restart_worker) for an exception a backend raised.

    oom: a MemoryError, torch.OutOfMemoryError (torch.cuda.OutOfMemoryError), an exception
    class named OutOfMemoryError, or a CUDA library error whose status code means allocation
    failure (CUBLAS_STATUS_ALLOC_FAILED...) - in the exception or the ones it was raised from.
    The worker is restarted after an oom (memory may still be held) and after any CUDA error
    (its context may be unusable). Unsupported is unsupported; anything else an error.
    """
    from attnbench.plugin.backend import Unsupported

    if isinstance(exc, Unsupported):
        return Status.UNSUPPORTED, False
    chain = _chain(exc)
    if any(_is_oom(e) for e in chain):
        return Status.OOM, True
    return Status.ERROR, any(_is_cuda_error(e) for e in chain)


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and the exceptions it was raised from or during (bounded, no cycles)."""
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(out) < MAX_CHAIN and all(e is not x for x in out):
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _names(exc: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(exc).__mro__]


def _library_error(exc: BaseException) -> bool:
    """Raised by torch's C++ side (a RuntimeError) or by a CUDA library's own class."""
    return isinstance(exc, RuntimeError) or any(LIBRARY_TYPES.search(n) for n in _names(exc))


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or isinstance(exc, _torch_oom()):
        return True
    if any(n.lower() in OOM_TYPE_NAMES for n in _names(exc)):
        return True
    return _library_error(exc) and _ALLOC.search(_text(exc)) is not None


def _is_cuda_error(exc: BaseException) -> bool:
    if any(LIBRARY_TYPES.search(n) for n in _names(exc)):
        return True  # torch.AcceleratorError, torch.cuda.CudaError, CUDADriverError...
    return isinstance(exc, RuntimeError) and _CUDA_STATUS.search(_text(exc)) is not None


def _torch_oom() -> tuple[type, ...]:
    """torch's out-of-memory classes when torch is loaded (no torch: none can be raised)."""
    torch = sys.modules.get("torch")
    found = [getattr(torch, "OutOfMemoryError", None),
             getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)]
    return tuple(t for t in found if isinstance(t, type))


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a __str__ that raises: no status code can be read from it
        return ""
