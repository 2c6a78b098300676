"""numba-cpu: a compiled @njit(parallel=True) kernel, one task per (batch, head), cached."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from attnbench import Backend, Capabilities, Inputs, hookimpl


def _cache_dir() -> str:
    """A writable folder for numba's on-disk cache (cache=True needs one)."""
    d = os.environ.get("NUMBA_CACHE_DIR") or str(Path.home() / ".cache" / "attnbench" / "numba")
    os.environ.setdefault("NUMBA_CACHE_DIR", d)
    Path(d).mkdir(parents=True, exist_ok=True)
    return d


@cache
def kernel() -> Callable[..., None]:
    """Compile (or load from cache) the kernel; imported lazily so numba stays optional."""
    _cache_dir()
    import numba

    @numba.njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
    def attention(q, k, v, out, scale, causal, offset):  # pragma: no cover - compiled
        b_n, hq, sq, d = q.shape
        hk, sk = k.shape[1], k.shape[2]
        group = hq // hk
        for task in numba.prange(b_n * hq):
            b, h = task // hq, task % hq
            kh = h // group
            s = np.empty(sk, dtype=q.dtype)
            for i in range(sq):
                last = sk - 1
                if causal:
                    last = min(sk - 1, i + offset)
                if last < 0:
                    out[b, h, i, :] = 0
                    continue
                m = -np.inf
                for j in range(last + 1):
                    acc = q.dtype.type(0)
                    for x in range(d):
                        acc += q[b, h, i, x] * k[b, kh, j, x]
                    s[j] = acc * scale
                    m = max(m, s[j])
                den = q.dtype.type(0)
                for j in range(last + 1):
                    s[j] = np.exp(s[j] - m)
                    den += s[j]
                for x in range(d):
                    out[b, h, i, x] = 0
                for j in range(last + 1):
                    p = s[j] / den
                    for x in range(d):
                        out[b, h, i, x] += p * v[b, kh, j, x]

    return attention


class NumbaCPU(Backend):
    name = "numba-cpu"
    framework = "numpy"
    requires = ("numba",)
    description = "Numba @njit(parallel=True): rows streamed per (batch, head), no score matrix"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float64", "float32"))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        fn = kernel()
        q, k, v = inputs.q, inputs.k, inputs.v
        scale = q.dtype.type(inputs.scale)
        causal = inputs.mask == "causal"
        offset = inputs.causal_offset

        def run() -> np.ndarray:
            out = np.empty_like(q)  # per call, as every other backend, so memory compares
            fn(q, k, v, out, scale, causal, offset)
            return out

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [NumbaCPU()]
