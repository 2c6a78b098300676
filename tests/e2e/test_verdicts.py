"""Verdicts that cannot be fooled: real misbehaving plugins through the real CLI.

Changed inputs, a wrong dtype, a NaN on one row, wrong answers off the rows a fixed sampler
would compare, cached outputs, the compared rows drawn after the outputs (records, --resume),
the reasons for a missing baseline or a missing roof, and cases whose inputs cannot fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnbench.record import failure_text
from tests.conftest import ROOT

FAULTS = ROOT / "tests" / "faults"

pytestmark = pytest.mark.process

TINY = """name = "tiny"
[base]
batch = 1
heads_q = 4
heads_kv = 2
head_dim = 16
dtype = "float32"
seq_len = 24
[sweep]
mask = ["none", "causal"]
"""
CHANGED = {  # backend -> what its record must say it changed
    "test-scales-q": "overwrote q in place",
    "test-zeroes-v": "overwrote v in place",
    "test-reassigns-v": "reassigned inputs.v",
    "test-halves-q-per-call": "overwrote q in place",
}


def records(out: Path) -> dict[str, list[dict]]:
    """Records of a run by backend."""
    recs: dict[str, list[dict]] = {}
    for line in (out / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        recs.setdefault(r["backend"], []).append(r)
    return recs


def sweep(cli, tmp_path: Path, verb: str, plugins: list[str], backends: list[str],
          scenario: str = TINY, *extra: str):
    (tmp_path / "s.toml").write_text(scenario)
    args = [verb, "-s", str(tmp_path / "s.toml"), "--device", "cpu", "--out",
            str(tmp_path / "run"), *extra]
    for p in plugins:
        args += ["--plugin", p]
    for b in backends:
        args += ["-b", b]
    return cli(*args, timeout=600)


def test_a_backend_that_changes_its_inputs_is_a_mismatch(cli, plugin_path, tmp_path):
    proc = sweep(cli, tmp_path, "check", [plugin_path("mutates_inputs.py")],
                 [*CHANGED, "numpy-naive"])
    assert proc.returncode == 1, proc.stderr
    recs = records(tmp_path / "run")
    honest = recs["numpy-naive"]
    assert [r["status"] for r in honest] == ["ok", "ok"]
    for name, what in CHANGED.items():
        for rec, good in zip(recs[name], honest, strict=True):
            assert rec["status"] == "mismatch", (name, rec["agreement"])
            assert "modified its inputs" in failure_text(rec) and what in failure_text(rec)
            # the bound comes from the pristine inputs: the same baseline as an honest backend
            out, ref = rec["agreement"]["outputs"][0], good["agreement"]["outputs"][0]
            assert out["baseline_max_abs_err"] == ref["baseline_max_abs_err"]
            for part in ("bound_min", "bound_max", "magnitudes"):  # bounds are per element
                assert out[part] == ref[part]
    for name in ("test-scales-q", "test-zeroes-v", "test-reassigns-v"):  # and their answers
        assert all(not r["agreement"]["outputs"][0]["passed"] for r in recs[name])
    assert "modified its inputs" in proc.stdout


def test_a_wrong_dtype_and_a_nan_on_one_row_are_mismatches(cli, plugin_path, tmp_path):
    proc = sweep(cli, tmp_path, "check", [plugin_path("wrong_outputs.py")],
                 ["test-float64-out", "test-nan-in-row-1"])
    assert proc.returncode == 1, proc.stderr
    recs = records(tmp_path / "run")
    for rec in recs["test-float64-out"]:
        out = rec["agreement"]["outputs"][0]
        assert rec["status"] == "mismatch" and out["max_abs_err"] <= out["bound"]  # right values
        assert "dtype float64, expected float32" in failure_text(rec)
        assert rec["agreement"]["out_dtype"] == "float64"
    for rec in recs["test-nan-in-row-1"]:
        assert rec["status"] == "mismatch"
        assert rec["agreement"]["outputs"][0]["nonfinite"] == 1


BIG = """name = "big"
[base]
batch = 1
heads = 1
head_dim = 16
dtype = "float32"
mask = "none"
seq_len = 4200
"""


def test_wrong_off_the_rows_a_fixed_sampler_compares_is_caught(cli, plugin_path, tmp_path):
    """4200² scores: more than the old 2²⁴-entry limit, so only 64 fixed rows were compared;
    its oracle (1.1 GFLOP) is within the budget now, so every row is."""
    proc = sweep(cli, tmp_path, "check", [plugin_path("wrong_outputs.py")],
                 ["test-right-on-old-rows"], BIG)
    assert proc.returncode == 1, proc.stderr
    (rec,) = records(tmp_path / "run")["test-right-on-old-rows"]
    assert rec["status"] == "mismatch" and rec["agreement"]["rows_checked"] == "all"
    assert rec["agreement"]["outputs"][0]["max_abs_err"] > 0.1


def test_cached_output_is_flagged_and_still_timed(cli, plugin_path, tmp_path):
    """Flagged and timed as measured; where the time claims more than the device can do (a
    cached answer takes no work), the record fails as an impossible throughput."""
    proc = sweep(cli, tmp_path, "run", [plugin_path("reuses_output.py")],
                 ["test-cached", "test-cached-view", "numpy-naive"], TINY, "--budget", "0.05")
    assert proc.returncode == 0, proc.stderr
    recs = records(tmp_path / "run")
    cpu = json.loads((tmp_path / "run" / "run.json").read_text())["roofs"]["cpu"]
    limit = max(cpu["float32"], cpu["cores"]["flops_per_s"])  # run/outcome.py's limit
    for name in ("test-cached", "test-cached-view"):
        for rec in recs[name]:
            assert rec["flags"][0] == "reused_output" and "cached work" in rec["notes"][0]
            assert rec["timing"]["median_ms"] > 0
            over = rec["gflops_per_s"] * 1e9 / limit
            if over > 2:
                assert rec["status"] == "error" and "impossible throughput" in rec["error"]
            else:
                assert rec["status"] == "ok", rec
    assert all("flags" not in r for r in recs["numpy-naive"])


def test_compared_rows_are_drawn_after_the_outputs_and_stored_only_in_records(cli, tmp_path):
    """No check seed exists before the outputs: none in run.json; each record stores the draw
    made for its round (fresh secrets, 1 in 2³² to collide), and --resume draws anew."""
    assert sweep(cli, tmp_path, "check", [], ["numpy-naive"]).returncode == 0
    run = tmp_path / "run"
    assert "check_seed" not in json.loads((run / "run.json").read_text())["config"]
    recs = records(run)["numpy-naive"]
    seeds = [r["agreement"]["check_seed"] for r in recs]
    assert all(isinstance(s, int) for s in seeds) and len(set(seeds)) == len(seeds)
    lines = (run / "records.jsonl").read_text().splitlines()
    (run / "records.jsonl").write_text(lines[0] + "\n")  # as if stopped after one record
    proc = cli("check", "--resume", str(run))
    assert proc.returncode == 0, proc.stderr
    again = records(run)["numpy-naive"]
    assert len(again) == 2 and again[1]["agreement"]["check_seed"] not in seeds


def test_a_missing_baseline_and_a_missing_roof_say_why(cli, tmp_path):
    """The baseline and the float32 roof raise in every attnbench process (tests/faults):
    an output is still judged by the rounding model (the baseline only calibrates it); the
    record and the report say why the baseline is missing."""
    env = {"ATTNBENCH_TEST_FAULTS": "1", "PYTHONPATH": str(FAULTS)}
    (tmp_path / "s.toml").write_text(TINY)
    proc = cli("run", "-s", str(tmp_path / "s.toml"), "--device", "cpu", "-b", "numpy-naive",
               "--out", str(tmp_path / "run"), "--budget", "0.05", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    for rec in records(run)["numpy-naive"]:
        out = rec["agreement"]["outputs"][0]
        assert rec["status"] == "ok" and out["rule"].startswith("rounding model")
        assert 0 < out["error_over_bound"] < 1 and out["baseline_max_abs_err"] is None
        why = out["baseline_missing"]
        assert "MemoryError" in why and "injected" in why
        assert "roof_fraction" not in rec
    roofs = json.loads((run / "run.json").read_text())["roofs"]["cpu"]
    assert roofs["float32"] is None and "injected" in roofs["unmeasured"]["float32"]
    assert cli("report", str(run)).returncode == 0
    md = (run / "report.md").read_text()
    assert "no same-dtype baseline to calibrate the model: baseline raised MemoryError" in md
    assert "no matmul roof for cpu float32" in md and "injected: no float32 matmul" in md


def test_a_plugin_breaking_the_baseline_and_roof_in_its_process_changes_nothing(
        cli, plugin_path, tmp_path):
    """The same injection from a plugin's import reaches only the processes that import it:
    not the run's own (baseline, verdict) nor the roof worker."""
    proc = sweep(cli, tmp_path, "run", [plugin_path("breaks_baseline.py")],
                 ["test-no-baseline"], TINY, "--budget", "0.05")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    for rec in records(run)["test-no-baseline"]:
        out = rec["agreement"]["outputs"][0]
        assert rec["status"] == "ok" and out["rule"] != "fixed atol"
        assert "fallback_reason" not in out
        assert rec["roof_fraction"] > 0
    assert json.loads((run / "run.json").read_text())["roofs"]["cpu"]["float32"] > 0


HUGE = """name = "huge"
[base]
batch = 64
heads = 64
head_dim = 128
dtype = "float32"
seq_len = 262144
"""


def test_a_case_whose_inputs_cannot_fit_is_refused_before_anything_runs(cli, tmp_path):
    proc = sweep(cli, tmp_path, "check", [], ["numpy-naive"], HUGE)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "case b64-h64:64-q262144-k262144-d128-float32-none-fwd needs" in proc.stderr
    assert "GiB" in proc.stderr and "MemAvailable" in proc.stderr
    assert not (tmp_path / "run").exists()
