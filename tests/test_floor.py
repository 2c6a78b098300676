"""The per-row floor: its magnitudes against brute force, its scaling, the peer case it fixes."""

from __future__ import annotations

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.run.execute import CaseData, Options, execute
from attnbench.verify import agreement
from attnbench.verify.floor import UNIT_ROUNDOFF, row_floor, row_magnitudes
from attnbench.verify.inputs import reference_arrays
from attnbench.verify.reference import expand_kv, row_visibility

PEER = Case(2, 5, 5, 13, 16, 128, dtype="float32", scale=0.795495)  # a peer suite's shape


def brute_magnitudes(arrays: dict, case: Case) -> dict:
    q = arrays["q"]
    k, v = expand_kv(arrays["k"], case.heads_q), expand_kv(arrays["v"], case.heads_q)
    vis = row_visibility(case, np.arange(case.seq_q))
    a = np.zeros(q.shape[:3])
    vmax = np.zeros(q.shape[:3])
    for b, h, i in np.ndindex(*q.shape[:3]):
        js = np.flatnonzero(vis[i])
        if len(js):
            a[b, h, i] = max(case.softmax_scale * np.abs(q[b, h, i]) @ np.abs(k[b, h, j])
                             for j in js)
            vmax[b, h, i] = np.abs(v[b, h, js]).max()
    return {"A": a, "V": vmax, "L": vis.sum(axis=1)}


@pytest.mark.parametrize("case", [
    Case(2, 4, 2, 7, 5, 16, mask="causal"),  # grouped heads, rows that see no key
    Case(1, 2, 2, 9, 9, 8, scale=2.0),
    Case(1, 3, 1, 1, 33, 4, mask="causal"),
])
def test_magnitudes_match_brute_force_in_any_block_size(case, monkeypatch):
    arrays = reference_arrays(case, 3)
    want = brute_magnitudes(arrays, case)
    rows = np.arange(case.seq_q)
    for block in (1, 7, 1 << 22):  # rows per block: 1 row, a few, everything at once
        monkeypatch.setattr("attnbench.verify.floor.ROW_BLOCK_ENTRIES", block * case.seq_kv
                            * case.batch * case.heads_q)
        got = row_magnitudes(arrays, case, rows)
        for name in ("A", "V"):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-12)
        np.testing.assert_array_equal(np.broadcast_to(want["L"], got["L"].shape), got["L"])


def test_a_row_that_sees_no_key_has_a_zero_floor():
    case = Case(1, 2, 2, 6, 3, 8, mask="causal")  # rows 0..2 see no key
    rows = np.arange(case.seq_q)
    floor = row_floor(row_magnitudes(reference_arrays(case, 0), case, rows), "float32")
    assert (floor[..., :3] == 0).all() and (floor[..., 3:] > 0).all()


def test_the_floor_grows_with_the_scores_and_v_and_shrinks_with_precision():
    case = Case(1, 2, 2, 16, 16, 64)
    arrays = reference_arrays(case, 0)
    rows = np.arange(case.seq_q)
    m = row_magnitudes(arrays, case, rows)
    big = row_magnitudes({**arrays, "q": 4 * arrays["q"], "v": 3 * arrays["v"]}, case, rows)
    assert (row_floor(big, "float32") > 3 * row_floor(m, "float32")).all()
    floors = [row_floor(m, dt).max() for dt in ("bfloat16", "float16", "float32", "float64")]
    assert floors == sorted(floors, reverse=True)
    u = UNIT_ROUNDOFF["float32"]
    assert row_floor(m, "float32").min() >= 2 * u * m["V"].min()  # never below 2 ulp of v


def test_the_peer_case_passes_for_numpy_naive(registry):
    """The correct numpy-naive failed this case under the constant floor (1.5x over)."""
    backend = registry.get("numpy-naive")
    for seed in range(8):
        rec = execute(backend, "peer", PEER, lambda s=seed: CaseData(PEER, s),
                      Options(seed=seed, time_it=False, memory=False))
        out = rec["agreement"]["outputs"][0]
        assert rec["status"] == "ok", out
        assert out["rule"] == "2x baseline + row floor"
        assert out["error_over_bound"] < 1 and out["magnitudes"]["A_max"] > 0


def test_a_wrong_scale_is_still_caught_in_float32(registry):
    """Power: scale 1/sqrt(d+1) instead of 1/sqrt(d) on the peer shape is a mismatch."""
    case = Case(2, 5, 5, 13, 16, 128, dtype="float32")
    data = CaseData(case, 0)
    rule = data.rule("numpy")
    wrong = Case(2, 5, 5, 13, 16, 128, dtype="float32", scale=1 / np.sqrt(129))
    arrays = data.arrays
    from attnbench.verify.reference import attention_rows

    out = attention_rows(arrays["q"].astype("float32"), arrays["k"].astype("float32"),
                         arrays["v"].astype("float32"), wrong, data.rows)
    entry = agreement.compare("out", out, out.shape, agreement.rows_of(data.rows, 13),
                              data.ref, rule)
    assert not entry["passed"] and entry["error_over_bound"] > 1
