"""--repeat: outputs and gradients compared bit for bit across calls (attnbench/verify/determinism).

The backends are real test plugins (tests/plugins/nondeterministic.py): test-jittery moves one
output element by one ulp per call, test-jittery-grad one element of dO per backward,
test-steady and the built-in naive backends never differ.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.cli import main
from attnbench.plugin.registry import build_registry
from attnbench.run.execute import CaseData, Options, execute
from attnbench.verify import determinism

PLUGIN = str(Path(__file__).resolve().parents[1] / "plugins" / "nondeterministic.py")
SMALL = Case(batch=1, heads_q=2, heads_kv=1, seq_q=24, seq_kv=32, head_dim=8, mask="causal")


def test_differences_are_bitwise():
    a = np.array([1.0, 0.0, np.nan, 2.0])
    assert determinism.differences({"out": a}, {"out": a.copy()}) == {"out": 0.0}
    signed = a.copy()
    signed[1] = -0.0  # equal values, different bits
    assert determinism.differences({"out": a}, {"out": signed})["out"] > 0
    moved = a.copy()
    moved[3] = np.nextafter(2.0, 3.0)
    assert determinism.differences({"out": a}, {"out": moved})["out"] == pytest.approx(
        np.nextafter(2.0, 3.0) - 2.0)
    nan_moved = a.copy()
    nan_moved[2], nan_moved[0] = 5.0, np.nan
    assert determinism.differences({"out": a}, {"out": nan_moved})["out"] == np.inf
    assert determinism.differences({"out": a}, {"out": a[:2]})["out"] == np.inf
    assert determinism.differences({"out": a, "dq": a}, {"out": a})["dq"] == np.inf


def test_repeat_check_reports_the_worst_difference_and_what_differs():
    outs = iter([np.array([1.0, 2.0]), np.array([1.0, 2.5]), np.array([1.0, 2.0])])
    det = determinism.repeat_check(lambda: next(outs), {"out": np.array([1.0, 2.0])}, None, 4,
                                   lambda: None)
    assert det == {"repeats": 4, "bitwise_identical": False, "max_abs_diff": 0.5,
                   "compared": ["out"], "differing": ["out"]}


def _run(name: str, case: Case, repeat: int = 3) -> dict:
    backend = build_registry([PLUGIN], autoload=False).get(name)
    opts = Options(time_it=False, memory=False, repeat=repeat)
    return execute(backend, "repeat", case, lambda: CaseData(case, 0), opts)


@pytest.mark.parametrize("name", ["test-steady", "numpy-naive"])
def test_a_deterministic_backend_is_bitwise_identical(name):
    rec = _run(name, SMALL)
    assert rec["status"] == "ok"
    assert rec["determinism"] == {"repeats": 3, "bitwise_identical": True, "max_abs_diff": 0.0,
                                  "compared": ["out"], "differing": []}


def test_a_jittery_backend_is_ok_but_not_deterministic():
    rec = _run("test-jittery", SMALL)
    assert rec["status"] == "ok"  # one ulp: within the pass bound
    det = rec["determinism"]
    assert det["bitwise_identical"] is False and det["differing"] == ["out"]
    assert 0 < det["max_abs_diff"] < 1e-5


def test_without_repeat_there_is_no_determinism_entry():
    assert "determinism" not in _run("test-jittery", SMALL, repeat=1)


@pytest.mark.parametrize("mode", ["fwd_bwd", "bwd"])
def test_gradients_are_compared_in_backward_modes(mode):
    pytest.importorskip("torch")
    case = Case(batch=1, heads_q=2, heads_kv=1, seq_q=16, seq_kv=16, head_dim=8,
                mask="causal", mode=mode)
    steady = _run("torch-naive", case)
    assert steady["status"] == "ok", steady.get("error")
    assert steady["determinism"]["bitwise_identical"] is True
    assert steady["determinism"]["compared"] == ["dk", "dq", "dv", "out"]
    jittery = _run("test-jittery-grad", case)
    assert jittery["status"] == "ok", jittery.get("error")
    det = jittery["determinism"]
    assert det["bitwise_identical"] is False
    assert "dv" in det["differing"] and "out" not in det["differing"]  # forward untouched


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


SCENARIO = """name = "rep"
[base]
batch = 1
heads = 2
head_dim = 8
seq_len = 16
mask = "causal"
"""


@pytest.mark.process
def test_check_reports_and_only_fails_when_asked(cli, tmp_path):
    (tmp_path / "rep.toml").write_text(SCENARIO)
    args = ["check", "-s", str(tmp_path / "rep.toml"), "--plugin", PLUGIN, "-b", "test-jittery",
            "-b", "test-steady", "--repeat", "3"]
    proc = cli(*args, "--out", str(tmp_path / "a"))
    assert proc.returncode == 0, proc.stderr
    assert "test-jittery: bitwise identical in 0 of 1" in proc.stdout
    assert "NOT deterministic" in proc.stdout
    assert "test-steady: bitwise identical in 1 of 1" in proc.stdout
    assert "≡" in proc.stdout and "≠" in proc.stdout  # marks in the summary table
    recs = {r["backend"]: r for r in _records(tmp_path / "a")}
    assert recs["test-jittery"]["determinism"]["bitwise_identical"] is False
    assert recs["test-steady"]["determinism"]["bitwise_identical"] is True
    assert main(["report", str(tmp_path / "a")]) == 0
    md = (tmp_path / "a" / "report.md").read_text()
    section = md.split("## Determinism", 1)[1].split("## ", 1)[0]
    assert "| test-jittery | rep | 3 | 0 of 1 | NOT deterministic |" in section
    assert "| test-steady | rep | 3 | 1 of 1 | deterministic | 0 | – |" in section
    row = next(csv.DictReader(open(tmp_path / "a" / "summary.csv")))
    assert row["repeats"] == "3" and row["bitwise_identical"] in ("True", "False")
    proc = cli(*args, "--require-deterministic", "--out", str(tmp_path / "b"))
    assert proc.returncode == 1
    assert "1 record(s) not bitwise identical across 3 calls" in proc.stderr
    steady = [a for a in args if a != "test-jittery"]
    steady.remove("-b")
    proc = cli(*steady, "--require-deterministic", "--out", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.process
def test_require_deterministic_without_repeat_is_a_usage_error(cli):
    proc = cli("check", "--require-deterministic", "-b", "numpy-naive")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("attnbench: error: --require-deterministic needs --repeat N "
                                   "with N >= 2")
    proc = cli("check", "--repeat", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.mark.process
def test_a_worker_that_lies_about_determinism_is_overruled(cli, tmp_path):
    """Outputs that differ bitwise between calls, and a worker patched to report them identical:
    the timed calls' arrays the parent read differ from the first, so the record is not
    deterministic and says why; --require-deterministic fails."""
    (tmp_path / "rep.toml").write_text(SCENARIO)
    liar = str(Path(__file__).resolve().parents[1] / "plugins" / "lies_deterministic.py")
    proc = cli("check", "-s", str(tmp_path / "rep.toml"), "--plugin", liar,
               "-b", "test-lies-deterministic", "--repeat", "3", "--require-deterministic",
               "--out", str(tmp_path / "a"))
    assert proc.returncode == 1, proc.stderr
    assert "1 record(s) not bitwise identical across 3 calls" in proc.stderr
    rec, = _records(tmp_path / "a")
    assert rec["status"] == "ok"  # one ulp off, far within the bound
    det = rec["determinism"]
    assert det["bitwise_identical"] is False and det["differing"] == ["out"]
    assert det["max_abs_diff"] > 0
    assert "the worker said True" in det["overruled"]


@pytest.mark.process
def test_a_worker_that_reports_no_repeat_check_fails_require_deterministic(cli, tmp_path):
    """A worker patched to skip the repeat check reports no `determinism` entry: with nothing
    to overrule, --require-deterministic fails the record instead of passing it."""
    (tmp_path / "rep.toml").write_text(SCENARIO)
    plugin = str(Path(__file__).resolve().parents[1] / "plugins" / "skips_repeat.py")
    proc = cli("check", "-s", str(tmp_path / "rep.toml"), "--plugin", plugin,
               "-b", "test-skips-repeat", "-b", "numpy-naive", "--repeat", "3",
               "--require-deterministic", "--out", str(tmp_path / "a"))
    assert proc.returncode == 1, proc.stderr
    assert "1 verified record(s) report no repeat check" in proc.stderr
    recs = {r["backend"]: r for r in _records(tmp_path / "a")}
    assert "determinism" not in recs["test-skips-repeat"]
    assert recs["numpy-naive"]["determinism"]["bitwise_identical"] is True
