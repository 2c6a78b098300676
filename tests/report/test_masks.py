"""Mask pictures: exact visible fractions, a panel per distinct mask, decode rows stacked."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from attnbench import variants
from attnbench.case import Case
from attnbench.report import masks
from attnbench.report.groups import Run, make_groups

CAUSAL = Case(batch=1, heads_q=2, heads_kv=2, seq_q=48, seq_kv=64, head_dim=8, mask="causal")


def _group(cases) -> object:
    recs = [{"scenario": "m", "backend": "x", "case_id": c.id, "status": "ok", **c.to_dict()}
            for c in cases]
    return make_groups([Run(Path("."), {"run_id": "r"}, recs, "r")])[0]


@pytest.mark.parametrize("case", [
    CAUSAL,
    replace(CAUSAL, window_left=5, window_right=2),
    replace(CAUSAL, batch=2, q_lens=(48, 20), kv_lens=(64, 0)),
    replace(CAUSAL, seq_q=64, doc_lens=(10, 30, 24)),
])
def test_a_small_picture_is_the_visibility_matrix(case):
    for b in range(case.batch):
        assert np.array_equal(masks.picture(case, b), variants.visibility(case, b))


def test_a_large_picture_holds_the_exact_fraction_of_each_block():
    case = replace(CAUSAL, seq_q=1000, seq_kv=1000, window_left=3, window_right=0)
    img = masks.picture(case, 0, most=10)
    full = variants.visibility(case, 0).astype(float)
    assert img.shape == (10, 10)
    assert np.allclose(img, full.reshape(10, 100, 10, 100).mean(axis=(1, 3)))
    assert (img.diagonal() > 0).all()  # a 4-key band survives the downsampling


def test_one_panel_per_distinct_mask_with_each_batch_length_side_by_side():
    lens = replace(CAUSAL, batch=4, q_lens=(48, 48, 10, 10), kv_lens=(64, 64, 30, 30))
    same_mask = replace(CAUSAL, softcap=30.0)  # softcap changes scores, not visibility
    g = _group([CAUSAL, same_mask, lens, replace(CAUSAL, window_left=4)])
    drawn = {t: (w, img) for t, w, img in masks.panels(g)}
    assert set(drawn) == {"causal", "causal win 4:inf",
                          "causal q_lens 48,48,10,10 kv_lens 64,64,30,30"}
    assert drawn["causal"][0] == "q48 k64"  # the soft-capped case is not drawn again
    which, img = drawn["causal q_lens 48,48,10,10 kv_lens 64,64,30,30"]
    assert which == "q48 k64; b0 | b2"  # b1 and b3 repeat the lengths of b0 and b2
    gap = np.isnan(img).all(axis=0)
    assert gap.any() and not np.isnan(img[:, ~gap]).any()
    left, right = img[:, :64], img[:, ~gap][:, 64:]
    assert np.array_equal(left, masks.picture(lens, 0)) and right.shape == (48, 64)
    assert np.array_equal(right, masks.picture(lens, 2))


def test_decode_stacks_every_batch_element_in_one_panel():
    decode = Case(batch=4, heads_q=2, heads_kv=2, seq_q=1, seq_kv=50, head_dim=8,
                  mask="causal", kv_lens=(50, 40, 7, 0))
    [(title, which, img)] = masks.panels(_group([decode]))
    assert title == "causal kv_lens 50,40,7,0" and which == "q1 k50; rows: batch 0..3"
    assert img.shape == (4, 50)
    assert img.sum(axis=1).tolist() == [50, 40, 7, 0]


def test_panels_are_capped_and_the_title_says_so():
    g = _group([replace(CAUSAL, window_left=w) for w in range(masks.MAX_PANELS + 5)])
    assert len(masks.panels(g)) == masks.MAX_PANELS
    title = masks.mask_figure(g).get_suptitle()
    assert title.endswith(f"(first {masks.MAX_PANELS} of {masks.MAX_PANELS + 5} masks)")


def test_the_saved_figure_is_a_picture(tmp_path):
    plot = masks.save_mask(_group([CAUSAL, replace(CAUSAL, window_left=4)]), tmp_path)
    img = imread(plot.png)
    assert img.shape[0] > 150 and np.asarray(img)[..., :3].std() > 0.05
    assert plot.svg.read_text().lstrip().startswith("<?xml")


def test_damaged_records_are_not_drawn_and_break_nothing():
    g = _group([CAUSAL])
    good = g.records[0]
    g.records += [{**good, "case_id": "x1", "window_left": "wide", "mask": "x1"},
                  {**good, "case_id": "x2", "seq_q": 10**12, "mask": "x2"},
                  {**good, "case_id": "x3", "kv_lens": [1, 2, 3], "mask": "x3"},
                  {**good, "case_id": "x4", "seq_kv": None, "mask": "x4"}]
    g.variant_fields = ["mask"]
    assert [t for t, _, _ in masks.panels(g)] == ["causal"]


@pytest.mark.process  # the record's picture: the function runs in a child process
def test_a_mask_function_is_drawn_from_its_record_and_never_run(tmp_path):
    """The record made when the case ran carries the picture; a report reading a results file
    that names a function (here one whose import leaves a mark) draws it without importing."""
    from attnbench.record import new_record

    module = tmp_path / "marking.py"
    mark = tmp_path / "imported"
    module.write_text(f"open({str(mark)!r}, 'w').close()\n"
                      "def f(b, h, q, k):\n    return (q + k) % 3 != 0\n")
    case = replace(CAUSAL, mask="none", mask_mod=f"{module}:f")

    class Stub:  # new_record reads a backend's name and framework only
        name, framework = "x", "numpy"

    rec = new_record("m", case, Stub(), "ok")  # the run: it evaluates the function
    assert mark.exists()
    mark.unlink()
    g = make_groups([Run(Path("."), {"run_id": "r"}, [dict(rec)], "r")])[0]
    [(title, which, img)] = masks.panels(g)
    assert not mark.exists()
    assert title == "none mask f" and which == "q48 k64; b0, mask function"
    vis = variants.visibility(case, 0)  # 48 x 64 pairs, one pixel each below the 48 cap
    assert img.shape == (48, 48)
    cols = np.unique(np.linspace(0, 64, 49).round().astype(int))
    expect = np.stack([vis[:, a:b].mean(axis=1) for a, b in zip(cols[:-1], cols[1:],
                                                                  strict=True)], axis=1)
    np.testing.assert_allclose(img, expect, atol=0.5 / 255 + 1e-12)
    damaged = {**rec, "case_id": "y", "mask_picture": {"rows": 2, "cols": 2, "shades": "AA=="}}
    g2 = make_groups([Run(Path("."), {"run_id": "r"}, [damaged], "r")])[0]
    assert masks.panels(g2) == [] and not mark.exists()
