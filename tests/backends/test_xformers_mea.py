"""The xformers adapter: its reasons, and its argument mapping driven through a FAKE xformers.

The fake library below is NOT xformers. It is injected into sys.modules only to test OUR
adapter logic on the CPU: layout (B, S, H, D) and BMGHK for grouped heads, the choice of
mask class (LowerTriangularMask is top-left, LowerTriangularFromBottomRightMask bottom-right,
as xformers documents), scale, the layout of the output, and each variant's attn_bias: the
local, block-diagonal, padded-keys and paged classes (their visibility as xformers' docstrings
state it) and the dense tensor bias (full shape, rows aligned). The fake computes attention
with plain torch following xformers' documented conventions, and leaves NaN in rows that see
no key, so that the adapter's zeroing is exercised. Its dispatch (xformers.ops.fmha.dispatch.
_dispatch_fw, fmha.Inputs) and its _cpp_lib are fakes too, following xformers 0.0.35's code:
they test that the adapter runs and reports the operator xformers picks, keeps all of
xformers' reasons, and says why when _C.so did not load. Hardware verification of the real
library is the GPU session's.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from attnbench.backends.xformers_mea import XformersMEA

from attnbench.case import Case
from attnbench.plugin.backend import device_failure, import_failure
from attnbench.run.execute import CaseData, expected_shape
from attnbench.verify import layouts
from attnbench.verify.inputs import make_inputs


def causal_pairs(mq, mk, off):
    """Boolean (mq, mk): key j visible from query i iff j <= i + off."""
    return torch.arange(mk)[None, :] <= torch.arange(mq)[:, None] + off


class LowerTriangularMask:
    """Fake of xformers' top-left causal bias: query i sees key j iff j <= i."""

    def visible(self, mq, mk):
        return causal_pairs(mq, mk, 0)


class LowerTriangularFromBottomRightMask:
    """Fake of xformers' bottom-right causal bias: j <= i + Mk - Mq."""

    def visible(self, mq, mk):
        return causal_pairs(mq, mk, mk - mq)


class LocalAttentionFromBottomRightMask:
    """Fake: q - window_left <= k + (Mq - Mk) <= q + window_right (both sides >= 0)."""

    def __init__(self, window_left, window_right):
        assert type(window_left) is int and type(window_right) is int
        assert window_left >= 0 and window_right >= 0
        self.window_left, self.window_right = window_left, window_right

    def visible(self, mq, mk):
        i, j = torch.arange(mq)[:, None], torch.arange(mk)[None, :] + mq - mk
        return (i - self.window_left <= j) & (j <= i + self.window_right)


def starts(lens):
    return [0, *np.cumsum(lens).tolist()]


class BlockDiagonalMask:
    """Fake: sequence b's queries see only its keys; from_seqlens(q_seqlen, kv_seqlen=None)."""

    def __init__(self, q_seqlen, kv_seqlen, kv_starts=None):
        assert all(type(n) is int for n in [*q_seqlen, *kv_seqlen])
        self.q_seqlen, self.kv_seqlen = q_seqlen, kv_seqlen
        self.kv_starts = kv_starts or starts(kv_seqlen)[:-1]

    @classmethod
    def from_seqlens(cls, q_seqlen, kv_seqlen=None):
        return cls(q_seqlen, kv_seqlen if kv_seqlen is not None else q_seqlen)

    def block(self, lq, lk):  # within one sequence, all pairs
        return torch.ones(lq, lk, dtype=torch.bool)

    def visible(self, mq, mk):
        seen = torch.zeros(mq, mk, dtype=torch.bool)
        for q0, lq, k0, lk in zip(starts(self.q_seqlen), self.q_seqlen, self.kv_starts,
                                  self.kv_seqlen, strict=False):
            seen[q0:q0 + lq, k0:k0 + lk] = self.block(lq, lk)
        return seen


class BlockDiagonalCausalMask(BlockDiagonalMask):
    """Fake: block-diagonal, each block top-left causal."""

    def block(self, lq, lk):
        return causal_pairs(lq, lk, 0)


