"""scenarios/presets.toml: the cited model shapes, a CPU and a CUDA size, prefill and decode."""

from __future__ import annotations

import pytest

from attnbench.scenario import resolve_scenario

# (heads_q, heads_kv, head_dim, head_dim_v or None, softcap, window or None) per model layer
MODELS = {
    "llama3-8b": (32, 8, 128, None, None, None),
    "llama3-70b": (64, 8, 128, None, None, None),
    "mistral-7b": (32, 8, 128, None, None, 4096),
    "gemma2-9b local": (16, 8, 256, None, 50.0, 4096),
    "gemma2-9b global": (16, 8, 256, None, 50.0, None),
    "deepseek": (128, 128, 192, 128, None, None),
}
MLA_DECODE = (128, 1, 576, 512, None, None)  # absorbed: 128 heads over one latent head


def _shape(c) -> tuple:
    window = None if c.window_left is None else c.window_left + 1
    return (c.heads_q, c.heads_kv, c.head_dim, c.head_dim_v, c.softcap, window)


@pytest.fixture(scope="module")
def presets():
    return resolve_scenario("presets")


def test_cuda_sizes_are_the_models_shapes_prefill_and_decode(presets):
    cases = presets.cases("cuda")
    shapes = {_shape(c) for c in cases}
    assert shapes == {*MODELS.values(), MLA_DECODE}
    (mla,) = [c for c in cases if _shape(c) == MLA_DECODE]
    assert mla.seq_q == 1 and mla.seq_kv == 8192 and mla.batch == 16
    assert mla.softmax_scale == pytest.approx(192 ** -0.5)  # of the un-absorbed head dims
    for shape in MODELS.values():
        mine = [c for c in cases if _shape(c) == shape]
        prefill = sorted(c.seq_q for c in mine if c.seq_q == c.seq_kv)
        decode = [c for c in mine if c.seq_q == 1]
        assert prefill == [4096, 8192], shape
        assert len(decode) == 1 and decode[0].seq_kv == 8192 and decode[0].batch == 16
        assert len(set(decode[0].kv_lens)) > 1  # each sequence's cache has its own length
        assert all(c.dtype == "bfloat16" and c.mask == "causal" for c in mine)


def test_cpu_sizes_keep_the_heads_and_dims_and_still_cut_with_the_window(presets):
    cases = presets.cases("cpu")
    assert len(cases) == 13  # six model layers, prefill and decode, and MLA's decode
    for c in cases:
        assert c.dtype == "float32" and c.seq_kv <= 512
        assert c.heads_q % c.heads_kv == 0
        if c.window_left is not None:
            assert c.window_left < c.seq_kv - 1  # the window still hides keys
        if c.seq_q == 1:
            assert c.kv_lens is not None and len(c.kv_lens) == c.batch
    heads = {(c.heads_q, c.heads_kv, c.head_dim, c.head_dim_v) for c in cases}
    assert {(32, 8, 128, None), (64, 8, 128, None), (16, 8, 256, None)} <= heads
    assert any(c.head_dim == 192 and c.head_dim_v == 128 for c in cases)
    assert any(c.head_dim == 576 and c.head_dim_v == 512 and c.heads_kv == 1 for c in cases)
