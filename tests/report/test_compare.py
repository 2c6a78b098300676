"""attnbench compare: a run against itself passes; slower or wrong runs fail with exit 1."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from attnbench.cli import main
from attnbench.report.compare_verdict import compare_pair
from attnbench.report.significance import _mann_whitney_normal, mann_whitney_p


def test_run_against_itself_passes(real_run, capsys):
    base = str(real_run("base"))
    assert main(["compare", base, base]) == 0
    out = capsys.readouterr()
    assert "compare: passed" in out.out and "different environments" not in out.err


def judged(run: Path, folder: Path, busy: bool) -> Path:
    """A copy of a run whose busy-machine verdict is set by hand (the tiny runs are made on
    whatever load the host has: the verdict is fixed here to test what compare does with it)."""
    out = folder / f"{run.name}-{'busy' if busy else 'idle'}"
    shutil.copytree(run, out)
    meta = json.loads((out / "run.json").read_text())
    meta.pop("contention", None)  # no readings: the verdict set here is the one judged
    meta["busy"] = {"busy": busy, "reasons": ["other processes used 1.9 of the 2 cores"] * busy,
                    "advice": "its timings are not reliable: rerun on an idle machine",
                    "seen": "load 4.1 on 2 cores before the run"}
    (out / "run.json").write_text(json.dumps(meta))
    return out


def test_slower_backend_is_a_regression_and_named(real_run, tmp_path: Path, capsys):
    base, slow = judged(real_run("base"), tmp_path, False), judged(real_run("slow"), tmp_path,
                                                                   False)
    assert main(["compare", str(base), str(slow), "--allow-missing"]) == 1
    out = capsys.readouterr().out
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("compare: FAILED") and "slow-copy (regression)" in verdict
    assert "numpy-naive" not in verdict


@pytest.mark.parametrize("busy_run", ["base", "new"])
def test_a_busy_run_lists_timing_regressions_without_gating_them(real_run, tmp_path: Path,
                                                                 capsys, busy_run: str):
    base = judged(real_run("base"), tmp_path, busy_run == "base")
    slow = judged(real_run("slow"), tmp_path, busy_run == "new")
    assert main(["compare", str(base), str(slow), "--allow-missing"]) == 0
    out = capsys.readouterr()
    assert f"WARNING: the {busy_run} run" in out.err and "1.9 of the 2 cores" in out.err
    assert "listed, not gated (--strict gates them)" in out.err
    assert "regression (unreliable: busy machine)" in out.out
    verdict = out.out.strip().splitlines()[-1]
    assert verdict.startswith("compare: passed")
    assert "not gated, a run was busy: slow-copy" in verdict
    assert main(["compare", str(base), str(slow), "--allow-missing", "--strict"]) == 1
    out = capsys.readouterr()
    assert "slow-copy (regression)" in out.out.strip().splitlines()[-1]
    assert "gated anyway (--strict)" in out.err


def test_a_busy_run_still_gates_correctness(real_run, tmp_path: Path, capsys):
    base = judged(real_run("base"), tmp_path, True)
    assert main(["compare", str(base), str(real_run("wrong")), "--threshold", "1000",
                 "--allow-missing"]) == 1
    assert "slow-copy (new failure)" in capsys.readouterr().out.strip().splitlines()[-1]


def test_a_huge_threshold_lets_the_slow_run_pass(real_run, capsys):
    assert main(["compare", str(real_run("base")), str(real_run("slow")),
                 "--threshold", "1000", "--allow-missing"]) == 0


def test_new_mismatch_always_fails(real_run, capsys):
    assert main(["compare", str(real_run("base")), str(real_run("wrong")),
                 "--threshold", "1000", "--min-abs", "1000", "--allow-missing"]) == 1
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert "slow-copy (new failure)" in verdict


def test_different_environment_warns_loudly(real_run, tmp_path: Path, capsys):
    other = tmp_path / "other"
    shutil.copytree(real_run("base"), other)
    meta = json.loads((other / "run.json").read_text())
    meta["environment"]["host"] = "elsewhere"
    meta["environment"].setdefault("versions", {})["torch"] = "0.0-other"
    (other / "run.json").write_text(json.dumps(meta))
    assert main(["compare", str(real_run("base")), str(other)]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "elsewhere" in err and "0.0-other" in err


def test_bad_flags_are_usage_errors(real_run, capsys):
    base = str(real_run("base"))
    assert main(["compare", base, base, "--threshold", "-1"]) == 2
    assert main(["compare", base, "/nonexistent/run"]) == 2


def _rec(samples: list[float], status: str = "ok") -> dict:
    srt = sorted(samples)
    return {"scenario": "s", "case_id": "c", "device": "cpu", "backend": "b", "status": status,
            "timing": {"median_ms": srt[len(srt) // 2], "samples_ms": samples}}


def test_gate_needs_ratio_floor_and_significance():
    rng = random.Random(0)
    base = [1.0 + rng.gauss(0, 0.01) for _ in range(20)]
    slower = [1.3 + rng.gauss(0, 0.01) for _ in range(20)]
    assert compare_pair(_rec(base), _rec(slower), None, None).verdict == "regression"
    assert compare_pair(_rec(slower), _rec(base), None, None).verdict == "faster"
    # 30 % slower but only 0.03 ms: under the 0.05 ms CPU floor
    tiny = compare_pair(_rec([x / 10 for x in base]), _rec([x / 10 for x in slower]), None, None)
    assert tiny.verdict == "same" and not tiny.gated
    # too few samples to be significant: slower, not gated
    few = compare_pair(_rec(base[:2]), _rec(slower[:2]), None, None)
    assert few.verdict == "slower" and not few.gated


def test_without_raw_samples_the_interquantile_ranges_decide():
    def rec(p20: float, med: float, p80: float) -> dict:
        return {"scenario": "s", "case_id": "c", "device": "cuda", "backend": "b",
                "status": "ok", "timing": {"median_ms": med, "p20_ms": p20, "p80_ms": p80}}

    assert compare_pair(rec(1.0, 1.01, 1.02), rec(1.2, 1.21, 1.22), None, None).gated
    overlapping = compare_pair(rec(1.0, 1.01, 1.3), rec(1.1, 1.21, 1.4), None, None)
    assert overlapping.verdict == "slower" and not overlapping.gated


@pytest.mark.parametrize("seed", range(5))
def test_own_mann_whitney_agrees_with_scipy(seed: int):
    pytest.importorskip("scipy")
    rng = random.Random(seed)
    a = [round(rng.gauss(0, 1), 1) for _ in range(30)]  # rounding makes ties
    b = [round(rng.gauss(0.5, 1), 1) for _ in range(25)]
    assert _mann_whitney_normal(a, b) == pytest.approx(mann_whitney_p(a, b), rel=0.05, abs=1e-4)


@pytest.mark.parametrize("base, new, verdict, gated", [
    ("error", "mismatch", "new failure", True),  # a wrong answer is new even after an error
    ("mismatch", "ok", "fixed", False),
    ("ok", "unsupported", "now unsupported", True),  # lost coverage
    ("mismatch", "mismatch", "same", False),
])
def test_status_changes(base: str, new: str, verdict: str, gated: bool):
    row = compare_pair(_rec([1.0] * 5, base), _rec([1.0] * 5, new), None, None)
    assert (row.verdict, row.gated) == (verdict, gated)


def test_gpu_clocks_and_temperature_are_not_an_environment_difference():
    from attnbench.report.compare_env import environment_differences
    from attnbench.report.groups import Run

    def run(clock: str, driver: str) -> Run:
        gpu = {"name": "H100", "driver": driver, "cuda": "13.0",
               "devices": [{"clocks.sm": clock, "temperature.gpu": clock}]}
        return Run(Path("."), {"environment": {"gpu": gpu, "host": "h"}}, [])

    assert environment_differences(run("1980", "580"), run("1755", "580")) == []
    assert environment_differences(run("1980", "580"), run("1980", "590"))


def test_samples_that_are_not_numbers_are_ignored_not_a_traceback():
    edited = _rec([1.0] * 5)
    edited["timing"]["samples_ms"] = ["fast", None, True]  # an edited records.jsonl
    row = compare_pair(_rec([1.0] * 5), edited, None, None)
    assert row.verdict == "same" and row.p_value is None


def test_a_ray_run_is_compared_by_its_nodes_environments():
    """The driver of a Ray run measured nothing: the nodes' environments are compared."""
    from attnbench.report.compare_env import environment_differences
    from attnbench.report.groups import Run

    here = {"host": "vm", "cpu": "AMD EPYC", "versions": {"numpy": "2.4"}}
    other = {"host": "vm", "cpu": "Intel Xeon", "versions": {"numpy": "2.3"}}
    local = Run(Path("."), {"environment": here}, [])
    ray_same = Run(Path("."), {"environment": here, "nodes": {"n1": {"environment": here}}}, [])
    ray_other = Run(Path("."), {"environment": here, "nodes": {"n1": {"environment": other}}},
                    [])
    assert environment_differences(local, ray_same) == []
    assert environment_differences(local, ray_other) == [
        "cpu 'AMD EPYC' vs 'Intel Xeon'", "numpy version 2.4 vs 2.3"]
    mixed = Run(Path("."), {"environment": here, "nodes": {"n1": {"environment": here},
                                                           "n2": {"environment": other}}}, [])
    assert environment_differences(ray_same, mixed) == [
        "the runs' node environments differ: 1 kind(s) in the base run, 2 in the new one"]


