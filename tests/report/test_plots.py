"""Plots: stable colours, readable axes, facets for many variants, images that are not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from attnbench.report import plot_kit, plot_roofline, plot_timing, plots
from attnbench.report.groups import Group, Run, make_groups, read_runs


def test_colours_follow_sorted_names_whatever_the_order():
    a = plot_kit.colours(["torch-sdpa", "numpy-naive", "flash-attn"])
    b = plot_kit.colours(["numpy-naive", "flash-attn", "torch-sdpa", "numpy-naive"])
    assert a == b and len(set(a.values())) == 3
    assert a["flash-attn"] == plot_kit.PALETTE[0]


@pytest.fixture(scope="module")
def drawn(real_run, tmp_path_factory) -> tuple[list[plot_kit.Plot], Group]:
    runs = read_runs([real_run("base")])
    group = make_groups(runs)[0]
    cmap = plot_kit.colours(group.backends())
    return plots.save_group(group, tmp_path_factory.mktemp("plots"), cmap, "numpy-naive"), group


def test_every_plot_is_a_non_blank_image(drawn):
    made, group = drawn
    assert group.axis == "seq_kv" and group.variant_fields == ["mask"]
    for p in made:
        img = imread(p.png)
        assert img.shape[0] > 300 and img.shape[1] > 400
        assert np.asarray(img)[..., :3].std() > 0.05  # lines and text, not an empty canvas
        assert p.svg.stat().st_size > 1000


def test_latency_plot_has_a_line_per_backend_and_variant(drawn):
    _, group = drawn
    cmap = plot_kit.colours(group.backends())
    fig = plot_timing.latency(group, cmap)
    ax = fig.axes[0]
    timed = {(r["backend"], r["mask"]) for r in group.records if r["status"] == "ok"}
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 0]
    assert len(lines) == len(timed)  # test-markup never ran: no line
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert {ln.get_color() for ln in lines} == {cmap["numpy-naive"], cmap["slow-copy"]}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "32", "64"]


def test_the_roofline_puts_every_timed_case_under_the_measured_roofs():
    recs = [{"scenario": "s", "backend": b, "case_id": f"k{n}", "status": "ok", "seq_q": n,
             "seq_kv": n, "heads_q": 1, "heads_kv": 1, "batch": 1, "head_dim": 8, "device": "cpu",
             "dtype": "float32", "mask": "none", "mode": "fwd", "gflops_per_s": g,
             "arithmetic_intensity": x, "timing": {"median_ms": 1.0}}
            for b, g in (("a", 1.0), ("b", 3.0)) for n, x in ((128, 2.0), (512, 30.0))]
    meta = {"run_id": "x", "roofs": {"cpu": {"float32": 100e9,
                                             "bandwidth": {"bytes_per_s": 10e9}}}}
    group = make_groups([Run(Path("."), meta, recs, "x")])[0]
    fig = plot_roofline.roofline(group, plot_kit.colours(group.backends()))
    ax = fig.axes[0]
    dots = sorted(tuple(map(tuple, c.get_offsets())) for c in ax.collections)
    assert dots == [((2.0, 1.0), (30.0, 1.0)), ((2.0, 3.0), (30.0, 3.0))]  # GFLOP/s
    (line,) = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 0]
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    assert np.allclose(y, np.minimum(100.0, x * 10.0))  # the ridge at 10 FLOPs per byte
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def _synthetic(heads: list[int], backends: tuple[str, ...] = ("b",)) -> Group:
    recs = [{"scenario": "s", "backend": b, "case_id": f"h{h}-k{n}", "status": "ok",
             "seq_q": n, "seq_kv": n, "heads_q": h, "heads_kv": h, "batch": 1, "head_dim": 8,
             "dtype": "float32", "mask": "none", "mode": "fwd",
             "timing": {"median_ms": n * h / 1000, "samples_ms": [n * h / 1000] * 3}}
            for h in heads for n in (128, 256, 512) for b in backends]
    run = Run(Path("."), {"run_id": "x"}, recs, "x")
    return make_groups([run])[0]


def test_many_variants_become_panels_few_share_one_axes():
    cmap = plot_kit.colours(["a", "b", "c"])
    few = plot_timing.latency(_synthetic([1, 2, 4, 8, 16, 32]), cmap)  # 6 lines on one axes
    assert len([a for a in few.axes if a.get_visible()]) == 1
    assert len(few.axes[0].get_legend().get_texts()) == 1 + 6  # the backend, the 6 variants
    many = plot_timing.latency(_synthetic([1, 2, 4, 8, 16, 32], ("a", "b", "c")), cmap)  # 18 lines
    panels = [a for a in many.axes if a.get_visible()]
    assert len(panels) == 6
    assert [a.get_title() for a in panels] == [f"h{h}" for h in (1, 2, 4, 8, 16, 32)]
