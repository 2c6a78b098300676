"""Where a mismatch is: planted bugs (one head, a key block left out, padding read, every row
scaled, rows past a length, padding rows not 0) each named by the diagnosis of the verdict.

Each wrong output is made from the float64 oracle of the same inputs with the bug applied and
rounded to float32, then judged as a worker's shipped output is (verify/judge.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.verify.casedata import CaseData
from attnbench.verify.judge import judge
from attnbench.verify.reference import oracle

CASE = Case(2, 4, 2, 64, 96, 16, dtype="float32")


def _verdict(case: Case, wrong) -> dict:
    data = CaseData(case, 0)
    rows = np.arange(case.seq_q)
    right = oracle(data.arrays, case, rows)
    out = wrong(right.copy(), data).astype(np.float32)
    entry = judge(data, "numpy", {"first.out": (out, "float32")})["outputs"][0]
    assert not entry["passed"]
    return entry["diagnosis"]


def test_a_correct_output_has_no_diagnosis():
    data = CaseData(CASE, 0)
    out = oracle(data.arrays, CASE, np.arange(CASE.seq_q)).astype(np.float32)
    entry = judge(data, "numpy", {"first.out": (out, "float32")})["outputs"][0]
    assert entry["passed"] and "diagnosis" not in entry


def test_one_wrong_head_is_named():
    def wrong(out, _data):
        out[:, 3] += 0.01
        return out

    d = _verdict(CASE, wrong)
    assert "one head (head 3)" in d["labels"]
    rows = d["row_map"]["ratio"]
    assert len(rows) == CASE.heads_q and min(rows[3]) > 1 and max(map(max, rows[:3])) <= 1


def test_the_last_key_block_left_out_is_named():
    def wrong(_out, data):
        hidden = np.zeros(CASE.seq_kv, dtype=bool)
        hidden[80:] = True
        return oracle(data.arrays, CASE, np.arange(CASE.seq_q), hidden)

    d = _verdict(CASE, wrong)
    assert "keys 80..95 left out (the last key block)" in d["labels"]
    left = d["key_map"]["error_left"]
    assert d["key_map"]["blocks"][-1] == [80, 96] and left[-1] <= 0.05 < min(left[:-1])


def test_reading_the_padding_keys_is_named():
    case = dataclasses.replace(CASE, kv_lens=(70, 96), q_lens=(64, 64))

    def wrong(_out, data):
        return oracle(data.arrays, dataclasses.replace(case, kv_lens=None), np.arange(64))

    assert "keys past kv_lens read (the padding)" in _verdict(case, wrong)["labels"]


def test_every_row_scaled_is_named_with_its_factor():
    d = _verdict(CASE, lambda out, _data: out * 1.001)
    assert d["labels"][0] == "every row scaled by 1.001"


def test_rows_from_a_length_on_are_named():
    def wrong(out, _data):
        out[:, :, 40:] = 0.0
        return out

    d = _verdict(CASE, wrong)
    assert "rows from query row 40 on" in d["labels"]


def test_padding_rows_that_are_not_zero_are_named():
    case = dataclasses.replace(CASE, q_lens=(50, 64), kv_lens=(96, 96))

    def wrong(out, _data):
        out[0, :, 50:] = 0.5
        return out

    assert _verdict(case, wrong)["labels"][0] == "padding rows (past q_lens) are not 0"


def test_nan_rows_are_counted():
    def wrong(out, _data):
        out[1, 2, 7] = np.nan
        return out

    d = _verdict(CASE, wrong)
    assert "NaN/Inf in 1 of 64 compared rows (first at row 7)" in d["labels"]
    assert "one head (head 2)" in d["labels"]


@pytest.mark.parametrize("seq_kv, size", [(96, 16), (1000, 64), (4096, 256)])
def test_key_blocks_are_at_most_sixteen(seq_kv, size):
    from attnbench.verify.diagnose import _key_blocks

    blocks = _key_blocks(seq_kv)
    assert len(blocks) <= 16 and blocks[0] == (0, size) and blocks[-1][1] == seq_kv
