"""The flash-attn-4 adapter (backends/flash_attn_cute.py) driven through a FAKE flash_attn.cute.

The fake below is NOT FlashAttention-4. It is injected into sys.modules only to test OUR
adapter logic on the CPU: which entry point a case takes, the layouts (B, S, H, D), (total, H, D)
and the page pools, the keywords as flash-attn-4 4.0.0b36's interface.py defines them
(window_size with None for an unbounded side, softcap, cu_seqlens, seqused_q/k, page_table,
int32 index tensors) and the (out, lse) it returns. It computes attention with plain torch by
those rules (causal bottom-right per sequence, grouped heads native) and leaves NaN in output
rows it does not write, so that the adapter's zeroing is exercised. The real kernels are
compiled for SM90 by benchmarks/fa4_compile_check.py (CuTe DSL under fake tensors) and run on
a GPU by the GPU session.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from attnbench.backends.flash_attn_cute import FlashAttn4
from test_flash_attn_func import attend

from attnbench import Unsupported
from attnbench.case import Case
from attnbench.plugin.backend import import_failure
from attnbench.run.execute import CaseData, expected_shape
from attnbench.verify import layouts
from attnbench.verify.inputs import make_inputs

FA4 = FlashAttn4()


def window_of(window_size, causal):
    """flash-attn-4's (left, right), None unbounded, as the -1 convention `attend` takes."""
    assert isinstance(window_size, tuple) and len(window_size) == 2
    assert all(w is None or (type(w) is int and w >= 0) for w in window_size), window_size
    return tuple(-1 if w is None else w for w in window_size)


def common(kw, q):
    assert isinstance(kw["softcap"], float) and kw["qv"] is None
    scale = kw["softmax_scale"] if kw["softmax_scale"] is not None else q.shape[-1] ** -0.5
    return scale, kw["causal"], window_of(kw["window_size"], kw["causal"]), kw["softcap"]


def fake_func(calls, q, k, v, qv=None, softmax_scale=None, causal=False,
              window_size=(None, None), softcap=0.0, return_lse=False):
    """flash_attn_func: q (B, Sq, Hq, D), k/v (B, Sk, Hk, D|Dv) → (out, lse)."""
    kw = dict(locals())
    calls.append({"fn": "func", **{n: kw[n] for n in kw if n != "calls"}})
    scale, causal, ws, cap = common(kw, q)
    out = torch.stack([attend(q[b], k[b], v[b], scale, causal, ws, cap, None)
                       for b in range(q.shape[0])])
    return out, None


def int32(t, shape):
    assert t.dtype == torch.int32 and tuple(t.shape) == shape, (t.dtype, t.shape, shape)
    return t.tolist()


def fake_varlen(calls, q, k, v, qv=None, cu_seqlens_q=None, cu_seqlens_k=None,
                max_seqlen_q=None, max_seqlen_k=None, seqused_q=None, seqused_k=None,
                page_table=None, softmax_scale=None, causal=False, window_size=(None, None),
                softcap=0.0, return_lse=False):
    """flash_attn_varlen_func: packed q/k/v (total, H, D) with cu_seqlens (B + 1,); or padded
    (B, S, H, D) with seqused_q/k (B,); or page pools (pages, page_size, Hk, D) read through
    page_table (B, pages per sequence) for seqused_k[b] keys. Rows it does not write: NaN."""
    kw = dict(locals())
    calls.append({"fn": "varlen", **{n: kw[n] for n in kw if n != "calls"}})
    scale, causal, ws, cap = common(kw, q)
    out = torch.full((*q.shape[:-1], v.shape[-1]), float("nan"), dtype=q.dtype)
    if cu_seqlens_q is not None:
        n = len(cu_seqlens_q) - 1
        cq, ck = int32(cu_seqlens_q, (n + 1,)), int32(cu_seqlens_k, (n + 1,))
        assert max_seqlen_q == max(np.diff(cq)) and max_seqlen_k == max(np.diff(ck))
        for b in range(n):
            out[cq[b]:cq[b + 1]] = attend(q[cq[b]:cq[b + 1]], k[ck[b]:ck[b + 1]],
                                          v[ck[b]:ck[b + 1]], scale, causal, ws, cap, None)
        return out, None
    batch = q.shape[0]
    used_q = int32(seqused_q, (batch,)) if seqused_q is not None else [q.shape[1]] * batch
    used_k = int32(seqused_k, (batch,))
    for b in range(batch):
        if page_table is not None:
            pages = torch.tensor(int32(page_table, (batch, page_table.shape[1]))[b])
            kb, vb = (x[pages].flatten(0, 1)[:used_k[b]] for x in (k, v))
        else:
            kb, vb = k[b, :used_k[b]], v[b, :used_k[b]]
        out[b, :used_q[b]] = attend(q[b, :used_q[b]], kb, vb, scale, causal, ws, cap, None)
    return out, None


@pytest.fixture
def fake_cute(monkeypatch) -> list:
    calls: list = []
    root = types.ModuleType("flash_attn")
    root.__path__ = []  # flash-attn-4 alone: a namespace package
    cute = types.ModuleType("flash_attn.cute")
    cute.flash_attn_func = lambda *a, **kw: fake_func(calls, *a, **kw)
    cute.flash_attn_varlen_func = lambda *a, **kw: fake_varlen(calls, *a, **kw)
    root.cute = cute
    monkeypatch.setitem(sys.modules, "flash_attn", root)
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
    import_failure.cache_clear()
    yield calls
    import_failure.cache_clear()


def run_fake(case):
    data = CaseData(case, seed=0)
    inputs = make_inputs(case, data.arrays, "torch")
    return FA4.prepare(inputs)(), data, inputs


