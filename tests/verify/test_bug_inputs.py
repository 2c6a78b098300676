"""Inputs that expose bugs: the distributions the `inputs` key names, and NaN poison in every
padding position (past the lengths, spare page slots) of what backends are handed, never in
what the oracle reads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.errors import ScenarioError
from attnbench.scenario import load_scenario
from attnbench.verify.inputs import (
    OUTLIER_GAIN,
    layout_arrays,
    pristine_arrays,
    reference_arrays,
)
from attnbench.verify.reference import oracle, probabilities

CASE = Case(2, 4, 2, 32, 48, 64, dtype="float32")


def test_outliers_are_a_few_channels_of_q_and_k_many_times_larger():
    normal = reference_arrays(CASE, 0)
    wild = reference_arrays(dataclasses.replace(CASE, inputs="outliers"), 0)
    for name in ("q", "k"):
        spread = wild[name].std(axis=(0, 1, 2)) / normal[name].std(axis=(0, 1, 2))
        big = np.flatnonzero(spread > OUTLIER_GAIN / 2)
        assert len(big) == 2  # one channel per 32 of 64
    assert wild["v"].std(axis=(0, 1, 2)).max() < 1.5  # the values stay standard normal


def test_equal_keys_make_every_row_the_mean_of_its_values():
    case = dataclasses.replace(CASE, inputs="equal_keys")
    a = reference_arrays(case, 0)
    assert np.array_equal(a["k"], np.broadcast_to(a["k"][:, :, :1], a["k"].shape))
    out = oracle(a, case, np.arange(case.seq_q))
    mean_v = np.repeat(a["v"].mean(axis=2, keepdims=True), 2, axis=1)  # 2 q heads per kv head
    assert np.allclose(out, np.broadcast_to(mean_v, out.shape))


def test_peaked_inputs_give_nearly_one_hot_rows():
    case = dataclasses.replace(CASE, inputs="peaked")
    a = reference_arrays(case, 0)
    p = probabilities(a["q"][:1, :2], a["k"][:1, :1], case, np.arange(case.seq_q))
    assert np.median(p.max(axis=-1)) > 0.9
    p0 = probabilities(reference_arrays(CASE, 0)["q"][:1, :2],
                       reference_arrays(CASE, 0)["k"][:1, :1], CASE, np.arange(CASE.seq_q))
    assert np.median(p0.max(axis=-1)) < 0.5


def test_poison_puts_nan_exactly_past_the_lengths_of_what_backends_get():
    case = dataclasses.replace(CASE, q_lens=(20, 32), kv_lens=(48, 17), poison=True)
    clean = reference_arrays(case, 0)
    handed = layout_arrays(case, clean)
    assert np.isnan(handed["q"][0, :, 20:]).all() and np.isfinite(handed["q"][0, :, :20]).all()
    assert np.isfinite(handed["q"][1]).all()
    assert np.isnan(handed["k"][1, :, 17:]).all() and np.isfinite(handed["k"][1, :, :17]).all()
    assert np.isnan(handed["v"][1, :, 17:]).all() and np.isfinite(handed["k"][0]).all()
    assert all(np.isfinite(x).all() for x in clean.values())  # the oracle's inputs are clean
    assert np.isfinite(oracle(clean, case, np.arange(case.seq_q))).all()
    from attnbench.verify.agreement import _same_values

    assert _same_values(handed["k"], pristine_arrays(case, clean)["k"])  # NaN equals NaN


def test_poison_fills_the_spare_slots_of_a_paged_cache():
    case = Case(2, 2, 2, 1, 40, 16, kv_lens=(40, 9), layout="paged", page_size=16, poison=True)
    handed = layout_arrays(case, reference_arrays(case, 0))
    pool, table = handed["k"], handed["block_table"]
    assert np.isnan(pool[table[0, 2], 8:]).all()  # keys 40..47 of sequence 0: spare slots
    assert np.isfinite(pool[table[0, 2], :8]).all()
    assert np.isnan(pool[table[1, 0], 9:]).all() and np.isnan(pool[table[1, 1:]]).all()
    free = sorted(set(range(pool.shape[0])) - set(table.ravel().tolist()))
    assert len(free) == 2 and len(set(table.ravel().tolist())) == table.size
    assert np.isnan(pool[free]).all()  # the pool's free pages: no table row names them
    clean = layout_arrays(dataclasses.replace(case, poison=False), reference_arrays(case, 0))
    assert np.isfinite(clean["k"][free]).all()  # random values, not NaN, unpoisoned


@pytest.mark.parametrize("text, error", [
    ("poison = 1", "expected true or false"),
    ('inputs = "uniform"', "unknown inputs 'uniform'"),
    ("poison = true", "no padding to poison"),
    ("poison = true\nkv_lens = [8, 8]", "no padding to poison"),
    ('poison = true\nkv_lens = [8, 3]\nmode = "bwd"', "forward only"),
])
def test_bad_inputs_keys_are_one_line_errors(tmp_path, text, error):
    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\n[base]\nbatch = 2\nheads = 2\nhead_dim = 8\nseq_len = 8\n'
                    f"{text}\n")
    with pytest.raises(ScenarioError, match=error):
        load_scenario(str(path))


@pytest.mark.parametrize("kind, framework", [("transposed", "numpy"), ("sliced", "numpy"),
                                             ("transposed", "torch"), ("sliced", "torch")])
def test_strided_inputs_are_views_with_the_same_values(kind, framework):
    if framework == "torch":
        pytest.importorskip("torch")
    from attnbench.verify.agreement import to_numpy64
    from attnbench.verify.inputs import make_inputs

    case = dataclasses.replace(CASE, strides=kind)
    a = reference_arrays(case, 0)
    got = make_inputs(case, a, framework)
    for name in ("q", "k", "v"):
        x = getattr(got, name)
        assert np.array_equal(to_numpy64(x), a[name])
        contiguous = x.flags["C_CONTIGUOUS"] if framework == "numpy" else x.is_contiguous()
        assert not contiguous
        base = x.base if framework == "numpy" else x._base
        assert base.shape[1] == case.seq_q if name == "q" else case.seq_kv
        if kind == "sliced":  # the fused projection's other channels: NaN
            assert np.isnan(to_numpy64(base)[..., CASE.head_dim:]).all()
