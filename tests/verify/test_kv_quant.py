"""Quantized k and v (verify/kv_quant.py): codes as torch rounds them, exact power-of-two
scales, inputs handed as codes whose dequantization is exactly what the oracle reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnbench.case import Case
from attnbench.case_checks import variant_problem
from attnbench.verify import inputs as inputs_mod
from attnbench.verify import kv_quant

FLOAT8 = ("float8_e4m3fn", "float8_e5m2")


@pytest.mark.parametrize("fmt", FLOAT8)
def test_codes_are_torchs_own_rounding_subnormals_and_ties_too(fmt):
    rng = np.random.default_rng(1)
    top = kv_quant.FORMATS[fmt][2]
    x = rng.standard_normal(20000) * np.exp2(rng.uniform(-26, np.log2(top) - 1, 20000))
    x = x[np.abs(x) <= top]  # within the format's range, as the scales keep every code
    # exact halfway points between neighbours (ties go to the even code)
    codes = torch.arange(0, 120, dtype=torch.uint8).view(getattr(torch, fmt)).double().numpy()
    mids = (codes[1:] + codes[:-1]) / 2
    x = np.concatenate([x, mids, -mids, [0.0, top, -top]])
    theirs = torch.from_numpy(x).to(getattr(torch, fmt)).double().numpy()
    assert np.array_equal(kv_quant.round_codes(x, fmt), theirs)


def test_int8_codes_round_half_to_even_and_stay_symmetric():
    x = np.array([0.5, 1.5, -2.5, 126.6, -127.4, 3.2])
    assert kv_quant.round_codes(x, "int8").tolist() == [0.0, 2.0, -2.0, 127.0, -127.0, 3.0]


@pytest.mark.parametrize("kind", ["tensor", "head", "block"])
@pytest.mark.parametrize("fmt", [*FLOAT8, "int8"])
def test_scales_are_tight_powers_of_two_per_group(fmt, kind):
    x = np.random.default_rng(2).standard_normal((2, 3, 70, 8)) * 3
    x[1, 2, 33:] *= 50  # one block of one head much larger
    scale = kv_quant.group_scales(x, fmt, kind)
    assert np.array_equal(np.exp2(np.round(np.log2(scale))), scale)
    full = np.broadcast_to(scale, x.shape)
    top = kv_quant.FORMATS[fmt][2]
    assert (np.abs(x) / full).max() <= top
    groups = {"tensor": (0, 1, 2, 3), "head": (0, 2, 3), "block": (3,)}[kind]
    amax_ratio = (np.abs(x) / full).max(axis=groups)
    assert amax_ratio.min() > top / 2 or kind == "block"  # each group uses its top binade
    if kind == "block":  # one scale per 32 keys, repeated for each key of the block
        per_key = scale[..., 0]
        for start in range(0, 70, kv_quant.KV_BLOCK):
            block = per_key[:, :, start:start + kv_quant.KV_BLOCK]
            assert (block == block[:, :, :1]).all()
        assert scale.shape == (2, 3, 70, 1) and scale[1, 2, 40, 0] > scale[1, 2, 0, 0]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("fmt", [*FLOAT8, "int8"])
def test_inputs_hand_codes_whose_dequantization_is_the_oracles_k_and_v(fmt, dtype):
    case = Case(2, 4, 2, 8, 40, 16, dtype=dtype, kv_quant=fmt, kv_scale="block")
    arrays = inputs_mod.reference_arrays(case, 0)
    for name in ("k", "v"):
        codes = kv_quant.codes_of(arrays, name)
        assert np.array_equal(kv_quant.round_codes(codes, fmt), codes)  # codes of the format
        assert np.array_equal(inputs_mod.quantize(arrays[name], dtype), arrays[name])  # exact
    got = inputs_mod.make_inputs(case, arrays, "torch")
    assert got.k.dtype == getattr(torch, fmt) and got.v.dtype == getattr(torch, fmt)
    assert got.k_scale.dtype == torch.float32 and got.k_scale.shape == (2, 2, 40, 1)
    k, v = got.dequantized_kv()
    assert k.dtype == got.q.dtype
    assert np.array_equal(k.double().numpy(), arrays["k"])
    assert np.array_equal(v.double().numpy(), arrays["v"])
    pristine = inputs_mod.pristine_arrays(case, arrays)
    assert np.array_equal(got.k.double().numpy(), pristine["k"])
    assert np.array_equal(got.v_scale.double().numpy(), pristine["v_scale"])


def test_numpy_takes_int8_codes_and_refuses_float8():
    from attnbench.plugin.backend import Unsupported

    case = Case(1, 2, 2, 4, 33, 8, kv_quant="int8", kv_scale="head")
    got = inputs_mod.make_inputs(case, inputs_mod.reference_arrays(case, 0), "numpy")
    assert got.k.dtype == np.int8 and got.k_scale.shape == (1, 2, 1, 1)
    f8 = Case(1, 2, 2, 4, 33, 8, kv_quant="float8_e5m2")
    with pytest.raises(Unsupported, match="NumPy has no float8_e5m2"):
        inputs_mod.make_inputs(f8, inputs_mod.reference_arrays(f8, 0), "numpy")


def test_quantized_kv_moves_one_byte_an_element():
    plain = Case(2, 4, 2, 16, 64, 32, dtype="bfloat16")
    quant = Case(2, 4, 2, 16, 64, 32, dtype="bfloat16", kv_quant="float8_e4m3fn")
    kv_elems = 2 * 2 * 64 * (32 + 32)
    assert inputs_mod.io_bytes(plain) - inputs_mod.io_bytes(quant) == kv_elems
    assert quant.id.endswith("-kv_e4m3fn_tensor-fwd") and quant.variants == ("kv_quant",)


@pytest.mark.parametrize("fields, words", [
    ({"kv_scale": "head"}, "set it only with kv_quant"),
    ({"kv_quant": "int8", "mode": "fwd_bwd"}, "forward only"),
    ({"kv_quant": "int8", "layout": "paged", "page_size": 8}, "padded layout only"),
    ({"kv_quant": "int8", "strides": "transposed"}, "contiguous"),
])
def test_settings_kv_quant_cannot_serve_are_named(fields, words):
    case = Case(2, 2, 2, 8, 8, 8, **fields)
    assert words in (variant_problem(case) or "")
