"""Each variant against hand-written expectations, on every backend that declares it.

Tiny cases whose outputs follow from the rule by hand: q = 0 makes every visible key weigh the
same (the output is the mean of the v rows a query sees), v[j] = j or one-hot v rows make the
output read back as key indices or as the probabilities themselves. Every registered backend
whose capabilities take the case runs it, so an adapter added later is covered too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.plugin.registry import build_registry
from attnbench.variants import alibi_slopes
from attnbench.verify import layouts
from attnbench.verify.agreement import to_numpy64
from attnbench.verify.inputs import make_inputs, reference_arrays

REGISTRY = build_registry(autoload=False)


def takers(case: Case) -> list[str]:
    """The registered backends that can run the case here."""
    return sorted(n for n, b in REGISTRY.backends.items() if not b.unsupported(case))


def run(name: str, case: Case, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """A backend's output on the arrays, float64, in the padded (B, Hq, Sq, Dv) layout."""
    backend = REGISTRY.backends[name]
    out = to_numpy64(backend.prepare(make_inputs(case, arrays, backend.framework))())
    return layouts.padded_output(out, case)


def index_values(case: Case) -> dict[str, np.ndarray]:
    """q = 0 (all visible keys weigh the same), random k, v[b, g, j, :] = 10·g + j."""
    arrays = reference_arrays(case, 0)  # the paged pools' spare slots come from here
    arrays["q"] = np.zeros_like(arrays["q"])
    g = np.arange(case.heads_kv)[None, :, None, None]
    j = np.arange(case.seq_kv)[None, None, :, None]
    arrays["v"] = np.broadcast_to(10.0 * g + j, arrays["v"].shape).copy()
    return arrays


def one_hot_values(case: Case) -> dict[str, np.ndarray]:
    """q = 0 and v[j] = e_j (dv = seq_kv): the output row is the probability row itself."""
    arrays = index_values(case)
    arrays["v"] = np.broadcast_to(np.eye(case.seq_kv), arrays["v"].shape).copy()
    return arrays


def expect_means(out: np.ndarray, seen: dict[tuple[int, int], list[int]]) -> None:
    """out[b, 0, i, 0] is the mean of the key indices row i of batch b sees (0 when none)."""
    for (b, i), keys in seen.items():
        want = float(np.mean(keys)) if keys else 0.0
        assert out[b, 0, i, 0] == pytest.approx(want, abs=1e-5), (b, i, keys)


def params(case: Case) -> list:
    """One pytest param per backend that takes the case (at least the two naive ones)."""
    names = takers(case)
    assert {"numpy-naive", "torch-naive"} <= set(names), (case.id, names)
    return [pytest.param(n, case, id=f"{n}-{case.id}") for n in names]


# window: causal with a left window of 0 sees only its diagonal key j = i + off (off = 2).
WINDOW0 = Case(1, 1, 1, 4, 6, 2, mask="causal", window_left=0)


@pytest.mark.parametrize("name,case", params(WINDOW0))
def test_a_window_of_zero_sees_only_the_diagonal_key(name, case):
    expect_means(run(name, case, index_values(case)), {(0, i): [i + 2] for i in range(4)})


# window both sides, no causal: row i sees i-1..i+2 clipped to 0..5 (seq_q = seq_kv).
WINDOW12 = Case(1, 1, 1, 6, 6, 2, window_left=1, window_right=2)


@pytest.mark.parametrize("name,case", params(WINDOW12))
def test_a_two_sided_window_sees_its_band(name, case):
    seen = {(0, i): [j for j in range(6) if i - 1 <= j <= i + 2] for i in range(6)}
    expect_means(run(name, case, index_values(case)), seen)


# lengths: b0 has 3 queries over 4 keys, b1 has 2 queries and no key; padding holds values.
LENGTHS = Case(2, 1, 1, 4, 5, 2, q_lens=(3, 2), kv_lens=(4, 0))
LENGTHS_PACKED = Case(2, 1, 1, 4, 5, 2, q_lens=(3, 2), kv_lens=(4, 0), layout="packed")
LENGTHS_SEEN = {**{(0, i): [0, 1, 2, 3] for i in range(3)}, (0, 3): [],
                **{(1, i): [] for i in range(4)}}


@pytest.mark.parametrize("name,case", params(LENGTHS) + params(LENGTHS_PACKED))
def test_padding_is_not_seen_and_a_length_of_zero_gives_zeros(name, case):
    out = run(name, case, index_values(case))
    expect_means(out, LENGTHS_SEEN)
    assert np.all(np.isfinite(out))


# causal with per-sequence lengths aligns bottom-right within each sequence's own lengths.
CAUSAL_LENGTHS = Case(2, 1, 1, 3, 6, 2, mask="causal", q_lens=(2, 3), kv_lens=(5, 2))


@pytest.mark.parametrize("name,case", params(CAUSAL_LENGTHS))
def test_causal_aligns_to_each_sequences_lengths(name, case):
    seen = {(0, 0): [0, 1, 2, 3], (0, 1): [0, 1, 2, 3, 4], (0, 2): [],  # off = 3
            (1, 0): [], (1, 1): [0], (1, 2): [0, 1]}  # off = -1
    expect_means(run(name, case, index_values(case)), seen)


