"""The flash-attn adapters: their reasons, and their argument mapping driven through a FAKE library.

The fake flash_attn below is NOT FlashAttention. It is injected into sys.modules only to test
OUR adapter logic on the CPU: layout (B, S, H, D), native grouped heads (query head h reads kv
head h // (Hq // Hkv)), softmax_scale, the causal flag (bottom-right aligned since flash-attn
2.1, as its README documents; a row that sees no key outputs zeros), the output layout, and
the variants' native arguments of its three entry points (flash_attn_func,
flash_attn_varlen_func, flash_attn_with_kvcache: window_size, alibi_slopes, softcap,
cu_seqlens, cache_seqlens, block_table) as FlashAttention's docstrings define them.
It computes attention with plain torch by those documented rules and checks the argument
types they state. The real kernels are verified on hardware in issue #5.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from attnbench.backends.flash_attn_func import flash_backends

from attnbench import variants
from attnbench.case import Case
from attnbench.plugin.backend import device_failure, import_failure, parse_version, version_failure
from attnbench.run.execute import CaseData, expected_shape
from attnbench.verify import layouts
from attnbench.verify.inputs import make_inputs


def attend(q, k, v, scale, causal, window, softcap, slopes):
    """One sequence by FlashAttention's documented rules: q (Sq, Hq, D), k/v (Sk, Hk, D|Dv).

    Query head h reads kv head h // (Hq // Hk); query i and key j are aligned bottom-right
    (d = i + Sk - Sq); window (left, right), -1 unbounded, keeps d - left <= j <= d + right;
    causal sets right to 0; softcap: s = cap * tanh(s / cap) on the scaled score; ALiBi adds
    -slope_h * |d - j|; a row that sees no key outputs zeros."""
    hq, hk = q.shape[1], k.shape[1]
    assert hq % hk == 0, "flash-attn needs heads_q a multiple of heads_kv"
    qq, kk, vv = (x.transpose(0, 1).double() for x in (q, k, v))  # (H, S, D)
    kk, vv = (x.repeat_interleave(hq // hk, dim=0) for x in (kk, vv))
    s = qq @ kk.transpose(-1, -2) * scale
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    sq, sk = q.shape[0], k.shape[0]
    d, j = torch.arange(sq)[:, None] + sk - sq, torch.arange(sk)[None, :]
    if slopes is not None:
        s = s - slopes.double()[:, None, None] * (d - j).abs()
    left, right = window
    right = 0 if causal else right
    seen = torch.ones(sq, sk, dtype=torch.bool)
    if left >= 0:
        seen &= j >= d - left
    if right >= 0:
        seen &= j <= d + right
    p = torch.softmax(s.masked_fill(~seen, float("-inf")), dim=-1).nan_to_num(0.0)
    return (p @ vv).transpose(0, 1).to(q.dtype)  # (Sq, Hq, Dv)


def check_common(kw, q, heads_q):
    """The argument types FlashAttention documents for the shared keywords."""
    ws = kw["window_size"]
    assert isinstance(ws, tuple) and len(ws) == 2 and all(type(x) is int for x in ws)
    slopes = kw["alibi_slopes"]
    if slopes is not None:
        assert slopes.dtype == torch.float32 and slopes.shape[-1] == heads_q
        assert slopes.shape in ((heads_q,), (q.shape[0], heads_q))
    assert isinstance(kw["softcap"], float)
    scale = kw["softmax_scale"]
    return (scale if scale is not None else q.shape[-1] ** -0.5, kw["causal"], ws,
            kw["softcap"], slopes)


def one_seq_slopes(slopes, b):
    return None if slopes is None else (slopes if slopes.dim() == 1 else slopes[b])


def fake_flash(calls, q, k, v, dropout_p=0.0, softmax_scale=None, causal=False,
               window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
               return_attn_probs=False, return_tuple=False):
    """flash_attn_func: q (B, Sq, Hq, D), k/v (B, Sk, Hk, D)."""
    kw = dict(locals())
    calls.append({"fn": "func", **{n: kw[n] for n in kw if n not in ("calls", "return_tuple")}})
    scale, causal, ws, cap, slopes = check_common(kw, q, q.shape[2])
    out = torch.stack([attend(q[b], k[b], v[b], scale, causal, ws, cap,
                              one_seq_slopes(slopes, b)) for b in range(q.shape[0])])
    return (out, None) if return_tuple else out


def fake_varlen(calls, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False,
                block_table=None):
    """flash_attn_varlen_func: q (total_q, Hq, D), k/v (total_k, Hk, D), cu_seqlens int32."""
    kw = dict(locals())
    calls.append({"fn": "varlen", **{n: kw[n] for n in kw if n != "calls"}})
    assert cu_seqlens_q.dtype == cu_seqlens_k.dtype == torch.int32
    assert len(cu_seqlens_q) == len(cu_seqlens_k)
    assert max_seqlen_q == int(cu_seqlens_q.diff().max()) and type(max_seqlen_q) is int
    assert max_seqlen_k == int(cu_seqlens_k.diff().max()) and type(max_seqlen_k) is int
    scale, causal, ws, cap, slopes = check_common(kw, q, q.shape[1])
    out = q.new_zeros(q.shape[0], q.shape[1], v.shape[-1])
    for b in range(len(cu_seqlens_q) - 1):
        (q0, q1), (k0, k1) = cu_seqlens_q[b:b + 2].tolist(), cu_seqlens_k[b:b + 2].tolist()
        out[q0:q1] = attend(q[q0:q1], k[k0:k1], v[k0:k1], scale, causal, ws, cap,
                            one_seq_slopes(slopes, b))
    return out


def fake_kvcache(calls, q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None,
                 cache_seqlens=None, cache_batch_idx=None, cache_leftpad=None, block_table=None,
                 softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                 rotary_interleaved=True, alibi_slopes=None, num_splits=0,
                 return_softmax_lse=False):
    """flash_attn_with_kvcache: q (B, Sq, Hq, D); the cache (B, S, Hk, D), or with block_table
    (int32 (B, pages)) page pools (pages, page_size, Hk, D), page_size a multiple of 256;
    cache_seqlens int32 (B,): each sequence's keys are its first cache_seqlens[b]."""
    kw = dict(locals())
    calls.append({"fn": "kvcache", **{n: kw[n] for n in kw if n != "calls"}})
    assert k is None and v is None and cache_batch_idx is None and cache_leftpad is None
    assert cache_seqlens.dtype == torch.int32 and cache_seqlens.shape == (q.shape[0],)
    if block_table is not None:
        assert block_table.dtype == torch.int32 and k_cache.shape[1] % 256 == 0
    scale, causal, ws, cap, slopes = check_common(kw, q, q.shape[2])
    outs = []
    for b in range(q.shape[0]):
        n = int(cache_seqlens[b])
        if block_table is None:
            kb, vb = k_cache[b, :n], v_cache[b, :n]
        else:
            pages = block_table[b].long()
            kb, vb = (x[pages].flatten(0, 1)[:n] for x in (k_cache, v_cache))
        outs.append(attend(q[b], kb, vb, scale, causal, ws, cap, one_seq_slopes(slopes, b)))
    return torch.stack(outs)