class BlockDiagonalCausalFromBottomRightMask(BlockDiagonalMask):
    """Fake: block-diagonal, each block bottom-right causal."""

    def block(self, lq, lk):
        return causal_pairs(lq, lk, lk - lq)


class BlockDiagonalPaddedKeysMask(BlockDiagonalMask):
    """Fake: sequence b's keys start at b * kv_padding, its first kv_seqlen[b] are valid."""

    @classmethod
    def from_seqlens(cls, q_seqlen, kv_padding, kv_seqlen):
        assert type(kv_padding) is int and max(kv_seqlen) <= kv_padding
        bias = cls(q_seqlen, kv_seqlen, [b * kv_padding for b in range(len(kv_seqlen))])
        bias.kv_padding = kv_padding
        return bias

    def make_paged(self, block_tables, page_size, paged_type):
        return paged_type(self, block_tables, page_size)


class BlockDiagonalCausalWithOffsetPaddedKeysMask(BlockDiagonalPaddedKeysMask):
    """Fake: padded keys, each block causal with the offset kv_seqlen - q_seqlen (bottom-right)."""

    def block(self, lq, lk):
        return causal_pairs(lq, lk, lk - lq)


class PagedBlockDiagonalPaddedKeysMask:
    """Fake: the padded-keys mask read through block_tables: logical key j of sequence b sits
    in pool row block_tables[b, j // page_size] * page_size + j % page_size."""

    def __init__(self, base, block_tables, page_size):
        assert block_tables.dtype == torch.int32 and type(page_size) is int
        self.base, self.block_tables, self.page_size = base, block_tables, page_size

    def visible(self, mq, mk):
        logical = self.base.visible(mq, len(self.base.kv_seqlen) * self.base.kv_padding)
        seen = torch.zeros(mq, mk, dtype=torch.bool)
        for b, row in enumerate(self.block_tables.long()):
            for j in range(self.base.kv_padding):
                slot = int(row[j // self.page_size]) * self.page_size + j % self.page_size
                seen[:, slot] |= logical[:, b * self.base.kv_padding + j]
        return seen


class PagedBlockDiagonalCausalWithOffsetPaddedKeysMask(PagedBlockDiagonalPaddedKeysMask):
    """Fake: as its padded-keys base (the base carries the causal offset)."""


BIAS_CLASSES = [LowerTriangularMask, LowerTriangularFromBottomRightMask,
                LocalAttentionFromBottomRightMask, BlockDiagonalMask, BlockDiagonalCausalMask,
                BlockDiagonalCausalFromBottomRightMask, BlockDiagonalPaddedKeysMask,
                BlockDiagonalCausalWithOffsetPaddedKeysMask, PagedBlockDiagonalPaddedKeysMask,
                PagedBlockDiagonalCausalWithOffsetPaddedKeysMask]


class FakeFwOp:
    """Fake of an xformers forward operator class: only its NAME is read."""

    NAME = "fakeF"


class FakeBwOp:
    NAME = "fakeB"


class FakeFMHA(torch.autograd.Function):
    """Keeps the backward operator on the autograd node, as xformers' _fMHA does (ctx.op_bw)."""

    @staticmethod
    def forward(ctx, out):
        ctx.op_bw = FakeBwOp
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad


class FakeInputs:
    """Fake of xformers.ops.fmha.Inputs: holds what the dispatch reads."""

    def __init__(self, query, key, value, attn_bias=None, p=0.0, scale=None):
        self.query, self.key, self.value = query, key, value
        self.attn_bias, self.p, self.scale = attn_bias, p, scale

    def validate_inputs(self):
        assert self.query.dim() in (4, 5) and self.query.dim() == self.key.dim()


def fake_dispatch_fw(seen: list, inp, needs_gradient):
    """Fake of xformers' _dispatch_fw: one operator takes every input here."""
    seen.append((inp, needs_gradient))
    return FakeFwOp


def fake_attention(calls: list, query, key, value, attn_bias=None, p=0.0, scale=None, op=None):
    """memory_efficient_attention by xformers' documented rules; records what it was given."""
    calls.append({"query": query, "key": key, "value": value, "attn_bias": attn_bias,
                  "p": p, "scale": scale, "op": op})
    shape = (*query.shape[:-1], value.shape[-1])
    if query.dim() == 5:  # BMGHK: G groups of H heads; k/v already expanded over H
        query, key, value = (x.flatten(2, 3) for x in (query, key, value))
    q, k, v = (x.transpose(1, 2).double() for x in (query, key, value))  # (B, H, M, K)
    s = q @ k.transpose(-1, -2) * (scale if scale is not None else q.shape[-1] ** -0.5)
    mq, mk = q.shape[2], k.shape[2]
    if isinstance(attn_bias, torch.Tensor):  # full shape, rows aligned to 8 elements
        assert attn_bias.shape[-2:] == (mq, mk) and attn_bias.stride(-2) % 8 == 0
        assert attn_bias.shape[0] == q.shape[0] and attn_bias.numel() == s.numel()
        s = s + attn_bias.reshape(s.shape).double()
    elif attn_bias is not None:
        assert type(attn_bias) in BIAS_CLASSES, f"fake got an unexpected bias {attn_bias!r}"
        s = s.masked_fill(~attn_bias.visible(mq, mk), float("-inf"))
    out = torch.softmax(s, dim=-1) @ v  # NaN where a row sees no key
    out = out.transpose(1, 2).reshape(shape).to(query.dtype)
    return FakeFMHA.apply(out).view(shape) if out.requires_grad else out


@pytest.fixture
def fake_xformers(monkeypatch) -> list:
    """Install the fake modules xformers(._cpp_lib), xformers.ops, xformers.ops.fmha(.attn_bias,
    .dispatch); calls holds each memory_efficient_attention call, .dispatched each dispatch."""
    calls = Calls()
    bias = types.ModuleType("xformers.ops.fmha.attn_bias")
    for cls in BIAS_CLASSES:
        setattr(bias, cls.__name__, cls)
    dispatch = types.ModuleType("xformers.ops.fmha.dispatch")
    calls.dispatched = []
    dispatch._dispatch_fw = lambda inp, grad: fake_dispatch_fw(calls.dispatched, inp, grad)
    fmha = types.ModuleType("xformers.ops.fmha")
    fmha.attn_bias, fmha.dispatch, fmha.Inputs = bias, dispatch, FakeInputs
    ops = types.ModuleType("xformers.ops")
    ops.fmha = fmha
    ops.memory_efficient_attention = lambda *a, **kw: fake_attention(calls, *a, **kw)
    cpp_lib = types.ModuleType("xformers._cpp_lib")
    cpp_lib._cpp_library_load_exception = None
    root = types.ModuleType("xformers")
    root.ops, root._cpp_lib = ops, cpp_lib
    for name, mod in [("xformers", root), ("xformers.ops", ops), ("xformers.ops.fmha", fmha),
                      ("xformers.ops.fmha.attn_bias", bias),
                      ("xformers.ops.fmha.dispatch", dispatch), ("xformers._cpp_lib", cpp_lib)]:
        monkeypatch.setitem(sys.modules, name, mod)
    clear_caches()
    yield calls
    clear_caches()


class Calls(list):
    """The memory_efficient_attention calls, and .dispatched: the (Inputs, grad) dispatched."""

    dispatched: list


def clear_caches() -> None:
    from attnbench.backends.xformers_load import xformers_failure

    import_failure.cache_clear()
    xformers_failure.cache_clear()
    sys.modules.pop("attnbench.backends.xformers_ready", None)  # it checks when imported


def run_on_cpu(case: Case) -> tuple[torch.Tensor, CaseData]:
    """Drive the adapter directly through prepare() with CPU tensors (bypasses unsupported())."""
    data = CaseData(case, seed=0)
    fn = XformersMEA().prepare(make_inputs(case, data.arrays, "torch"))
    return fn(), data


def max_err(out: torch.Tensor, data: CaseData) -> float:
    padded = layouts.padded_output(out.double().numpy(), data.case)
    return float(np.abs(padded[:, :, data.rows] - data.ref).max())


CASES = {
    "self-causal": (Case(2, 2, 2, 12, 12, 16, mask="causal"), LowerTriangularMask),
    "fewer-queries-causal": (Case(1, 2, 2, 5, 19, 16, mask="causal"),
                             LowerTriangularFromBottomRightMask),
    "more-queries-causal": (Case(1, 2, 2, 19, 5, 16, mask="causal"),
                            LowerTriangularFromBottomRightMask),
    "grouped-causal": (Case(2, 8, 2, 7, 13, 16, mask="causal"),
                       LowerTriangularFromBottomRightMask),
    "mqa-none-scale": (Case(1, 4, 1, 9, 9, 8, scale=0.3), type(None)),
}


@pytest.mark.parametrize("key", list(CASES))
def test_adapter_mapping_agrees_with_oracle(fake_xformers, key):
    case, bias_type = CASES[key]
    out, data = run_on_cpu(case)
    (call,) = fake_xformers
    assert type(call["attn_bias"]) is bias_type
    assert call["scale"] == pytest.approx(case.softmax_scale) and call["p"] == 0.0
    assert call["op"] == (FakeFwOp, None)  # the operator xformers' dispatch picked, forced
    ((inp, grad),) = fake_xformers.dispatched
    assert inp.query is call["query"] and inp.attn_bias is call["attn_bias"] and grad is False
    b, g = case.batch, case.heads_q // case.heads_kv
    if g == 1:  # BMHK
        assert call["query"].shape == (b, case.seq_q, case.heads_q, case.head_dim)
        assert call["key"].shape == (b, case.seq_kv, case.heads_kv, case.head_dim)
    else:  # BMGHK: G = heads_kv, H = heads per group, k/v broadcast over H (stride 0)
        assert call["query"].shape == (b, case.seq_q, case.heads_kv, g, case.head_dim)
        assert call["key"].shape == (b, case.seq_kv, case.heads_kv, g, case.head_dim)
        assert call["key"].stride(3) == 0 and call["value"].stride(3) == 0
    assert call["query"].stride(-1) == 1 and call["key"].stride(-1) == 1
    assert tuple(out.shape) == (b, case.heads_q, case.seq_q, case.head_dim)
    assert torch.isfinite(out).all()  # rows that see no key were zeroed, not left NaN
    assert max_err(out, data) < 1e-5


def test_top_left_mask_would_be_caught(fake_xformers):
    """The check above can fail: top-left causal on Lq != Lk disagrees with the oracle."""
    case = CASES["fewer-queries-causal"][0]
    data = CaseData(case, seed=0)
    inp = make_inputs(case, data.arrays, "torch")
    q, k, v = (x.transpose(1, 2) for x in (inp.q, inp.k, inp.v))
    wrong = fake_attention([], q, k, v, LowerTriangularMask(), scale=inp.scale).transpose(1, 2)
    assert max_err(wrong, data) > 0.1


NO_OPERATOR = """No operator found for `memory_efficient_attention_forward` with inputs:
     query       : shape=(2, 12, 2, 16) (torch.float32)
     attn_bias   : <class 'xformers.ops.fmha.attn_bias.LowerTriangularMask'>
`fa3F@0.0.0` is not supported because:
    operator wasn't built - see `python -m xformers.info` for more info
`fa2F@2.5.7-pt` is not supported because:
    xFormers wasn't build with CUDA support
    dtype=torch.float32 (supported: {torch.float16, torch.bfloat16})
`cutlassF-pt` is not supported because:
    xFormers wasn't build with CUDA support"""


def test_no_operator_keeps_every_reason(fake_xformers, monkeypatch):
    from attnbench import Unsupported

    def refuse(inp, grad):
        raise NotImplementedError(NO_OPERATOR)

    monkeypatch.setattr(sys.modules["xformers.ops.fmha.dispatch"], "_dispatch_fw", refuse)
    with pytest.raises(Unsupported) as caught:
        run_on_cpu(CASES["self-causal"][0])
    text = str(caught.value)
    assert "\n" not in text and text.startswith("xformers has no operator for this case: No")
    for words in ("`fa3F@0.0.0` is not supported because: / operator wasn't built",
                  "dtype=torch.float32 (supported", "`cutlassF-pt` is not supported because: "
                  "/ xFormers wasn't build with CUDA support"):
        assert words in text, words
    assert fake_xformers == []  # nothing ran


def test_no_operator_at_call_time_too(fake_xformers, monkeypatch):
    """An xformers without the dispatch to ask first: the call's NotImplementedError, whole."""
    from attnbench import Unsupported

    def refuse(*a, **kw):
        raise NotImplementedError(NO_OPERATOR)

    monkeypatch.delattr(sys.modules["xformers.ops.fmha.dispatch"], "_dispatch_fw")
    monkeypatch.setattr(sys.modules["xformers.ops"], "memory_efficient_attention", refuse)
    with pytest.raises(Unsupported, match="no operator for this case: .* / `cutlassF-pt` is"):
        run_on_cpu(CASES["self-causal"][0])


def test_reports_the_operators_that_ran(fake_xformers):
    case = Case(1, 2, 2, 8, 8, 16, mask="causal", mode="fwd_bwd")
    data = CaseData(case, seed=0)
    inputs = make_inputs(case, data.arrays, "torch")
    for t in (inputs.q, inputs.k, inputs.v):
        t.requires_grad_(True)
    out = XformersMEA().prepare(inputs)()
    out.sum().backward()
    assert inputs.reported["op"] == "fakeF" and inputs.reported["op_bw"] == "fakeB"
    assert fake_xformers.dispatched[0][1] is True  # dispatched for gradients
    assert inputs.reported["cuda12_runtime"] in (None, "system") or inputs.reported[
        "cuda12_runtime"].endswith("libcudart.so.12")


def test_c_library_not_loaded_is_the_whole_reason(fake_xformers):
    """xformers 0.0.35 on a CUDA 13 torch: _C.so needs libcudart.so.12, and without it every
    operator is refused; the reason keeps the loader's words and xformers' own."""
    class InvalidLib(Exception):  # as xformers' xFormersInvalidLibException reads
        def __str__(self):
            return ("xFormers can't load C++/CUDA extensions. xFormers was built for:\n"
                    "    PyTorch 2.10.0+cu128 with CUDA 1208 (you have 2.11.0+cu130)\n"
                    "    Python  3.10.19 (you have 3.12.3)")

    exc = InvalidLib()  # torch.ops.load_library's OSError, from the loader's (as raised)
    exc.__cause__ = OSError("Could not load this library: /site/xformers/_C.so")
    exc.__cause__.__cause__ = OSError("libcudart.so.12: cannot open shared object file: No such "
                                      "file or directory")
    sys.modules["xformers._cpp_lib"]._cpp_library_load_exception = exc
    (reason,) = XformersMEA().availability()
    assert reason.startswith("attnbench.backends.xformers_ready not importable: "
                             "xformers' C++/CUDA library (_C.so) did not load: libcudart.so.12: "
                             "cannot open shared object file: No such file or directory; "
                             "Could not load this library: /site/xformers/_C.so; xFormers can't")
    assert "PyTorch 2.10.0+cu128 with CUDA 1208 (you have 2.11.0+cu130) / Python" in reason
    cuda = Case(1, 2, 2, 8, 8, 16, dtype="float16", device="cuda")
    assert XformersMEA().unsupported(cuda)[0] == reason


def test_reasons_with_the_library_present(fake_xformers):
    cpu = Case(1, 2, 2, 8, 8, 16, dtype="float16", device="cpu")
    assert XformersMEA().unsupported(cpu)[0] == "xformers runs only on cuda, not cpu"
    cuda = Case(1, 2, 2, 8, 8, 16, dtype="float16", device="cuda")
    assert XformersMEA().unsupported(cuda) == [r for r in [device_failure("cuda")] if r]
    assert any("float64" in r for r in XformersMEA().unsupported(
        Case(1, 2, 2, 8, 8, 16, dtype="float64", device="cuda")))


def test_missing_library_is_the_reason():
    if import_failure("xformers") is None:
        pytest.skip("xformers is installed here")
    reasons = XformersMEA().unsupported(Case(1, 2, 2, 8, 8, 16, dtype="float16", device="cuda"))
    assert reasons[0] == "xformers not importable: No module named 'xformers'"
    if device_failure("cuda"):
        assert "no CUDA device" in " ".join(reasons)


G = {"batch": 2, "heads_q": 4, "heads_kv": 2, "seq_q": 12, "seq_kv": 20, "head_dim": 16}
VARIANT_CASES = {  # name -> (case, the attn_bias type it must get)
    "window-causal": (Case(**G, mask="causal", window_left=5), LocalAttentionFromBottomRightMask),
    "window-both": (Case(**{**G, "seq_q": 20}, window_left=3, window_right=2),
                    LocalAttentionFromBottomRightMask),
    "kv-lens-causal": (Case(**{**G, "seq_q": 3}, mask="causal", kv_lens=(5, 17)),
                       BlockDiagonalCausalWithOffsetPaddedKeysMask),
    "kv-lens-none-dv": (Case(**G, kv_lens=(0, 17), head_dim_v=24), BlockDiagonalPaddedKeysMask),
    "documents-causal": (Case(**{**G, "seq_q": 20}, mask="causal", doc_lens=(4, 9, 7)),
                         BlockDiagonalCausalMask),
    "packed-causal": (Case(**G, mask="causal", layout="packed", q_lens=(12, 3), kv_lens=(5, 20)),
                      BlockDiagonalCausalFromBottomRightMask),
    "packed-none": (Case(**G, layout="packed", q_lens=(6, 12), kv_lens=(20, 9)),
                    BlockDiagonalMask),
    "paged-causal": (Case(**{**G, "seq_q": 3}, mask="causal", layout="paged", page_size=4,
                          kv_lens=(11, 20)), PagedBlockDiagonalCausalWithOffsetPaddedKeysMask),
    "paged-none": (Case(**{**G, "seq_q": 2}, layout="paged", page_size=8, kv_lens=(3, 20)),
                   PagedBlockDiagonalPaddedKeysMask),
    "alibi-lengths-window": (Case(**G, mask="causal", alibi=True, q_lens=(12, 5),
                                  kv_lens=(20, 6), window_left=3), torch.Tensor),
    "bias-batch-head": (Case(**{**G, "heads_kv": 4}, bias="batch_head"), torch.Tensor),
}


@pytest.mark.parametrize("key", list(VARIANT_CASES))
def test_variant_mapping(fake_xformers, key):
    case, bias_type = VARIANT_CASES[key]
    assert set(case.variants) <= set(XformersMEA.capabilities.variants)
    out, data = run_on_cpu(case)
    (call,) = fake_xformers
    bias = call["attn_bias"]
    assert isinstance(bias, bias_type) and type(bias).__name__ == bias_type.__name__
    if isinstance(bias, LocalAttentionFromBottomRightMask):
        wr = case.window_right if case.mask == "none" else 0
        assert (bias.window_left, bias.window_right) == (case.window_left, wr)
    if isinstance(bias, PagedBlockDiagonalPaddedKeysMask):
        assert np.array_equal(bias.block_tables.numpy(), layouts.block_table(case))
        assert bias.page_size == case.page_size and bias.base.kv_seqlen == list(case.kv_lens)
        assert call["key"].shape[:2] == (1, layouts.pool_pages(case)
                                         * case.page_size)  # the pool, one row per slot
    if isinstance(bias, (BlockDiagonalMask, torch.Tensor)):
        assert call["query"].shape[0] == (case.batch if isinstance(bias, torch.Tensor) else 1)
    assert tuple(out.shape) == expected_shape(case)
    assert torch.isfinite(out).all()
    assert max_err(out, data) < 1e-5


def test_combinations_without_a_class_say_why(fake_xformers):
    from attnbench import Unsupported

    case = Case(**G, layout="packed", q_lens=(6, 12), kv_lens=(20, 9), alibi=True)
    with pytest.raises(Unsupported, match="packed layout takes block-diagonal masks only"):
        run_on_cpu(case)
    cuda = Case(**{**G, "dtype": "float16", "device": "cuda"}, softcap=5.0)
    (why,) = [r for r in XformersMEA().unsupported(cuda) if "softcap" in r]
    assert why.endswith("memory_efficient_attention has no soft-capping")
