"""Quantized k and v (kv_quant): codes in float8 or int8 with power-of-two scales, exactly.

k and v are drawn as usual, then stored as codes of the case's kv_quant format times a scale
per group (kv_scale: the whole tensor, each kv head, or each block of KV_BLOCK keys of one
(batch, kv head)). A scale is the power of two 2^ceil(log2(amax / format max)) of its group (as
the OCP microscaling formats' E8M0 scales are), so code × scale is exact in float64 and in
every case dtype: the oracle runs on these dequantized values, and a kernel that dequantizes
them before its matmuls sees exactly what the oracle saw (the bound needs no quantization term:
the inputs are quantized already). Codes are rounded to nearest, ties to even, here in NumPy
(torch's own conversion gives the same codes: tests/verify/test_kv_quant.py). A dequantized
value too small for the case dtype's normal range is stored as a zero code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from attnbench.plugin.backend import Unsupported

if TYPE_CHECKING:  # pragma: no cover
    from attnbench.case import Case

KV_BLOCK = 32  # keys per scale block (kv_scale = "block")
# format: (mantissa bits, smallest normal exponent, largest finite value); int8 is symmetric
FORMATS: dict[str, tuple[int, int, float]] = {
    "float8_e4m3fn": (3, -6, 448.0),
    "float8_e5m2": (2, -14, 57344.0),
    "int8": (0, 0, 127.0),
}
SMALLEST_NORMAL = {"float64": 2.0**-1022, "float32": 2.0**-126, "float16": 2.0**-14,
                   "bfloat16": 2.0**-126}


def round_codes(x: np.ndarray, fmt: str) -> np.ndarray:
    """x (float64, within the format's range) rounded to the nearest value of the format."""
    mant, emin, top = FORMATS[fmt]
    if fmt == "int8":
        return np.clip(np.rint(x), -top, top)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.abs(x)))
    e = np.maximum(np.where(np.isfinite(e), e, emin), emin)  # subnormals share emin's step
    step = np.exp2(e - mant)
    return np.clip(np.rint(x / step) * step, -top, top)


def group_scales(x: np.ndarray, fmt: str, kind: str) -> np.ndarray:
    """Power-of-two scales of x (batch, heads, seq, d) per group, shaped to broadcast to x:
    (1, 1, 1, 1) tensor, (1, heads, 1, 1) head, (batch, heads, seq, 1) block (one value per
    KV_BLOCK keys, repeated for each key)."""
    a = np.abs(x)
    if kind == "tensor":
        amax = a.max(initial=0.0).reshape(1, 1, 1, 1)
    elif kind == "head":
        amax = a.max(axis=(0, 2, 3), keepdims=True, initial=0.0)
    else:
        b, h, s, _ = x.shape
        n = -(-s // KV_BLOCK)
        padded = np.zeros((b, h, n * KV_BLOCK))
        padded[:, :, :s] = a.max(axis=3, initial=0.0)
        per_block = padded.reshape(b, h, n, KV_BLOCK).max(axis=3)
        amax = np.repeat(per_block, KV_BLOCK, axis=2)[:, :, :s, None]
    with np.errstate(divide="ignore"):
        e = np.ceil(np.log2(amax / FORMATS[fmt][2]))
    return np.exp2(np.where(np.isfinite(e), e, 0.0))  # an all-zero group: scale 1


def quantize_kv(case: Case, arrays: dict[str, np.ndarray]) -> None:
    """Replace k and v (float64) by their dequantized codes and add k_scale and v_scale."""
    tiny = SMALLEST_NORMAL[case.dtype]
    for name in ("k", "v"):
        x = arrays[name]
        scale = group_scales(x, case.kv_quant, case.kv_scale)
        codes = round_codes(x / scale, case.kv_quant)
        codes[np.abs(codes * scale) < tiny] = 0.0
        arrays[name] = codes * scale
        arrays[f"{name}_scale"] = scale


def codes_of(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The codes (float64) of quantized k or v: its dequantized values over its scales."""
    return arrays[name] / arrays[f"{name}_scale"]


def to_codes(x: np.ndarray, fmt: str, framework: str, device: str) -> Any:
    """Codes (float64 holding exact format values) as the framework's array of the format:
    torch.float8_e4m3fn / float8_e5m2 / int8, or NumPy int8 (NumPy has no float8)."""
    if framework == "numpy":
        if fmt != "int8":
            raise Unsupported(f"NumPy has no {fmt} dtype: a NumPy backend takes int8 codes only")
        return np.ascontiguousarray(x, dtype=np.int8).copy()
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device=device, dtype=getattr(torch, fmt), copy=True).contiguous()

