"""Peak memory: the /proc reader, and real runs showing O(N²) backends stand out from flash."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.measure.memory import cpu_peak, read_status
from attnbench.run.execute import CaseData, Options, execute
from attnbench.worker.arrays import staged_all

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc (Linux)")


@linux
def test_read_status_has_rss_and_hwm():
    st = read_status()
    assert st["VmRSS"] > 0 and st["VmHWM"] >= st["VmRSS"]


@linux
def test_cpu_peak_sees_an_allocation_and_resets_between_calls():
    big = cpu_peak(lambda: np.ones(16 * 2**20 // 8))  # 16 MiB, touched
    small = cpu_peak(lambda: np.ones(2**20 // 8))  # 1 MiB: the high-water mark was reset
    assert big["method"].startswith("VmHWM")
    assert 15 * 2**20 <= big["peak_bytes"] <= 20 * 2**20
    assert small["peak_bytes"] < 4 * 2**20


def _peak(registry, name: str, n: int, data: dict, repeats: int = 1) -> int:
    case = Case(1, 8, 8, n, n, 64, dtype="float32", mask="none")
    if n not in data:
        data[n] = CaseData(case, 0)
    cd = data[n]
    opts = Options(time_it=False, memory=True)
    recs = [execute(registry.get(name), "t", case, lambda: cd, opts) for _ in range(repeats)]
    assert all(r["status"] == "ok" for r in recs), recs[0].get("error")
    return min(r["memory"]["peak_bytes"] for r in recs)


@linux
def test_naive_peak_grows_with_n_squared_and_flash_does_not(registry):
    """Real runs, b1 h8 d64 float32, N = 1024 → 2048: relations, not fixed values."""
    data: dict = {}
    ratios = {}
    for name in ("numpy-naive", "torch-sdpa-math", "torch-sdpa-flash"):
        if registry.get(name).unsupported(Case(1, 8, 8, 1024, 1024, 64)):
            pytest.skip(f"{name} unavailable here")
        # flash's few MiB: the minimum of two runs drops one-off RSS noise (docs/timing.md)
        reps = 2 if name == "torch-sdpa-flash" else 1
        small, large = (_peak(registry, name, n, data, reps) for n in (1024, 2048))
        ratios[name] = large / max(small, 1)
        if name == "torch-sdpa-flash":
            score = 2 * 4 * 8 * 2048 * 2048  # the naive score + probability matrices
            assert large < score / 16, (name, large)
    assert ratios["numpy-naive"] >= 3.0, ratios
    assert ratios["torch-sdpa-math"] >= 3.0, ratios
    # doubling N: quadratic memory grows 4x, linear (flash's output and row statistics) 2x;
    # 3 splits them (2.0 itself failed under load: RSS pages of the larger output)
    assert ratios["torch-sdpa-flash"] < 3.0, ratios


@linux
@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd", "paged"])
def test_harness_estimate_covers_what_the_harness_really_allocates(mode):
    """The plan-time estimate is an upper bound of the real peak of the case data, the
    oracle and (bwd) the gradient oracle: measured, not assumed. paged: pages far larger than
    the 239 keys (the pool holds page_size slots a sequence, not seq_kv)."""
    from attnbench.measure.memory import harness_bytes

    case = Case(2, 4, 2, 512, 640, 64, dtype="float32", mask="causal", mode=mode)
    if mode == "paged":
        case = Case(1, 2, 1, 16, 239, 16, kv_lens=(239,), layout="paged", page_size=2**18)

    def build():
        data = CaseData(case, 0)
        keep = [data.ref]
        if mode != "fwd":  # the gradient oracle, its floor and the baseline, as a check has
            from attnbench.verify.grad import grad_reference
            from attnbench.verify.grad_plan import grad_plan

            plan = grad_plan(case, 1)
            keep.append(grad_reference(case, data.arrays, data.grads().d_out, plan))
        keep.append(staged_all(data.arrays, case.dtype))  # what every worker's folder gets
        return data, keep

    real = cpu_peak(build)["peak_bytes"]
    need = harness_bytes(case)
    assert need["device"] == 0 and real <= need["host"], (real, need)
    assert need["host"] < 20 * real  # and not absurdly loose


def test_plan_refuses_a_case_the_host_cannot_hold(registry, tmp_path):
    from attnbench.errors import UsageError
    from attnbench.run.plan import make_plan
    from attnbench.scenario import load_scenario

    (tmp_path / "s.toml").write_text('name = "x"\n[base]\nbatch = 64\nheads = 64\n'
                                     'head_dim = 128\nseq_len = 262144\n')
    with pytest.raises(UsageError, match=r"case b64-h64:64-q262144-k262144-d128-.* needs \d"):
        make_plan(registry, [load_scenario(tmp_path / "s.toml")], ["numpy-naive"], ["cpu"], [])
