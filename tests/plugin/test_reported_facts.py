"""Inputs.report: what a backend says ran, validated and capped (the record's `ran` field)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.plugin.backend import Inputs
from attnbench.plugin.facts import MAX_FACT_TEXT, MAX_FACTS, check_facts
from attnbench.run.execute import CaseData
from attnbench.verify.inputs import make_inputs

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "reports_what_ran.py"


def inputs() -> Inputs:
    return Inputs(Case(1, 1, 1, 2, 2, 4), None, None, None, 0.5)


def test_scalars_are_kept_numpy_scalars_become_python():
    got = inputs()
    got.report(kernel="cudnn", compiles=np.int64(2), hit=np.bool_(True), ms=np.float32(1.5),
               reason=None)
    assert got.reported == {"kernel": "cudnn", "compiles": 2, "hit": True, "ms": 1.5,
                            "reason": None}
    assert [type(v) for v in got.reported.values()] == [str, int, bool, float, type(None)]
    got.report(kernel="flash")  # a later value replaces an earlier one
    assert got.reported["kernel"] == "flash" and len(got.reported) == 5


def test_long_text_is_cut():
    got = inputs()
    got.report(why="x" * 5000)
    assert len(got.reported["why"]) == MAX_FACT_TEXT and got.reported["why"].endswith("…")


@pytest.mark.parametrize("facts, words", [
    ({"Kernel": "a"}, "fact name 'Kernel'"),
    ({"k" * 33: 1}, "at most 32 characters"),
    ({"ms": float("nan")}, "fact 'ms' is nan"),
    ({"ms": float("inf")}, "not a finite number"),
    ({"ops": ["a", "b"]}, "fact 'ops' is a list"),
    ({"obj": object()}, "fact 'obj' is a object"),
    ({"arr": np.zeros(3)}, "fact 'arr' is a ndarray"),
    ({"n": 2**70}, "fact 'n' is beyond 64-bit integers"),
])
def test_bad_facts_are_refused_by_name(facts, words):
    got = inputs()
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        got.report(**facts)
    assert got.reported == {}


def test_at_most_max_facts_names():
    got = inputs()
    got.report(**{f"f{i}": i for i in range(MAX_FACTS)})
    got.report(f0=-1)  # replacing one is no new name
    with pytest.raises(ValueError, match=f"more than {MAX_FACTS} facts"):
        got.report(one_more=1)
    assert len(got.reported) == MAX_FACTS and got.reported["f0"] == -1


def test_check_facts_reads_a_received_mapping():
    assert check_facts({"kernel": "math", "n": 3}) == {"kernel": "math", "n": 3}
    with pytest.raises(ValueError, match="not a mapping"):
        check_facts(["kernel"])
    with pytest.raises(ValueError, match="more than"):
        check_facts({f"f{i}": i for i in range(MAX_FACTS + 1)})
    with pytest.raises(ValueError, match="fact 'x' is a dict"):
        check_facts({"x": {"nested": 1}})


def load_plugin():
    spec = importlib.util.spec_from_file_location("reports_what_ran", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ReportsWhatRan()


def test_a_plugin_reports_in_prepare_and_in_its_calls():
    backend = load_plugin()
    case = Case(1, 2, 2, 8, 16, 8, mask="causal")
    data = CaseData(case, seed=0)
    got = make_inputs(case, data.arrays, "numpy")
    run = backend.prepare(got)
    assert got.reported == {"kernel": "numpy-naive", "tiles": 2}
    run()
    run()
    assert got.reported == {"kernel": "numpy-naive", "tiles": 2, "calls": 2, "first_call": False}


def test_a_plugin_reporting_a_bad_fact_raises():
    backend = load_plugin()
    case = Case(1, 2, 2, 8, 64, 8)
    with pytest.raises(ValueError, match="fact 'kernel' is a list"):
        backend.prepare(make_inputs(case, CaseData(case, seed=0).arrays, "numpy"))
