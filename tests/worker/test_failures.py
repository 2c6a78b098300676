"""classify_failure: out-of-memory from the exception's type and its library status code, never
from its words; a worker restart after an oom and after any CUDA error. Real exception objects:
torch's own classes where torch has them (torch.OutOfMemoryError, torch.AcceleratorError,
torch.cuda.CudaError, and RuntimeError, which is what torch raises for cuBLAS and cuDNN status
codes); classes named like cupy's CUBLASError / CUDADriverError only where torch has none."""

from __future__ import annotations

import pytest
import torch

from attnbench.plugin.backend import Unsupported
from attnbench.record import Status
from attnbench.worker.failures import classify_failure

ILLEGAL = ("CUDA error: an illegal memory access was encountered\nSearch for "
           "`cudaErrorIllegalAddress' in https://docs.nvidia.com/cuda/cuda-runtime-api/"
           "group__CUDART__TYPES.html for more information.")


class CUBLASError(RuntimeError):
    """Named like cupy_backends.cuda.libs.cublas.CUBLASError (torch has no such class)."""


class CUDADriverError(Exception):
    """Named like cupy_backends.cuda.api.driver.CUDADriverError (torch has no such class)."""


def cuda_error(text: str) -> torch.cuda.CudaError:
    """A real torch.cuda.CudaError (its constructor asks the CUDA runtime for the text, which a
    CPU build lacks: the object is made as the constructor would leave it)."""
    exc = torch.cuda.CudaError.__new__(torch.cuda.CudaError)
    RuntimeError.__init__(exc, text)
    return exc


def chained() -> BaseException:
    try:
        try:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        except torch.OutOfMemoryError as inner:
            raise ValueError("the kernel failed") from inner
    except ValueError as exc:
        return exc


@pytest.mark.parametrize("exc,status,restart", [
    (MemoryError(), Status.OOM, True),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), Status.OOM, True),
    (torch.cuda.OutOfMemoryError("CUDA out of memory."), Status.OOM, True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
     Status.OOM, True),
    (RuntimeError("cuDNN error: cudnn_status_alloc_failed"), Status.OOM, True),  # any case
    (torch.AcceleratorError("CUDA error: out of memory\nSearch for `cudaErrorMemoryAllocation'"),
     Status.OOM, True),
    (CUBLASError("CUBLAS_STATUS_ALLOC_FAILED"), Status.OOM, True),
    (CUDADriverError("CUDA_ERROR_OUT_OF_MEMORY: out of memory"), Status.OOM, True),
    (chained(), Status.OOM, True),  # raised from an OutOfMemoryError
    (torch.AcceleratorError(ILLEGAL), Status.ERROR, True),
    (torch.AcceleratorError("CUDA error: device-side assert triggered"), Status.ERROR, True),
    (RuntimeError("CUDA error: unspecified launch failure"), Status.ERROR, True),
    (cuda_error("an illegal memory access was encountered"), Status.ERROR, True),
    (CUDADriverError("CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access"), Status.ERROR, True),
    (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm`"), Status.ERROR,
     True),
    (ValueError("the tile ran out of memory"), Status.ERROR, False),
    (ValueError("... out of memory ..."), Status.ERROR, False),
    (RuntimeError("CUDA out of memory (prose in a plain RuntimeError)"), Status.ERROR, False),
    (ValueError("CUBLAS_STATUS_ALLOC_FAILED"), Status.ERROR, False),  # not a library's error
    (RuntimeError("XCUBLAS_STATUS_ALLOC_FAILEDX"), Status.ERROR, False),  # not the code itself
    (KeyError("q"), Status.ERROR, False),
    (Unsupported("no paged layout"), Status.UNSUPPORTED, False),
], ids=lambda x: x if isinstance(x, (str, bool)) else type(x).__name__)
def test_status_and_restart(exc, status, restart):
    assert classify_failure(exc) == (status, restart)


def test_an_exception_whose_str_raises_is_an_error():
    class Weird(RuntimeError):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert classify_failure(Weird()) == (Status.ERROR, False)


def test_a_cycle_of_causes_ends():
    a, b = RuntimeError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert classify_failure(a) == (Status.ERROR, False)
