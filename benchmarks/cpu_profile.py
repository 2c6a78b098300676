"""Where numba-cpu's time goes, per score (query-key pair), on one thread: the two BLAS matmuls
on a tile, the row max, the polynomial exp and the output rescale, against torch-sdpa's whole
forward per score. CPU time (time.process_time), so that a loaded machine distorts it less.

    .venv/bin/python benchmarks/cpu_profile.py [N]
"""

from __future__ import annotations

import sys
import time

import numpy as np

TILES = ((128, 512), (256, 512), (256, 1024))


def per_score_ns(fn, scores: int, reps: int = 3) -> float:
    """Median CPU nanoseconds of fn() per score."""
    fn()
    out = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return float(np.median(out)) / scores * 1e9


def parts(tq: int, tk: int, d: int = 64) -> dict[str, float]:
    """ns per score of each part of one tile step, repeated over ~2^24 scores."""
    from attnbench.backends.numba_cpu import kernel_module
    from numba import njit

    nk = kernel_module()

    @njit(fastmath=nk.FLAGS)
    def step(what, s, q, k, v, pv, acc, ib, lanes, c, ic, reps):  # pragma: no cover
        t = 0.0
        for _ in range(reps):
            if what == 0:
                np.dot(q, k.T, s)
            elif what == 1:
                np.dot(s, v, pv)
            elif what == 2:
                for r in range(s.shape[0]):
                    t += nk.row_max(s[r], lanes)
            elif what == 3:
                for r in range(s.shape[0]):
                    t += nk.row_exp(s[r], s[r, 0], ib, c, ic)
            else:
                for r in range(s.shape[0]):
                    acc[r, :] *= 0.999
                acc += pv
        return t

    rng = np.random.default_rng(0)
    f = np.float32
    q, k, v = (rng.standard_normal((n, d)).astype(f) for n in (tq, tk, tk))
    s = rng.standard_normal((tq, tk)).astype(f)
    pv, acc = np.zeros((tq, d), f), np.zeros((tq, d), f)
    c, ic = nk.exp_constants(f)
    reps = max(1, 2**24 // (tq * tk))
    names = ("q kᵀ matmul", "p v matmul", "row max", "exp", "rescale acc")
    out = {}
    for what, name in enumerate(names):
        args = (what, s.copy(), q, k, v, pv, acc, np.empty(tk, np.int32), np.empty(16, f), c, ic)
        out[name] = per_score_ns(lambda a=args: step(*a, reps), reps * tq * tk)
    return out


def whole(n: int, heads: int = 2, d: int = 64) -> dict[str, float]:
    """ns per score of a whole forward: numba-cpu and torch-sdpa, one thread, N = n."""
    import torch
    from attnbench.backends.numba_cpu import NumbaCPU

    from attnbench.case import Case
    from attnbench.plugin.backend import Inputs

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, heads, n, d)).astype(np.float32) for _ in range(3))
    fn = NumbaCPU().prepare(Inputs(Case(1, heads, heads, n, n, d), q, k, v, d**-0.5))
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    scores = heads * n * n
    return {"numba-cpu forward": per_score_ns(fn, scores),
            "torch-sdpa forward": per_score_ns(lambda: sdpa(tq, tk, tv), scores)}


def main() -> None:
    import numba
    import torch

    from attnbench.measure.threads import set_threads

    set_threads(1)
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
    print(f"one thread, CPU time, ns per score (float32, d64); load {open('/proc/loadavg').read()}")
    for tq, tk in TILES:
        got = parts(tq, tk)
        cells = ", ".join(f"{k} {v:.2f}" for k, v in got.items())
        print(f"tile {tq}x{tk}: {cells}; sum {sum(got.values()):.2f}")
    for name, ns in whole(n).items():
        print(f"N={n} {name}: {ns:.2f} ns per score ({256 / ns:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