def oracle_error(out, data, case):
    padded = layouts.padded_output(out.double().numpy(), case)
    return float(np.abs(padded[:, :, data.rows] - data.ref).max())


G = {"batch": 2, "heads_q": 4, "heads_kv": 2, "seq_q": 12, "seq_kv": 20, "head_dim": 16}
CASES = {  # name -> (case, entry point)
    "causal-grouped": (Case(**G, mask="causal"), "func"),
    "more-queries-causal": (Case(**{**G, "seq_q": 25}, mask="causal"), "func"),
    "plain-scale": (Case(1, 4, 1, 9, 9, 8, scale=0.3), "func"),
    "window-causal": (Case(**G, mask="causal", window_left=5), "func"),
    "window-both": (Case(**{**G, "seq_q": 20}, window_left=3, window_right=2), "func"),
    "window-right-only": (Case(**{**G, "seq_q": 20}, window_right=2), "func"),
    "softcap-dv": (Case(**G, softcap=2.0, head_dim_v=24), "func"),
    "kv-lens-decode": (Case(**{**G, "seq_q": 2}, mask="causal", kv_lens=(5, 17)), "varlen"),
    "lengths-causal": (Case(**G, mask="causal", q_lens=(12, 0), kv_lens=(7, 20)), "varlen"),
    "documents-causal": (Case(**{**G, "seq_q": 20}, mask="causal", doc_lens=(4, 9, 7)),
                         "varlen"),
    "packed-causal": (Case(**G, mask="causal", layout="packed", q_lens=(12, 3),
                           kv_lens=(5, 20)), "varlen"),
    "packed-window-softcap": (Case(**G, layout="packed", q_lens=(6, 12), kv_lens=(20, 9),
                                   window_left=4, window_right=1, softcap=3.0), "varlen"),
    "paged-decode": (Case(**{**G, "seq_q": 3}, mask="causal", layout="paged", page_size=4,
                          kv_lens=(11, 20)), "varlen"),
}


@pytest.mark.parametrize("key", list(CASES))
def test_mapping_agrees_with_oracle(fake_cute, key):
    case, fn = CASES[key]
    assert set(case.variants) <= set(FA4.capabilities.variants)
    out, data, inputs = run_fake(case)
    (call,) = fake_cute
    assert call["fn"] == fn and inputs.reported == {
        "entry": "flash_attn_func" if fn == "func" else "flash_attn_varlen_func"}
    assert call["causal"] is (case.mask == "causal")
    assert call["softmax_scale"] == pytest.approx(case.softmax_scale)
    assert call["softcap"] == (case.softcap or 0.0)
    if case.layout == "paged":
        assert call["page_table"].tolist() == layouts.block_table(case).tolist()
        assert call["seqused_k"].tolist() == list(case.kv_lens)
    if case.layout == "padded" and case.doc_lens is None:
        assert call["q"].shape == (case.batch, case.seq_q, case.heads_q, case.head_dim)
        assert call["q"].is_contiguous() and call["k"].is_contiguous()
    assert tuple(out.shape) == expected_shape(case)
    assert torch.isfinite(out).all()  # rows the kernel leaves were zeroed
    assert oracle_error(out, data, case) < 1e-5


def test_a_minus_one_window_side_would_be_caught(fake_cute):
    """FA4 resets a window only when both sides are negative: (3, -1) would bound the right
    side at -1. The adapter passes None for an unbounded side, and the fake refuses -1."""
    case = CASES["window-causal"][0]
    run_fake(case)
    assert fake_cute[0]["window_size"] == (5, None)
    with pytest.raises(AssertionError):
        window_of((5, -1), True)


def test_library_asserts_become_unsupported(fake_cute, monkeypatch):
    def refuse(*a, **kw):
        raise AssertionError("(head_dim, head_dim_v)=(16, 512) is not supported on SM90.")

    monkeypatch.setattr(sys.modules["flash_attn.cute"], "flash_attn_func", refuse)
    with pytest.raises(Unsupported, match="flash-attn-4: .* is not supported on SM90"):
        run_fake(CASES["causal-grouped"][0])


@pytest.mark.parametrize("head_dim, extra, words", [
    (20, {}, "multiple of 8"), (264, {}, "8..256"),
    (16, {"alibi": True}, "takes no ALiBi slopes"),
    (16, {"bias": "head"}, "takes no additive bias tensor"),
])
def test_reasons_from_its_limits(fake_cute, head_dim, extra, words):
    case = Case(**{**G, "head_dim": head_dim}, dtype="bfloat16", device="cuda", **extra)
    assert any(words in r for r in FA4.unsupported(case)), FA4.unsupported(case)


def test_smoke_head_dims_are_in_its_range(fake_cute):
    for d in (16, 64, 128, 256):  # the smoke scenario's 16 was outside the old 64..128
        case = Case(2, 8, 2, 24, 24, d, dtype="bfloat16", device="cuda", mask="causal")
        assert not [r for r in FA4.unsupported(case) if "head_dim" in r]
    f32 = FA4.unsupported(Case(**G, dtype="float32", device="cuda"))
    assert any("does not support dtype float32" in r for r in f32)


@pytest.mark.parametrize("extra, words", [
    ({"layout": "paged", "page_size": 4, "seq_q": 3, "q_lens": (3, 1), "kv_lens": (5, 9)},
     "paged cache with per-sequence query lengths"),
    ({"doc_lens": (12, 8), "seq_q": 20, "kv_lens": (20, 9)}, "documents with per-sequence"),
])
def test_combinations_not_mapped_say_so(fake_cute, extra, words):
    with pytest.raises(Unsupported, match=words):
        run_fake(Case(**{**G, **{k: extra.pop(k) for k in list(extra) if k in G}}, **extra))
    assert fake_cute == []
