"""Terminal tables: failure text from every failing output, plugin text printed as it is."""

from __future__ import annotations

from attnbench.case import VARIANTS
from attnbench.plugin.backend import Capabilities
from attnbench.record import error_ratio, failure_text
from attnbench.report.tables import console, failures, variants_text


def _grad_mismatch() -> dict:
    ok = {"name": "out", "passed": True, "max_abs_err": 1e-7, "bound": 1e-6, "nonfinite": 0}
    bad = {"name": "dq", "passed": False, "max_abs_err": 0.5, "bound": 1e-5, "rule": "3x",
           "nonfinite": 0}
    return {"backend": "b", "case_id": "c", "status": "mismatch", "error": None,
            "agreement": {"outputs": [ok, bad]}}


def test_failure_text_names_the_failing_gradient_not_the_passing_output():
    text = failure_text(_grad_mismatch())
    assert text.startswith("dq:") and "0.5" in text and "out:" not in text
    assert error_ratio(_grad_mismatch()) == 0.5 / 1e-5


def test_a_wrong_shape_is_a_failure_with_its_message():
    rec = {"status": "mismatch", "agreement": {"outputs": [
        {"name": "out", "passed": False, "error": "shape (1, 2) != expected (1, 3)"}]}}
    assert failure_text(rec) == "out: shape (1, 2) != expected (1, 3)"
    assert error_ratio(rec) == float("inf")


def test_error_text_with_brackets_is_printed_as_it_is(capsys):
    rec = {"backend": "b", "case_id": "c", "status": "error",
           "error": "RuntimeError: bad [/tmp/x] shape [b, h, s, d]"}
    console().print(failures([rec]))
    out = capsys.readouterr().out
    assert "[/tmp/x]" in out and "[b, h, s, d]" in out


def test_summary_rows_of_variants_get_distinct_labels_and_repeat_marks():
    from attnbench.report.tables import case_labels, cell, determinism_lines

    base = {"scenario": "v", "backend": "b", "status": "ok", "batch": 2, "heads_q": 2,
            "heads_kv": 2, "seq_q": 8, "seq_kv": 8, "head_dim": 4, "dtype": "float32",
            "mask": "causal", "mode": "fwd", "scale": None}
    recs = [{**base, "case_id": "a"}, {**base, "case_id": "b", "window_left": 3},
            {**base, "case_id": "c", "kv_lens": [8, 0]}, {**base, "case_id": "d", "alibi": True}]
    assert case_labels(recs) == {"a": "plain", "b": "win 3:inf", "c": "kv_lens 8,0",
                                 "d": "alibi"}
    same = {**recs[0], "determinism": {"repeats": 3, "bitwise_identical": True,
                                       "max_abs_diff": 0.0, "differing": []}}
    differ = {**recs[1], "determinism": {"repeats": 3, "bitwise_identical": False,
                                         "max_abs_diff": 2.5e-7, "differing": ["out"]}}
    assert cell(same, timed=False).endswith(" ≡")
    assert cell(differ, timed=False).endswith(" ≠2e-07")
    assert determinism_lines([same, differ]) == [
        "determinism: b: bitwise identical in 1 of 2 record(s) (3 calls each); NOT "
        "deterministic: largest difference 2.5e-07 in out"]


def test_variants_column_names_what_each_backend_declares():
    assert variants_text(Capabilities()) == "-"
    assert variants_text(Capabilities(variants=VARIANTS)) == "all"
    assert variants_text(Capabilities(variants=("softcap", "window"))) == "window, softcap"
    caps = Capabilities(devices=("cpu", "cuda"), variants=("window",),
                        per_device={"cuda": {"variants": ("window", "paged")}})
    assert variants_text(caps) == "cpu: window / cuda: window, paged"