@pytest.fixture
def fake_flash_attn(monkeypatch):
    """Install a fake flash_attn (version 2.6.3) with its flash_attn_interface module."""
    calls: list = []
    root = types.ModuleType("flash_attn")
    root.__version__ = "2.6.3"
    root.flash_attn_func = lambda *a, **kw: fake_flash(calls, *a, **kw)
    root.flash_attn_varlen_func = lambda *a, **kw: fake_varlen(calls, *a, **kw)
    root.flash_attn_with_kvcache = lambda *a, **kw: fake_kvcache(calls, *a, **kw)
    root.flash_attn_interface = types.ModuleType("flash_attn.flash_attn_interface")
    monkeypatch.setitem(sys.modules, "flash_attn", root)
    monkeypatch.setitem(sys.modules, "flash_attn.flash_attn_interface", root.flash_attn_interface)
    import_failure.cache_clear()
    version_failure.cache_clear()
    yield calls
    import_failure.cache_clear()
    version_failure.cache_clear()


BACKENDS = {b.name: b for b in flash_backends()}
CASES = [
    Case(2, 2, 2, 12, 12, 16, mask="causal"),
    Case(1, 2, 2, 5, 19, 16, mask="causal"),
    Case(1, 2, 2, 19, 5, 16, mask="causal"),  # rows that see no key
    Case(2, 8, 2, 7, 13, 16, mask="causal"),  # grouped heads
    Case(1, 4, 1, 9, 9, 8, scale=0.3),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_adapter_mapping_agrees_with_oracle(fake_flash_attn, case):
    data = CaseData(case, seed=0)
    out = BACKENDS["flash-attn"].prepare(make_inputs(case, data.arrays, "torch"))()
    (call,) = fake_flash_attn
    b, d = case.batch, case.head_dim
    assert call["q"].shape == (b, case.seq_q, case.heads_q, d)
    assert call["k"].shape == call["v"].shape == (b, case.seq_kv, case.heads_kv, d)
    assert call["q"].is_contiguous() and call["k"].is_contiguous()
    assert call["causal"] is (case.mask == "causal")
    assert call["softmax_scale"] == pytest.approx(case.softmax_scale)
    assert tuple(out.shape) == (b, case.heads_q, case.seq_q, d)
    err = np.abs(out.double().numpy()[:, :, data.rows] - data.ref).max()
    assert err < 1e-5


def test_version_rule(fake_flash_attn, monkeypatch):
    cuda = Case(1, 2, 2, 8, 8, 64, dtype="bfloat16", device="cuda")
    assert BACKENDS["flash-attn"].unsupported(cuda) == [r for r in [device_failure("cuda")] if r]
    monkeypatch.setattr(sys.modules["flash_attn"], "__version__", "2.0.9")
    version_failure.cache_clear()
    (reason,) = BACKENDS["flash-attn"].availability()
    assert reason == "flash_attn 2.0.9 is older than 2.1, the lowest version supported"
    monkeypatch.setattr(sys.modules["flash_attn"], "__version__", "dev")
    version_failure.cache_clear()
    (reason,) = BACKENDS["flash-attn"].availability()
    assert "no readable version ('dev')" in reason
    assert parse_version("2.1.0.post1") == (2, 1, 0) and parse_version("dev") is None
    assert parse_version("2.10") > parse_version("2.9")


def test_capability_reasons(fake_flash_attn):
    fa = BACKENDS["flash-attn"]
    f32 = fa.unsupported(Case(1, 2, 2, 8, 8, 64, dtype="float32", device="cuda"))
    assert any("does not support dtype float32" in r for r in f32)
    big = fa.unsupported(Case(1, 2, 2, 8, 8, 512, dtype="float16", device="cuda"))
    assert any("head_dim 8..256, not 512" in r for r in big)
    odd = fa.unsupported(Case(1, 2, 2, 8, 8, 20, dtype="float16", device="cuda"))
    assert any("multiple of 8" in r for r in odd)
    cpu = fa.unsupported(Case(1, 2, 2, 8, 8, 64, dtype="float16", device="cpu"))
    assert cpu[0] == "flash-attn runs only on cuda, not cpu"


def test_missing_library_is_the_reason():
    if import_failure("flash_attn") is None:
        pytest.skip("flash_attn is installed here")
    case = Case(1, 2, 2, 8, 8, 64, dtype="float16", device="cuda")
    assert BACKENDS["flash-attn"].unsupported(case)[0] == (
        "flash_attn not importable: No module named 'flash_attn'")
    assert "not importable" in BACKENDS["flash-attn-4"].unsupported(case)[0]


def test_flash_attn_4_alone_is_no_flash_attention_2(monkeypatch):
    """flash-attn-4 installs flash_attn/cute with no flash_attn/__init__.py: `flash_attn`
    imports as a namespace package, with no version: FlashAttention-2 is unavailable."""
    namespace = types.ModuleType("flash_attn")
    namespace.__path__ = []  # a package with no flash_attn_interface
    monkeypatch.setitem(sys.modules, "flash_attn", namespace)
    monkeypatch.delitem(sys.modules, "flash_attn.flash_attn_interface", raising=False)
    import_failure.cache_clear()
    version_failure.cache_clear()
    try:
        (reason,) = BACKENDS["flash-attn"].availability()
    finally:
        import_failure.cache_clear()
        version_failure.cache_clear()
    assert reason == "flash_attn has no readable version (''); need >= 2.1"


G = {"batch": 2, "heads_q": 4, "heads_kv": 2, "seq_q": 12, "seq_kv": 20, "head_dim": 16}
VARIANT_CASES = {  # name -> (case, the entry point it must reach)
    "window-causal": (Case(**G, mask="causal", window_left=5), "func"),
    "window-both": (Case(**{**G, "seq_q": 20}, window_left=3, window_right=2), "func"),
    "alibi-causal": (Case(**G, mask="causal", alibi=True), "func"),
    "softcap-window": (Case(**G, softcap=2.0, window_left=4, window_right=0), "func"),
    "kv-lens-decode": (Case(**{**G, "seq_q": 2}, mask="causal", kv_lens=(5, 17)), "kvcache"),
    "lengths-causal": (Case(**G, mask="causal", q_lens=(12, 0), kv_lens=(7, 20)), "varlen"),
    "documents-causal": (Case(**{**G, "seq_q": 20}, mask="causal", doc_lens=(4, 9, 7),
                              alibi=True), "varlen"),
    "packed-causal": (Case(**G, mask="causal", layout="packed", q_lens=(12, 3),
                           kv_lens=(5, 20)), "varlen"),
    "packed-window-softcap": (Case(**G, layout="packed", q_lens=(6, 12), kv_lens=(20, 9),
                                   window_left=4, window_right=1, softcap=3.0), "varlen"),
    "paged-decode": (Case(**{**G, "seq_q": 3, "seq_kv": 300}, mask="causal", layout="paged",
                          page_size=256, kv_lens=(11, 300), alibi=True), "kvcache"),
}


def run_fake(case):
    """Drive the adapter through prepare() on CPU tensors (bypasses unsupported())."""
    data = CaseData(case, seed=0)
    inputs = make_inputs(case, data.arrays, "torch")
    return BACKENDS["flash-attn"].prepare(inputs)(), data, inputs


def oracle_error(out, data, case):
    padded = layouts.padded_output(out.double().numpy(), case)
    return float(np.abs(padded[:, :, data.rows] - data.ref).max())


@pytest.mark.parametrize("key", list(VARIANT_CASES))
def test_variant_mapping(fake_flash_attn, key):
    case, fn = VARIANT_CASES[key]
    assert set(case.variants) <= set(BACKENDS["flash-attn"].capabilities.variants)
    out, data, inputs = run_fake(case)
    (call,) = fake_flash_attn
    assert call["fn"] == fn
    assert call["causal"] is (case.mask == "causal")
    assert call["window_size"] == inputs.window
    assert call["softcap"] == (case.softcap or 0.0)
    if case.alibi:
        assert np.array_equal(call["alibi_slopes"].numpy(),
                              variants.alibi_slopes(4).astype(np.float32))
    else:
        assert call["alibi_slopes"] is None
    if fn == "kvcache":
        assert call["cache_seqlens"].tolist() == list(case.kv_lens)
    if case.layout == "paged":
        assert np.array_equal(call["block_table"].numpy(), layouts.block_table(case))
        # the pool as it is: 2 sequences x 2 pages, and one free page per sequence
        assert tuple(call["k_cache"].shape) == (layouts.pool_pages(case), 256, 2, 16) == (
            6, 256, 2, 16)
    if fn == "varlen" and case.doc_lens is None:
        assert call["cu_seqlens_q"].tolist() == layouts.cu_seqlens(inputs.q_lens).tolist()
        assert call["cu_seqlens_k"].tolist() == layouts.cu_seqlens(inputs.kv_lens).tolist()
    if case.doc_lens is not None:  # each document of each sequence is one varlen sequence
        assert call["cu_seqlens_q"].tolist() == [0, 4, 13, 20, 24, 33, 40]
    assert tuple(out.shape) == expected_shape(case)
    assert oracle_error(out, data, case) < 1e-5


def test_a_wrong_window_would_be_caught(fake_flash_attn):
    """The agreement above can fail: the window one key narrower disagrees with the oracle."""
    case = VARIANT_CASES["window-both"][0]
    data = CaseData(case, seed=0)
    inp = make_inputs(case, data.arrays, "torch")
    q, k, v = (x.transpose(1, 2) for x in (inp.q, inp.k, inp.v))
    wrong = fake_flash([], q, k, v, softmax_scale=inp.scale, window_size=(2, 2))
    assert oracle_error(wrong.transpose(1, 2), data, case) > 1e-2


def test_unsupported_variants_say_why(fake_flash_attn):
    fa, cuda = BACKENDS["flash-attn"], {**G, "dtype": "float16", "device": "cuda"}
    (bias,) = [r for r in fa.unsupported(Case(**cuda, bias="head")) if "bias" in r]
    assert bias.endswith("the bias variant: flash-attn takes no additive bias tensor "
                         "(ALiBi slopes only)")
    (dv,) = [r for r in fa.unsupported(Case(**cuda, head_dim_v=24)) if "dv" in r]
    assert dv.endswith("FlashAttention-2 needs v's head dim equal to q's")


@pytest.mark.parametrize("extra, words", [
    ({"page_size": 4}, "paged KV cache needs page_size a multiple of 256, not 4"),
    ({"page_size": 256, "q_lens": (3, 1)}, "takes one query length for every sequence"),
])
def test_paged_limits_raise_unsupported(fake_flash_attn, extra, words):
    from attnbench import Unsupported

    case = Case(**{**G, "seq_q": 3, "seq_kv": 300}, layout="paged", kv_lens=(11, 300), **extra)
    with pytest.raises(Unsupported, match=words):
        run_fake(case)
    assert fake_flash_attn == []


@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd_bwd"])
def test_gradients_never_take_the_kvcache_function(fake_flash_attn, mode):
    """flash_attn_with_kvcache has no backward: padded key lengths go to it only for fwd."""
    from attnbench.backends.flash_attn_func import route

    case = Case(**{**G, "seq_q": 2}, mask="causal", kv_lens=(5, 17), mode=mode)
    inputs = make_inputs(case, CaseData(case, seed=0).arrays, "torch")
    assert route(inputs) == ("kvcache" if mode == "fwd" else "varlen")


@pytest.mark.parametrize("lens", [{"q_lens": (3, 5), "kv_lens": (5, 2)}, {"kv_lens": (5, 2)}],
                         ids=["q-and-kv-lens", "kv-lens"])
def test_fwd_bwd_steps_repeat_with_packed_lengths(fake_flash_attn, lens):
    """Padded cases with lengths go through varlen, packed by a gather; each timed fwd_bwd
    step gathers anew (the first backward once freed what a gather made in prepare saved)."""
    import torch

    from attnbench.verify.grad import prepare_grad

    case = Case(2, 2, 2, 5, 5, 8, mask="causal", mode="fwd_bwd", **lens)
    inputs = make_inputs(case, CaseData(case, seed=0).arrays, "torch")
    grad = prepare_grad(lambda: BACKENDS["flash-attn"].prepare(inputs), inputs,
                        torch.randn(2, 2, 5, 8), "fwd_bwd", lambda: None)
    for _ in range(3):
        grad.step()
    assert {c["fn"] for c in fake_flash_attn} == {"varlen"}
