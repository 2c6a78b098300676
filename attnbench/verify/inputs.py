"""Seeded inputs shared by every backend, and the FLOP / byte model of a case."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from attnbench.case import Case
from attnbench.plugin.backend import Inputs

ELEM_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}


def case_seed(case: Case, seed: int) -> int:
    """A stable per-case seed: the same case gets the same inputs in every process."""
    key = case.id.replace(f"-{case.mode}", "")  # fwd and bwd of one shape share inputs
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % 2**32


def quantize(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to a dtype and return them as float64 again."""
    if dtype in ("float64", "float32", "float16"):
        return x.astype(dtype).astype(np.float64)
    import torch

    return torch.from_numpy(x).to(getattr(torch, dtype)).to(torch.float64).numpy()


def reference_arrays(case: Case, seed: int) -> dict[str, np.ndarray]:
    """q, k, v as float64 NumPy arrays holding values exactly representable in case.dtype."""
    rng = np.random.default_rng(case_seed(case, seed))
    b, d = case.batch, case.head_dim
    shapes = {
        "q": (b, case.heads_q, case.seq_q, d),
        "k": (b, case.heads_kv, case.seq_kv, d),
        "v": (b, case.heads_kv, case.seq_kv, d),
    }
    return {n: quantize(rng.standard_normal(s), case.dtype) for n, s in shapes.items()}


def to_framework(x: np.ndarray, framework: str, dtype: str, device: str) -> Any:
    """A new contiguous copy of a float64 NumPy array in a framework, dtype and device.

    Always a copy, even in float64 on the CPU: what a backend does to its inputs never
    reaches the shared arrays the oracle and the baseline read.
    """
    if framework == "numpy":
        return np.array(x, dtype=dtype, order="C", copy=True)
    if framework == "torch":
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x))
        return t.to(device=device, dtype=getattr(torch, dtype), copy=True).contiguous()
    raise ValueError(f"unknown framework {framework!r}")


def make_inputs(case: Case, arrays: dict[str, np.ndarray], framework: str) -> Inputs:
    """Inputs for one backend, converted from the shared float64 arrays."""
    conv = {n: to_framework(a, framework, case.dtype, case.device) for n, a in arrays.items()}
    return Inputs(case=case, q=conv["q"], k=conv["k"], v=conv["v"], scale=case.softmax_scale)


def visible_pairs(case: Case) -> int:
    """Exact count of (query, key) pairs a mask lets through, per batch and head."""
    if case.mask == "none":
        return case.seq_q * case.seq_kv
    off = case.seq_kv - case.seq_q
    # row i sees min(seq_kv, max(0, i + off + 1)) keys
    i = np.arange(case.seq_q, dtype=np.int64)
    return int(np.clip(i + off + 1, 0, case.seq_kv).sum())


MODE_FLOP_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}


def flops(case: Case) -> float:
    """Matmul FLOPs of a case: 4·B·Hq·visible_pairs·D forward, ×2.5 bwd, ×3.5 fwd_bwd."""
    fwd = 4.0 * case.batch * case.heads_q * visible_pairs(case) * case.head_dim
    return fwd * MODE_FLOP_FACTOR[case.mode]


def io_bytes(case: Case) -> int:
    """Bytes a fused kernel must move at least: q, k, v read and out written."""
    e = ELEM_BYTES[case.dtype]
    b, d = case.batch, case.head_dim
    return e * b * d * (2 * case.heads_q * case.seq_q + 2 * case.heads_kv * case.seq_kv)


def score_bytes(case: Case) -> int:
    """Bytes a naive kernel adds: the score and probability matrices."""
    return 2 * ELEM_BYTES[case.dtype] * case.batch * case.heads_q * case.seq_q * case.seq_kv
