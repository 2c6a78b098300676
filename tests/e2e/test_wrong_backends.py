"""Deliberately wrong test plugins are caught: by `attnbench check` (exit 1) and in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.plugin.registry import build_registry
from attnbench.run.execute import CaseData, Options, execute
from attnbench.scenario import resolve_scenario
from attnbench.verify import reference


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


@pytest.mark.process
def test_forgotten_scale_is_a_mismatch(cli, plugin_path, tmp_path):
    out = tmp_path / "run"
    proc = cli("check", "-s", "smoke", "--plugin", plugin_path("wrong_scale.py"),
               "-b", "wrong-scale", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "mismatch" in proc.stdout and "wrong-scale" in proc.stdout
    assert "check failed" in proc.stderr
    ran = [r for r in records(out) if r["status"] != "unsupported"]
    assert ran and all(r["status"] == "mismatch" for r in ran)  # every case has rows of >1 key
    worst = ran[0]["agreement"]["outputs"][0]
    assert worst["max_abs_err"] > worst["bound"]


@pytest.mark.process
def test_top_left_causal_fails_only_where_lq_differs_from_lk(cli, plugin_path, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    proc = cli("check", "-s", "smoke", "--plugin", plugin_path("top_left_causal.py"),
               "-b", "top-left-causal", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "mismatch" in proc.stdout
    recs = records(out)
    assert len(recs) == len(resolve_scenario("smoke").cases("cpu"))
    bad = {r["case_id"] for r in recs if r["status"] == "mismatch"}
    expected = {r["case_id"] for r in recs if r["mask"] == "causal" and r["seq_q"] != r["seq_kv"]}
    assert expected and bad == expected
    assert {r["status"] for r in recs if r["case_id"] not in bad} == {"ok"}


TOP_LEFT = """
name = "top-left"
[base]
batch = 2
heads = 2
head_dim = 16
mask = "causal_top_left"
[sweep]
seq_q = [7, 24, 40]
seq_kv = [24]
"""


@pytest.mark.process
def test_the_top_left_convention_is_tested_on_its_own_terms(cli, plugin_path, tmp_path):
    """The same backend declares causal_top_left and passes it, where its bottom-right
    "causal" fails; torch-sdpa and numpy-naive agree on the top-left cases."""
    pytest.importorskip("torch")
    scenario, out = tmp_path / "top_left.toml", tmp_path / "run"
    scenario.write_text(TOP_LEFT)
    proc = cli("check", "-s", str(scenario), "--plugin", plugin_path("top_left_causal.py"),
               "-b", "top-left-causal", "-b", "torch-sdpa", "-b", "numpy-naive",
               "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = records(out)
    assert len(recs) == 9 and {r["status"] for r in recs} == {"ok"}


def test_beyond_the_budget_a_nan_off_the_compared_rows_still_fails(plugin_path, monkeypatch):
    """Rows are sampled (budget lowered to 64 rows); row 1 holds the NaN and is not among
    them: the whole-output scan fails the case, with the error on the compared rows tiny."""
    case = Case(1, 2, 2, 512, 512, 16, mask="causal")
    monkeypatch.setattr(reference, "ORACLE_FLOP_BUDGET", reference.oracle_flops(case, 64))
    data = CaseData(case, 0, check_seed=3)
    assert len(data.rows) == 64 and 1 not in data.rows
    reg = build_registry([plugin_path("wrong_outputs.py")], autoload=False)
    rec = execute(reg.get("test-nan-in-row-1"), "t", case, lambda: data,
                  Options(time_it=False, memory=False))
    out = rec["agreement"]["outputs"][0]
    assert rec["status"] == "mismatch" and rec["agreement"]["rows_checked"] == 64
    assert out["nonfinite"] == 1 and out["max_abs_err"] <= out["bound"]
    assert rec["agreement"]["check_seed"] == 3


def test_each_draw_chooses_new_rows(monkeypatch):
    """Beyond the budget every draw (one per round, after the outputs) picks other rows, and
    the oracle follows them."""
    case = Case(1, 2, 2, 512, 512, 16)
    monkeypatch.setattr(reference, "ORACLE_FLOP_BUDGET", reference.oracle_flops(case, 64))
    data = CaseData(case, 0)
    data.draw_rows()
    rows = data.rows.copy()
    data.draw_rows()
    assert not np.array_equal(rows, data.rows)
    assert np.array_equal(data.ref, reference.oracle(data.arrays, case, data.rows))


def test_a_torch_backend_returning_views_of_a_cached_tensor_is_flagged(registry, plugin_path):
    pytest.importorskip("torch")
    reg = build_registry([plugin_path("reuses_output.py")], autoload=False)
    case = Case(1, 2, 2, 16, 16, 8)
    opts = Options(time_it=False, memory=False)
    rec = execute(reg.get("test-torch-cached-view"), "t", case, lambda: CaseData(case, 0), opts)
    assert rec["status"] == "ok" and rec["flags"] == ["reused_output"]
    honest = execute(registry.get("torch-naive"), "t", case, lambda: CaseData(case, 0), opts)
    assert "flags" not in honest  # its fresh outputs may land in the same freed memory
