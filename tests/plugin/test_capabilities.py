"""Capabilities as data: per-device limits, minimum versions, and Inputs.zero_empty_rows."""

from __future__ import annotations

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.plugin.backend import Capabilities, Inputs, capability_reasons
from attnbench.report.tables import limits, per_device

CAPS = Capabilities(devices=("cpu", "cuda"), dtypes=("float32", "float16", "bfloat16"),
                    modes=("fwd", "bwd", "fwd_bwd"),
                    per_device={"cpu": {"modes": ("fwd",)},
                                "cuda": {"dtypes": ("float16", "bfloat16"), "head_dim_max": 256}})


def test_per_device_narrows_only_its_device():
    assert CAPS.on("cpu").modes == ("fwd",) and CAPS.on("cpu").dtypes == CAPS.dtypes
    assert CAPS.on("cuda").dtypes == ("float16", "bfloat16") and CAPS.on("cuda").modes == CAPS.modes
    assert CAPS.on("cuda").per_device == {}
    assert hash(CAPS) == hash(Capabilities(**vars(CAPS)))  # still hashable, per_device aside
    bwd_cpu = capability_reasons("b", CAPS, Case(1, 1, 1, 8, 8, 8, mode="bwd"))
    assert bwd_cpu == ["b has no bwd mode on cpu (supports fwd)"]
    f32_cuda = capability_reasons("b", CAPS, Case(1, 1, 1, 8, 8, 512, device="cuda"))
    assert f32_cuda == ["b does not support dtype float32 on cuda (supports float16, bfloat16)",
                        "b supports head_dim 1..256 on cuda, not 512"]
    assert capability_reasons("b", CAPS, Case(1, 1, 1, 8, 8, 512, mode="bwd", device="cuda",
                                              dtype="float16")) == [
        "b supports head_dim 1..256 on cuda, not 512"]


def test_list_cells_show_the_limits_per_device():
    assert per_device(CAPS, "modes") == "cpu: fwd / cuda: fwd, bwd, fwd_bwd"
    assert per_device(CAPS, "dtypes") == "cpu: float32, float16, bfloat16 / cuda: float16, bfloat16"
    assert per_device(Capabilities(dtypes=("float64",)), "dtypes") == "float64"
    assert limits(CAPS) == "cpu: - / cuda: head_dim 1..256"
    assert limits(Capabilities(head_dim_multiple=8, gqa=False, min_versions={"m": "2.1"})) == (
        "head_dim % 8, no gqa, m >= 2.1")


def test_builtin_limits_are_data(registry):
    flex, flash = registry.get("flex-attention"), registry.get("torch-sdpa-flash")
    assert flex.capabilities.on("cpu").modes == ("fwd",)
    assert flash.capabilities.on("cuda").dtypes == ("float16", "bfloat16")
    assert registry.get("flash-attn").capabilities.min_versions == {"flash_attn": "2.1"}


def test_min_versions_of_an_installed_module(registry):
    from attnbench.plugin.backend import Backend, version_failure

    class Needs(Backend):
        name, capabilities = "needs", Capabilities(min_versions={"numpy": "999.0"})

    (reason,) = Needs().availability()
    assert reason.startswith(f"numpy {np.__version__} is older than 999.0")
    assert version_failure("numpy", "1.0") is None


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_zero_empty_rows(framework):
    case = Case(1, 2, 2, 5, 3, 4, mask="causal")  # rows 0 and 1 see no key
    out = np.full((1, 2, 5, 4), np.nan, dtype=np.float32)
    if framework == "torch":
        torch = pytest.importorskip("torch")
        out = torch.from_numpy(out)
    inputs = Inputs(case, out, out, out, 0.5)
    zeroed = np.asarray(inputs.zero_empty_rows(out))
    assert (zeroed[:, :, :2] == 0).all() and np.isnan(zeroed[:, :, 2:]).all()
    assert type(inputs.zero_empty_rows(out)) is type(out)
    full = Inputs(Case(1, 2, 2, 3, 5, 4, mask="causal"), out, out, out, 0.5)
    assert full.zero_empty_rows(out) is out and full.empty_rows() is None


def test_lists_are_taken_as_tuples_a_bare_string_is_refused():
    from attnbench.plugin.validate import capabilities_problem

    caps = Capabilities(devices=["cpu"], dtypes=["float64", "float32"])  # type: ignore[arg-type]
    assert caps.dtypes == ("float64", "float32") and capabilities_problem(caps) is None
    bare = Capabilities(dtypes="float32")  # type: ignore[arg-type]
    assert "capabilities.dtypes is 'float32': need a non-empty tuple" in capabilities_problem(bare)


def test_every_builtin_says_why_it_lacks_a_variant(registry):
    """Each variant a built-in backend does not declare (on each of its devices) has a reason."""
    from attnbench.case import VARIANTS

    silent = [(b.name, dev, v) for b in registry.backends.values()
              for dev in b.capabilities.devices for v in VARIANTS
              if v not in b.capabilities.on(dev).variants and not b.capabilities.why_not.get(v)]
    assert silent == []


@pytest.mark.process
def test_cpu_kernels_give_the_reason_in_their_unsupported_records(tmp_path, cli):
    """A real check over packed, paged and bias cases: each record of numba-cpu and numpy-flash
    that is unsupported carries the sentence that says why."""
    import json

    (tmp_path / "v.toml").write_text(
        "[base]\nbatch = 2\nheads = 2\nseq_len = 16\nhead_dim = 8\nkv_lens = [16, 9]\n"
        "[[variant]]\nlayout = \"packed\"\nq_lens = [16, 9]\n"
        "[[variant]]\nlayout = \"paged\"\npage_size = 8\n"
        "[[variant]]\nbias = \"head\"\n")
    proc = cli("check", "-s", str(tmp_path / "v.toml"), "-b", "numba-cpu", "-b", "numpy-flash",
               "-b", "numpy-naive", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    reasons = {(r["backend"], r["layout"], r["bias"]): " ".join(r.get("reasons") or [])
               for r in recs if r["status"] == "unsupported"}
    assert set(reasons) == {("numba-cpu", "packed", "none"), ("numba-cpu", "paged", "none"),
                            ("numba-cpu", "padded", "head"), ("numpy-flash", "packed", "none"),
                            ("numpy-flash", "paged", "none")}
    assert all("variant: " in r for r in reasons.values()), reasons
    assert "cu_seqlens" in reasons["numba-cpu", "packed", "none"]
    assert "block table" in reasons["numpy-flash", "paged", "none"]
    assert "bias" in reasons["numba-cpu", "padded", "head"]
