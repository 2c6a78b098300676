"""The flash-attn adapters: their reasons, and their argument mapping driven through a FAKE library.

The fake flash_attn below is NOT FlashAttention. It is injected into sys.modules only to test
OUR adapter logic on the CPU: layout (B, S, H, D), native grouped heads (query head h reads kv
head h // (Hq // Hkv)), softmax_scale, the causal flag (bottom-right aligned since flash-attn
2.1, as its README documents; a row that sees no key outputs zeros) and the output layout.
It computes attention with plain torch by those documented rules. The real kernels are
verified on hardware in issue #5.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from attnbench.backends.flash_attn_func import flash_backends

from attnbench.case import Case
from attnbench.plugin.backend import device_failure, import_failure, parse_version, version_failure
from attnbench.run.execute import CaseData
from attnbench.verify.inputs import make_inputs


def fake_flash(calls: list, q, k, v, dropout_p=0.0, softmax_scale=None, causal=False,
               return_tuple=False):
    """flash_attn_func by FlashAttention's documented rules; records what it was given."""
    calls.append({"q": q, "k": k, "v": v, "dropout_p": dropout_p,
                  "softmax_scale": softmax_scale, "causal": causal})
    hq, hk = q.shape[2], k.shape[2]
    assert hq % hk == 0, "flash-attn needs heads_q a multiple of heads_kv"
    qq, kk, vv = (x.transpose(1, 2).double() for x in (q, k, v))  # (B, H, S, D)
    kk, vv = (x.repeat_interleave(hq // hk, dim=1) for x in (kk, vv))
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    s = qq @ kk.transpose(-1, -2) * scale
    sq, sk = qq.shape[2], kk.shape[2]
    seen = torch.ones(sq, sk, dtype=torch.bool)
    if causal:  # bottom-right: j <= i + sk - sq
        seen = torch.arange(sk)[None, :] <= torch.arange(sq)[:, None] + sk - sq
    p = torch.softmax(s.masked_fill(~seen, float("-inf")), dim=-1).nan_to_num(0.0)
    out = (p @ vv).transpose(1, 2).to(q.dtype)
    return (out, None) if return_tuple else out


@pytest.fixture
def fake_flash_attn(monkeypatch):
    """Install fake flash_attn (version 2.6.3) and flash_attn.cute (returns (out, lse))."""
    calls: list = []
    root = types.ModuleType("flash_attn")
    root.__version__ = "2.6.3"
    root.flash_attn_func = lambda *a, **kw: fake_flash(calls, *a, **kw)
    cute = types.ModuleType("flash_attn.cute")
    cute.flash_attn_func = lambda *a, **kw: fake_flash(calls, *a, return_tuple=True, **kw)
    root.cute = cute
    monkeypatch.setitem(sys.modules, "flash_attn", root)
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
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
@pytest.mark.parametrize("name", ["flash-attn", "flash-attn-4"])
def test_adapter_mapping_agrees_with_oracle(fake_flash_attn, name, case):
    data = CaseData(case, seed=0)
    out = BACKENDS[name].prepare(make_inputs(case, data.arrays, "torch"))()
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
    assert BACKENDS["flash-attn-4"].availability() == []  # it declares no minimum
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