def test_runs_measured_with_other_settings_are_said_to_differ():
    """Threads, the timing budget or the seed changed: compare said nothing (a review found
    `--threads 1` against all threads compared silently)."""
    from attnbench.report.compare_env import setting_differences
    from attnbench.report.groups import Run

    def run(**config) -> Run:
        return Run(Path("."), {"config": {"threads": None, "budget_s": 0.5, "seed": 0,
                                          **config}}, [])

    assert setting_differences(run(), run()) == []
    assert setting_differences(run(), run(threads=1, seed=5)) == ["threads None vs 1",
                                                                  "seed 0 vs 5"]
    assert setting_differences(run(), Run(Path("."), {}, [])) == []  # no config: not said
    assert setting_differences(run(ray_cpus_per_task=1), run(ray_cpus_per_task=2)) == []
    ray = {"executor": "ray"}  # CPUs per Ray task matter only where both ran on Ray
    assert setting_differences(run(**ray, ray_cpus_per_task=1),
                               run(**ray, ray_cpus_per_task=2)) == ["ray_cpus_per_task 1 vs 2"]


def test_compare_warns_of_other_settings(real_run, tmp_path, capsys):
    base = real_run("base")
    other = tmp_path / "other"
    shutil.copytree(base, other)
    meta = json.loads((other / "run.json").read_text())
    meta["config"]["threads"] = 1
    (other / "run.json").write_text(json.dumps(meta))
    main(["compare", str(base), str(other)])
    assert "different settings; the numbers may not be comparable: threads" in \
        capsys.readouterr().err