# paged decode: one query over each sequence's cache; the block table shuffles the pages.
PAGED = Case(2, 1, 1, 1, 8, 2, mask="causal", kv_lens=(5, 8), layout="paged", page_size=3)


@pytest.mark.parametrize("name,case", params(PAGED))
def test_paged_decode_reads_its_cache_through_the_block_table(name, case):
    expect_means(run(name, case, index_values(case)), {(0, 0): [0, 1, 2, 3, 4],
                                                       (1, 0): list(range(8))})


# documents 0..1 | 2..4 | 5: without causal a row sees its whole document, with causal a prefix.
DOCS = Case(1, 1, 1, 6, 6, 2, doc_lens=(2, 3, 1))
DOCS_CAUSAL = Case(1, 1, 1, 6, 6, 2, mask="causal", doc_lens=(2, 3, 1))
DOC_OF = [range(0, 2)] * 2 + [range(2, 5)] * 3 + [range(5, 6)]


@pytest.mark.parametrize("name,case", params(DOCS) + params(DOCS_CAUSAL))
def test_documents_never_mix(name, case):
    causal = case.mask == "causal"
    seen = {(0, i): [j for j in DOC_OF[i] if not causal or j <= i] for i in range(6)}
    expect_means(run(name, case, index_values(case)), seen)


# ALiBi with q = 0: the weights fall by e^slope per step away from the diagonal.
ALIBI = Case(1, 8, 8, 1, 3, 3, alibi=True)


@pytest.mark.parametrize("name,case", params(ALIBI))
def test_alibi_favours_the_nearest_key_by_the_slope(name, case):
    p = run(name, case, one_hot_values(case))[0, :, 0, :]  # (heads, keys); diagonal key is 2
    for h in range(8):
        slope = 2.0 ** -(h + 1)  # 8 heads: 1/2, 1/4, ... (the geometric slopes)
        assert alibi_slopes(8)[h] == slope
        assert p[h, 2] / p[h, 1] == pytest.approx(math.exp(slope), rel=1e-5)
        assert p[h, 1] / p[h, 0] == pytest.approx(math.exp(slope), rel=1e-5)


# bias with q = 0: one key per row gets +log 3, so it weighs 3/5 and the other two 1/5 each;
# which key depends on what the bias kind broadcasts over (row; head; batch and head).
def bias_case(kind: str) -> Case:
    return Case(2, 2, 2, 3, 3, 3, bias=kind)


def favoured(kind: str, b: int, h: int, i: int) -> int:
    return {"shared": i, "head": (i + h) % 3, "batch_head": (i + h + 2 * b) % 3}[kind]


@pytest.mark.parametrize("name,case", [p for k in ("shared", "head", "batch_head")
                                       for p in params(bias_case(k))])
def test_bias_broadcasts_over_batch_and_heads(name, case):
    arrays = one_hot_values(case)
    bias = np.zeros_like(arrays["bias"])
    for b in range(bias.shape[0]):
        for h in range(bias.shape[1]):
            for i in range(3):
                bias[b, h, i, favoured(case.bias, b, h, i)] = math.log(3.0)
    arrays["bias"] = bias
    out = run(name, case, arrays)
    for b in range(2):
        for h in range(2):
            for i in range(3):
                want = np.full(3, 0.2)
                want[favoured(case.bias, b, h, i)] = 0.6
                np.testing.assert_allclose(out[b, h, i], want, atol=1e-5)


# softcap: scores 100 and 0 capped at 1 become tanh(100) ≈ 1 and 0: p = (e, 1) / (e + 1).
SOFTCAP = Case(1, 1, 1, 1, 2, 2, scale=1.0, softcap=1.0)


@pytest.mark.parametrize("name,case", params(SOFTCAP))
def test_softcap_bounds_the_scores(name, case):
    arrays = one_hot_values(case)
    arrays["q"][:] = np.array([10.0, 0.0])
    arrays["k"][0, 0] = np.array([[10.0, 0.0], [0.0, 0.0]])
    p = run(name, case, arrays)[0, 0, 0]
    np.testing.assert_allclose(p, [math.e / (math.e + 1), 1 / (math.e + 1)], atol=1e-5)


# dv: values (and the output) have their own head dim.
DV = Case(1, 2, 1, 3, 4, 8, head_dim_v=3, mask="causal")


@pytest.mark.parametrize("name,case", params(DV))
def test_the_output_has_the_value_head_dim(name, case):
    backend = REGISTRY.backends[name]
    out = to_numpy64(backend.prepare(make_inputs(case, index_values(case),
                                                 backend.framework))())
    assert out.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(out[0, :, :, :], np.broadcast_to(
        np.array([0.5, 1.0, 1.5])[:, None], (2, 3, 3)), atol=1e-5)  # rows see 0..1, 0..2, 0..3


# grouped heads with a window: query head h reads kv head h // 2.
GQA_WINDOW = Case(1, 4, 2, 3, 3, 2, mask="causal", window_left=1)


@pytest.mark.parametrize("name,case", params(GQA_WINDOW))
def test_grouped_heads_with_a_window(name, case):
    out = run(name, case, index_values(case))
    for h in range(4):
        base = 10.0 * (h // 2)
        np.testing.assert_allclose(out[0, h, :, 0], base + np.array([0.0, 0.5, 1.5]), atol=1e-5)
