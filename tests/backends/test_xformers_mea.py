"""The xformers adapter: its reasons, and its argument mapping driven through a FAKE xformers.

The fake library below is NOT xformers. It is injected into sys.modules only to test OUR
adapter logic on the CPU: layout (B, S, H, D) and BMGHK for grouped heads, the choice of
mask class (LowerTriangularMask is top-left, LowerTriangularFromBottomRightMask bottom-right,
as xformers documents), scale, and the layout of the output. The fake computes attention
with plain torch following xformers' documented conventions, and leaves NaN in rows that see
no key, so that the adapter's zeroing is exercised. Hardware verification of the real
library is issue #5.
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
from attnbench.run.execute import CaseData
from attnbench.verify.inputs import make_inputs


class LowerTriangularMask:
    """Fake of xformers' top-left causal bias: query i sees key j iff j <= i."""


class LowerTriangularFromBottomRightMask:
    """Fake of xformers' bottom-right causal bias: j <= i + Mk - Mq."""


def fake_attention(calls: list, query, key, value, attn_bias=None, p=0.0, scale=None):
    """memory_efficient_attention by xformers' documented rules; records what it was given."""
    calls.append({"query": query, "key": key, "value": value, "attn_bias": attn_bias,
                  "p": p, "scale": scale})
    shape = query.shape
    if query.dim() == 5:  # BMGHK: G groups of H heads; k/v already expanded over H
        query, key, value = (x.flatten(2, 3) for x in (query, key, value))
    q, k, v = (x.transpose(1, 2).double() for x in (query, key, value))  # (B, H, M, K)
    s = q @ k.transpose(-1, -2) * (scale if scale is not None else q.shape[-1] ** -0.5)
    mq, mk = q.shape[2], k.shape[2]
    i, j = torch.arange(mq)[:, None], torch.arange(mk)[None, :]
    if type(attn_bias) is LowerTriangularMask:
        s = s.masked_fill(j > i, float("-inf"))
    elif type(attn_bias) is LowerTriangularFromBottomRightMask:
        s = s.masked_fill(j > i + mk - mq, float("-inf"))
    else:
        assert attn_bias is None, f"fake got an unexpected bias {attn_bias!r}"
    out = torch.softmax(s, dim=-1) @ v  # NaN where a row sees no key
    return out.transpose(1, 2).reshape(shape).to(query.dtype)


@pytest.fixture
def fake_xformers(monkeypatch) -> list:
    """Install the fake modules xformers, xformers.ops, xformers.ops.fmha(.attn_bias)."""
    calls: list = []
    bias = types.ModuleType("xformers.ops.fmha.attn_bias")
    bias.LowerTriangularMask = LowerTriangularMask
    bias.LowerTriangularFromBottomRightMask = LowerTriangularFromBottomRightMask
    fmha = types.ModuleType("xformers.ops.fmha")
    fmha.attn_bias = bias
    ops = types.ModuleType("xformers.ops")
    ops.fmha = fmha
    ops.memory_efficient_attention = lambda *a, **kw: fake_attention(calls, *a, **kw)
    root = types.ModuleType("xformers")
    root.ops = ops
    for name, mod in [("xformers", root), ("xformers.ops", ops), ("xformers.ops.fmha", fmha),
                      ("xformers.ops.fmha.attn_bias", bias)]:
        monkeypatch.setitem(sys.modules, name, mod)
    import_failure.cache_clear()
    yield calls
    import_failure.cache_clear()


def run_on_cpu(case: Case) -> tuple[torch.Tensor, CaseData]:
    """Drive the adapter directly through prepare() with CPU tensors (bypasses unsupported())."""
    data = CaseData(case, seed=0)
    fn = XformersMEA().prepare(make_inputs(case, data.arrays, "torch"))
    return fn(), data


def max_err(out: torch.Tensor, data: CaseData) -> float:
    return float(np.abs(out.double().numpy()[:, :, data.rows] - data.ref).max())


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


def test_no_operator_becomes_unsupported(fake_xformers, monkeypatch):
    from attnbench import Unsupported

    def refuse(*a, **kw):
        raise NotImplementedError("No operator found for `memory_efficient_attention_forward`")

    monkeypatch.setattr(sys.modules["xformers.ops"], "memory_efficient_attention", refuse)
    with pytest.raises(Unsupported, match="no operator"):
        run_on_cpu(CASES["self-causal"][0])


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
