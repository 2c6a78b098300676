"""Seeded inputs shared by every backend, and the FLOP / byte model of a case."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from attnbench import variants
from attnbench.case import Case
from attnbench.plugin.inputs import Inputs
from attnbench.verify import kv_quant, layouts

ELEM_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
OUTLIER_GAIN = 12.0  # inputs="outliers": a few channels of q and k this many times larger
OUTLIER_SHARE = 32  # one outlier channel per this many (at least one)
PEAKED_GAIN = 16.0  # inputs="peaked": q this many times larger (scores' spread ×16)
NUMPY_BFLOAT16 = ("NumPy has no bfloat16 dtype: a backend of framework 'numpy' cannot be given "
                  "bfloat16 inputs; take bfloat16 out of its capabilities' dtypes")


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
    """q, k, v (and bias, and the paged pools' spare slots) as float64 NumPy arrays holding
    values exactly representable in case.dtype; padded positions hold values too."""
    rng = np.random.default_rng(case_seed(case, seed))
    b, d = case.batch, case.head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "q": (b, case.heads_q, case.seq_q, d),
        "k": (b, case.heads_kv, case.seq_kv, d),
        "v": (b, case.heads_kv, case.seq_kv, case.dv),
    }
    bias = variants.bias_shape(case)
    if bias is not None:
        shapes["bias"] = bias
    if case.layout == "paged":
        slots = layouts.pool_pages(case) * layouts.page_size(case) * case.heads_kv
        shapes["k_fill"], shapes["v_fill"] = (slots, d), (slots, case.dv)
    if case.sinks:
        shapes["sinks"] = (case.heads_q,)  # one logit per query head, like a score
    drawn = {n: rng.standard_normal(s) for n, s in shapes.items()}
    shape_inputs(case, drawn, rng)
    out = {n: quantize(x, case.dtype) for n, x in drawn.items()}
    if case.kv_quant != "none":
        kv_quant.quantize_kv(case, out)  # k and v: dequantized codes; k_scale, v_scale
    return out


def shape_inputs(case: Case, arrays: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Give standard normal q, k (in place) the case's `inputs` distribution: outliers (a few
    channels OUTLIER_GAIN x larger in q and k, as real activations have), equal_keys (every
    key of a sequence and head the same vector: a uniform softmax), peaked (q PEAKED_GAIN x:
    nearly one-hot rows)."""
    if case.inputs == "outliers":
        n = max(1, case.head_dim // OUTLIER_SHARE)
        channels = rng.choice(case.head_dim, size=n, replace=False)
        arrays["q"][..., channels] *= OUTLIER_GAIN
        arrays["k"][..., channels] *= OUTLIER_GAIN
    elif case.inputs == "equal_keys":
        arrays["k"][:] = arrays["k"][:, :, :1, :]
    elif case.inputs == "peaked":
        arrays["q"] *= PEAKED_GAIN


def poison(case: Case, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copies of q, k, v (and the paged pools' spare slots) with NaN at every position no row
    may read: queries past q_lens, keys and values past kv_lens, spare page slots and the
    pool's free pages."""
    q_lens, kv_lens = variants.lengths(case)
    out = dict(arrays)
    for name, lens in (("q", q_lens), ("k", kv_lens), ("v", kv_lens)):
        x = out[name] = arrays[name].copy()
        for b, n in enumerate(lens):
            x[b, :, int(n):] = np.nan
    for name in ("k_fill", "v_fill"):
        if name in arrays:
            out[name] = np.full_like(arrays[name], np.nan)
    return out


def to_framework(x: np.ndarray, framework: str, dtype: str, device: str) -> Any:
    """A new contiguous copy of a float64 NumPy array in a framework, dtype and device.

    Always a copy, even in float64 on the CPU: what a backend does to its inputs never
    reaches the shared arrays the oracle and the baseline read.
    """
    if framework == "numpy":
        if dtype == "bfloat16":
            raise TypeError(NUMPY_BFLOAT16)
        return np.array(x, dtype=dtype, order="C", copy=True)
    if framework == "torch":
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x))
        return t.to(device=device, dtype=getattr(torch, dtype), copy=True).contiguous()
    raise ValueError(f"unknown framework {framework!r}")


def layout_arrays(case: Case, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """q, k, v (float64) in the case's layout, with the layout's index arrays (int32); NaN in
    the padding when the case is poisoned."""
    if case.poison:
        arrays = poison(case, arrays)
    out = {n: arrays[n] for n in ("q", "k", "v")}
    if case.layout == "packed":
        q_lens, kv_lens = variants.lengths(case)
        out = {"q": layouts.pack(arrays["q"], q_lens), "k": layouts.pack(arrays["k"], kv_lens),
               "v": layouts.pack(arrays["v"], kv_lens),
               "cu_seqlens_q": layouts.cu_seqlens(q_lens),
               "cu_seqlens_k": layouts.cu_seqlens(kv_lens)}
    elif case.layout == "paged":
        table = layouts.block_table(case)
        out["k"] = layouts.page(arrays["k"], case, table, arrays["k_fill"])
        out["v"] = layouts.page(arrays["v"], case, table, arrays["v_fill"])
        out["block_table"] = table
    return out


def pristine_arrays(case: Case, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The values every array handed to a backend must still hold: the layout's q, k, v and
    index arrays, and the bias (float64, what make_inputs converts); quantized k and v as
    their codes, with their scales."""
    extra: dict[str, np.ndarray] = {n: arrays[n] for n in ("bias", "sinks", "k_scale",
                                                           "v_scale") if n in arrays}
    out = {**layout_arrays(case, arrays), **extra}
    if case.kv_quant != "none":
        out["k"], out["v"] = kv_quant.codes_of(arrays, "k"), kv_quant.codes_of(arrays, "v")
    return out


def make_inputs(case: Case, arrays: dict[str, np.ndarray], framework: str) -> Inputs:
    """Inputs for one backend, converted from the shared float64 arrays (new copies)."""
    lay = layout_arrays(case, arrays)

    def conv(a: np.ndarray) -> Any:
        return to_framework(a, framework, case.dtype, case.device)

    def qkv(a: np.ndarray) -> Any:
        return strided(conv(a), case.strides, framework)

    bias = conv(arrays["bias"]) if "bias" in arrays else None
    sinks = conv(arrays["sinks"]) if "sinks" in arrays else None
    index = {n: lay[n].copy() for n in ("cu_seqlens_q", "cu_seqlens_k", "block_table")
             if n in lay}
    if case.kv_quant != "none":  # codes in the format, scales in float32 (padded layout)
        k, v = (kv_quant.to_codes(kv_quant.codes_of(arrays, n), case.kv_quant, framework,
                                  case.device) for n in ("k", "v"))
        k_scale, v_scale = (to_framework(arrays[f"{n}_scale"], framework, "float32",
                                         case.device) for n in ("k", "v"))
        return Inputs(case=case, q=qkv(lay["q"]), k=k, v=v, scale=case.softmax_scale,
                      bias=bias, sinks=sinks, k_scale=k_scale, v_scale=v_scale)
    return Inputs(case=case, q=qkv(lay["q"]), k=qkv(lay["k"]), v=qkv(lay["v"]),
                  scale=case.softmax_scale, bias=bias, sinks=sinks, **index)


SLICE_PAD = 8  # strides="sliced": channels of the wider buffer beside each head's (NaN)


def strided(x: Any, kind: str, framework: str) -> Any:
    """A (batch, heads, seq, dim) array as the view the case's strides name: "transposed", a
    view of a contiguous (batch, seq, heads, dim) buffer; "sliced", of a (batch, seq, heads,
    dim + SLICE_PAD) one whose extra channels hold NaN; "contiguous", x itself."""
    if kind == "contiguous":
        return x
    b, h, s, d = x.shape
    pad = SLICE_PAD if kind == "sliced" else 0
    if framework == "torch":
        import torch

        wide = torch.full((b, s, h, d + pad), float("nan"), dtype=x.dtype, device=x.device)
        wide[..., :d] = x.transpose(1, 2)
        return wide[..., :d].transpose(1, 2)
    buf = np.full((b, s, h, d + pad), np.nan, dtype=x.dtype)
    buf[..., :d] = np.swapaxes(x, 1, 2)
    return np.swapaxes(buf[..., :d], 1, 2)


def visible_pairs(case: Case) -> int:
    """Exact count of (query, key) pairs the case's mask lets through, summed over the batch,
    per head (attnbench.variants: counted from each row's interval of keys, or from the
    visibility itself with a mask function)."""
    return int(variants.visible_pairs_per_batch(case).sum())


MODE_FLOP_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}


def flops(case: Case) -> float:
    """Matmul FLOPs of a case: 2·Hq·pairs·(D + Dv) forward (q kᵀ and p v on the visible
    pairs, pairs summed over the batch), ×2.5 bwd, ×3.5 fwd_bwd."""
    fwd = 2.0 * case.heads_q * visible_pairs(case) * (case.head_dim + case.dv)
    return fwd * MODE_FLOP_FACTOR[case.mode]


# bytes moved per mode, in forward passes: the backward reads q, k, v, out and its gradient
# and writes dq, dk, dv (twice the forward's q, k, v, out); forward + backward thrice
MODE_BYTE_FACTOR = {"fwd": 1, "bwd": 2, "fwd_bwd": 3}


def io_bytes(case: Case) -> int:
    """Bytes a fused kernel must move at least: q, k, v read and out written once (the bias
    read too), times MODE_BYTE_FACTOR for gradients. The roofline's denominator."""
    return MODE_BYTE_FACTOR[case.mode] * _forward_bytes(case)


def _forward_bytes(case: Case) -> int:
    """q and out, k and v (one byte an element quantized; scales not counted), the bias."""
    e = ELEM_BYTES[case.dtype]
    e_kv = 1 if case.kv_quant != "none" else e
    b, d, dv = case.batch, case.head_dim, case.dv
    q_and_out = case.heads_q * case.seq_q * (d + dv)
    k_and_v = case.heads_kv * case.seq_kv * (d + dv)
    shape = variants.bias_shape(case) if case.bias != "none" else None
    bias = int(np.prod(shape)) if shape is not None else 0
    return b * (e * q_and_out + e_kv * k_and_v) + e * bias


def score_bytes(case: Case) -> int:
    """Bytes a naive kernel adds: the score and probability matrices."""
    return 2 * ELEM_BYTES[case.dtype] * case.batch * case.heads_q * case.seq_q * case.seq_kv
