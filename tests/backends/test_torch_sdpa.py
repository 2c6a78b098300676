"""torch-sdpa and its CPU kernels on the variant cases, against the float64 oracle."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from attnbench.backends.torch_sdpa import profiled_kernels, sdpa_backends, sdpa_mask_args

from attnbench.case import Case
from attnbench.run.execute import CaseData, Options, execute, expected_shape
from attnbench.verify.inputs import make_inputs

BACKENDS = {b.name: b for b in sdpa_backends()}
CPU_KERNELS = ["torch-sdpa", "torch-sdpa-math", "torch-sdpa-flash"]
G = {"batch": 2, "heads_q": 4, "heads_kv": 2, "seq_q": 12, "seq_kv": 20, "head_dim": 16}
CASES = {
    "window-causal": Case(**G, mask="causal", window_left=5),
    "window-both": Case(**{**G, "seq_q": 20}, window_left=3, window_right=2),
    "lengths-empty-rows": Case(**G, mask="causal", q_lens=(12, 0), kv_lens=(7, 20)),
    "kv-lens-decode": Case(**{**G, "seq_q": 2}, mask="causal", kv_lens=(5, 17)),
    "documents-causal": Case(**{**G, "seq_q": 20}, mask="causal", doc_lens=(4, 9, 7)),
    "alibi-causal": Case(**G, mask="causal", alibi=True),
    "bias-head": Case(**G, bias="head"),
    "bias-alibi-lengths": Case(**G, mask="causal", bias="batch_head", kv_lens=(9, 3), alibi=True),
    "dv": Case(**G, mask="causal", head_dim_v=24),
    # sinks: one more key per query head (score σ_h, value 0), its column in every mask
    "sinks-none": Case(**G, sinks=True),
    "sinks-causal": Case(**G, mask="causal", sinks=True),
    "sinks-window-lengths-bias": Case(**G, mask="causal", sinks=True, window_left=3,
                                      kv_lens=(9, 0), bias="head"),
}


def check(name: str, case: Case) -> dict:
    rec = execute(BACKENDS[name], "test", case, lambda: CaseData(case, seed=0),
                  Options(time_it=False, memory=False))
    assert rec["status"] == "ok", (rec.get("error"), rec.get("agreement"))
    out = rec["agreement"]["outputs"][0]
    assert out["nonfinite"] == 0 and out["max_abs_err"] <= out["bound"]
    assert out["shape"] == list(expected_shape(case))
    return rec


@pytest.mark.parametrize("key", list(CASES))
@pytest.mark.parametrize("name", CPU_KERNELS)
def test_variants_agree_with_oracle(name, key):
    case = CASES[key]
    reasons = BACKENDS[name].unsupported(case)
    if name == "torch-sdpa-flash" and "dv" in case.variants:
        assert reasons == ["torch-sdpa-flash does not support the dv variant: this kernel needs "
                           "v's head dim equal to q's"]
        return
    assert reasons == []
    check(name, case)


@pytest.mark.parametrize("key", ["window-causal", "bias-alibi-lengths", "sinks-causal",
                                 "sinks-window-lengths-bias"])
def test_bfloat16(key):
    check("torch-sdpa", replace(CASES[key], dtype="bfloat16"))


def test_mask_kinds():
    """Visibility alone goes as a boolean attn_mask (True = attend); ALiBi/bias additively."""
    def mask_of(case):
        data = CaseData(case, seed=0)
        return sdpa_mask_args(make_inputs(case, data.arrays, "torch"))["attn_mask"]

    window = mask_of(CASES["window-causal"])
    assert window.dtype == torch.bool and window.shape == (12, 20)
    lengths = mask_of(CASES["lengths-empty-rows"])
    assert lengths.dtype == torch.bool and lengths.shape == (2, 1, 12, 20)
    assert not lengths[1].any()  # q_lens 0: no row of the second sequence sees a key
    additive = mask_of(CASES["bias-alibi-lengths"])
    assert additive.dtype == torch.float32 and additive.shape == (2, 4, 12, 20)
    assert torch.isneginf(additive[1, :, :, 3:]).all()  # kv_lens 3


@pytest.mark.parametrize("extra, words", [
    ({"softcap": 5.0}, "soft-capping rewrites the scores before the mask"),
    ({"layout": "packed"}, "not cu_seqlens (varlen)"),
    ({"layout": "paged", "page_size": 4}, "not pages through a block table"),
])
def test_unsupported_variants_say_why(extra, words):
    case = Case(**G, **extra)
    for name in BACKENDS:
        reasons = BACKENDS[name].unsupported(replace(case, device="cpu"))
        assert any(words in r for r in reasons), (name, reasons)


def test_flash_kernel_on_cuda_takes_no_mask():
    flash = BACKENDS["torch-sdpa-flash"]
    reasons = flash.unsupported(replace(CASES["window-causal"], device="cuda", dtype="float16"))
    assert any(r.endswith("variant on cuda: the flash kernel takes no attn_mask on CUDA")
               for r in reasons), reasons


KERNEL_CASES = {  # cases on which torch's CPU dispatch differs (flash or math), each mode
    "causal-square": Case(1, 2, 2, 16, 16, 16, mask="causal"),
    "causal-fewer-queries": Case(1, 2, 2, 9, 23, 16, mask="causal"),  # lower-right CausalBias
    "causal-more-queries": Case(1, 2, 2, 23, 9, 16, mask="causal"),
    "none-grouped": Case(1, 4, 2, 16, 16, 16),
    "float64": Case(1, 2, 2, 16, 16, 16, dtype="float64", mask="causal"),
    "bfloat16": Case(1, 2, 2, 16, 16, 16, dtype="bfloat16"),
    "dv": Case(1, 2, 2, 16, 16, 16, mask="causal", head_dim_v=24),  # flash needs dv == d
    "window-bool-mask": CASES["window-causal"],
    "alibi-float-mask": CASES["alibi-causal"],
}


@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
@pytest.mark.parametrize("key", list(KERNEL_CASES))
@pytest.mark.parametrize("name", CPU_KERNELS)
def test_reported_kernel_is_the_one_that_ran(name, key, mode):
    """inputs.report(kernel=...) from torch's own choice, against the aten op the profiler saw
    in the same call (gradients on: the choice depends on requires_grad)."""
    case = replace(KERNEL_CASES[key], mode=mode)
    backend = BACKENDS[name]
    if backend.unsupported(case):
        return  # torch-sdpa-flash on dv: said unsupported (test above)
    inputs = make_inputs(case, CaseData(case, seed=0).arrays, "torch")
    if mode != "fwd":
        for t in (inputs.q, inputs.k, inputs.v):
            t.requires_grad_(True)
    call = backend.prepare(inputs)
    ran = profiled_kernels(lambda: call().sum().backward() if mode != "fwd" else call())
    assert ran and set(ran) == {inputs.reported["kernel"]}, (ran, inputs.reported)
    if name == "torch-sdpa-math" or "dv" in case.variants:
        assert ran[0] == "math"
    elif case.dtype in ("float32", "bfloat16"):
        assert ran[0] == "flash"  # torch 2.x's CPU flash kernel takes these cases


def test_profiled_kernels_sees_a_wrong_report():
    """The check above can fail: forcing math while the report says flash disagrees."""
    case = KERNEL_CASES["causal-square"]
    inputs = make_inputs(case, CaseData(case, seed=0).arrays, "torch")
    BACKENDS["torch-sdpa"].prepare(inputs)
    math_call = BACKENDS["torch-sdpa-math"].prepare(make_inputs(case, CaseData(case, 0).arrays,
                                                                "torch"))
    assert inputs.reported["kernel"] == "flash" and profiled_kernels(math_call) == ["math"]


def test_a_kernel_that_refuses_reports_nothing_and_the_call_says_unsupported():
    """Forced flash on dv: torch's choice raises "No available kernel"; prepare() reports no
    kernel and the call is Unsupported with torch's words (as before the report existed)."""
    from attnbench.backends.torch_sdpa import TorchSDPA

    from attnbench import Unsupported

    case = KERNEL_CASES["dv"]
    forced = TorchSDPA("flash-no-caps", "FLASH_ATTENTION", BACKENDS["torch-sdpa"].capabilities,
                       "SDPA forced to flash, declaring dv (it cannot)")
    inputs = make_inputs(case, CaseData(case, seed=0).arrays, "torch")
    call = forced.prepare(inputs)
    assert "kernel" not in inputs.reported
    with pytest.raises(Unsupported, match="torch refused the case"):
        call()


def test_sinks_with_alibi_share_the_additive_masks_row_shift():
    """The additive mask shifts each row's ALiBi terms by the row's largest visible one; the
    sink's column carries the same shift, so SDPA agrees with the oracle (which gives the sink
    no ALiBi term), in float32 and bfloat16, with rows that see no key."""
    # more queries than keys, no causal mask: the first rows' diagonals lie before key 0, so
    # their largest ALiBi term is not 0 and the shift matters
    case = Case(**{**G, "seq_q": 20, "seq_kv": 12}, sinks=True, alibi=True, kv_lens=(9, 0))
    for dtype in ("float32", "bfloat16"):
        for name in CPU_KERNELS:
            check(name, replace(case, dtype=dtype))
