"""numba-cpu: FlashAttention's tiled online softmax compiled by Numba, BLAS on tiles, cached.

The kernel is in backends/numba_kernel.py (it imports numba, so it is imported only when the
backend prepares a case). Numba's on-disk cache lives in NUMBA_CACHE_DIR, by default
~/.cache/attnbench/numba: the first call of a run loads the kernel from there (or compiles it
once, when the cache is cold); that cost stays in first_call_ms, never in the timed samples.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from attnbench import Backend, Capabilities, Inputs, hookimpl
from attnbench import variants as var

TILE_Q, TILE_K = 256, 512  # chosen by measurement: docs/cpu_kernels.md
SERIAL_WORK = 2**21  # visible (query, key) pairs over all heads under which one thread runs
WHY_NOT = {  # the variants the kernel lacks, and why (`attnbench list` and the records say so)
    "packed": "the kernel reads padded (batch, heads, seq, d) arrays, not sequences packed "
              "one after another by cu_seqlens (varlen)",
    "paged": "the kernel reads each sequence's keys contiguously, not pages through a block "
             "table",
    "bias": "the kernel adds no score-bias array (ALiBi it computes from the slopes)",
    "sinks": "the kernel's online softmax has no sink term (numpy-flash shows the two lines "
              "it takes: not done here)",
    "lse": "the compiled kernel writes the output only; its row max and sum stay in registers",
    "kv_quant": "the kernel reads k and v in the case dtype, not float8 or int8 codes",
    "mask_mod": "the kernel walks each row's one interval of keys (causal, window, lengths, "
                "documents); a mask function's arbitrary set of keys does not fit it",
}


def cache_dir() -> str:
    """A writable folder for numba's on-disk cache (cache=True needs one)."""
    d = os.environ.get("NUMBA_CACHE_DIR") or str(Path.home() / ".cache" / "attnbench" / "numba")
    os.environ.setdefault("NUMBA_CACHE_DIR", d)
    Path(d).mkdir(parents=True, exist_ok=True)
    import numba

    if not numba.config.CACHE_DIR:  # numba read its config before the variable was set
        numba.config.CACHE_DIR = d
    return d


@cache
def kernel_module() -> ModuleType:
    """The compiled kernel's module (numba and scipy's BLAS, which its np.dot calls, loaded)."""
    cache_dir()
    import scipy.linalg.cython_blas  # noqa: F401  (loaded now, so that threadpoolctl sees it)
    from attnbench.backends import numba_kernel

    return numba_kernel


@cache
def blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries (scipy's among them)."""
    kernel_module()
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def document_bounds(inputs: Inputs) -> np.ndarray:
    """(2, seq): first and last position of each position's document; (2, 0) without."""
    docs = inputs.doc_ids
    if docs is None:
        return np.zeros((2, 0), dtype=np.int64)
    ends = np.cumsum(inputs.case.doc_lens)
    return np.stack([(ends - np.asarray(inputs.case.doc_lens))[docs], ends[docs] - 1])


def kernel_args(inputs: Inputs) -> dict[str, Any]:
    """The kernel's variant arguments, in the case dtype where they enter the arithmetic."""
    dt = inputs.q.dtype
    slopes = inputs.alibi_slopes
    return {"scale": dt.type(inputs.scale), "causal": inputs.mask == "causal",
            "q_lens": inputs.q_lens, "kv_lens": inputs.kv_lens,
            "wl": inputs.window[0], "wr": inputs.window[1], "docs": document_bounds(inputs),
            "slopes": np.empty(0, dt) if slopes is None else slopes.astype(dt),
            "softcap": dt.type(inputs.softcap or 0)}


def visible_pairs(case: Any) -> int:
    """(query, key) pairs the case computes, over every batch element and query head."""
    return int(var.visible_pairs_per_batch(case).sum()) * case.heads_q


class NumbaCPU(Backend):
    name = "numba-cpu"
    framework = "numpy"
    requires = ("numba", "scipy")
    description = ("Numba @njit(parallel=True): FlashAttention tiles, BLAS matmuls on tiles, "
                   "online softmax, masked tiles skipped")
    capabilities = Capabilities(devices=("cpu",), dtypes=("float64", "float32"),
                                variants=("window", "lengths", "documents", "alibi", "softcap",
                                          "dv"), why_not=WHY_NOT)

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        nk = kernel_module()
        q, k, v = (np.ascontiguousarray(x) for x in (inputs.q, inputs.k, inputs.v))
        args = kernel_args(inputs)
        consts, ints = nk.exp_constants(q.dtype)
        shape = (*q.shape[:3], v.shape[3])
        pairs = visible_pairs(inputs.case)
        serial = pairs < SERIAL_WORK
        fn = nk.attention_serial if serial else nk.attention
        ctl = blas_controller()

        def call(out: np.ndarray) -> None:
            fn(q, k, v, out, args["scale"], args["causal"], args["q_lens"], args["kv_lens"],
               args["wl"], args["wr"], args["docs"], args["slopes"], args["softcap"],
               TILE_Q, TILE_K, consts, ints)

        def run() -> np.ndarray:
            out = np.empty(shape, dtype=q.dtype)  # per call, as every other backend
            if serial:
                call(out)
            else:  # the parallel tasks are the threads: BLAS inside them must be
                # single-threaded, or it oversubscribes the cores (OpenBLAS in OpenMP may hang)
                with ctl.limit(limits=1, user_api="blas"):
                    call(out)
            if not inputs.reported:  # after the first call: numba knows what it loaded
                inputs.report(**nk.what_ran(fn, q.dtype, not serial))
            return out

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [NumbaCPU()]
