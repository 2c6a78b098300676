"""The attention semantics of the README, against hand-written expectations and a brute-force loop.

Bottom-right causal (Lq < Lk and Lq > Lk), zeros for rows that see no key, grouped heads
(query head h reads kv head h // (Hq/Hkv)) and a non-default scale: the oracle is checked
against a plain Python loop, and every available CPU backend against both.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.plugin.registry import build_registry
from attnbench.verify.agreement import to_numpy64
from attnbench.verify.inputs import make_inputs
from attnbench.verify.reference import attention_rows

REGISTRY = build_registry(autoload=False)


def runnable(dtype: str) -> list[str]:
    """Backends that can run a small causal grouped-head cross case on the CPU in dtype."""
    probe = Case(1, 4, 2, 3, 5, 4, dtype=dtype, mask="causal")
    return sorted(n for n, b in REGISTRY.backends.items() if not b.unsupported(probe))


BACKENDS = runnable("float32")


def brute_force(q: np.ndarray, k: np.ndarray, v: np.ndarray, case: Case) -> np.ndarray:
    """Attention one query row at a time with Python loops and math.exp: the rules spelled out."""
    b_n, hq, lq, d = q.shape
    hkv, lk = k.shape[1], k.shape[2]
    out = np.zeros((b_n, hq, lq, d))
    for b in range(b_n):
        for h in range(hq):
            g = h // (hq // hkv)
            for i in range(lq):
                seen = [j for j in range(lk) if case.mask == "none" or j <= i + lk - lq]
                if not seen:
                    continue  # a row that sees no key stays zero
                s = {j: case.softmax_scale * sum(q[b, h, i, x] * k[b, g, j, x] for x in range(d))
                     for j in seen}
                top = max(s.values())
                w = {j: math.exp(s[j] - top) for j in seen}
                total = sum(w.values())
                for x in range(d):
                    out[b, h, i, x] = sum(w[j] * v[b, g, j, x] for j in seen) / total
    return out


def run_backend(name: str, case: Case, arrays: dict[str, np.ndarray]) -> np.ndarray:
    backend = REGISTRY.backends[name]
    fn = backend.prepare(make_inputs(case, arrays, backend.framework))
    return to_numpy64(fn())


def random_arrays(case: Case, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape_q = (case.batch, case.heads_q, case.seq_q, case.head_dim)
    shape_kv = (case.batch, case.heads_kv, case.seq_kv, case.head_dim)
    return {"q": rng.standard_normal(shape_q), "k": rng.standard_normal(shape_kv),
            "v": rng.standard_normal(shape_kv)}


def uniform_arrays(case: Case) -> dict[str, np.ndarray]:
    """q = 0 so every visible key gets the same weight; v[.., g, j, :] = 10·g + j."""
    q = np.zeros((case.batch, case.heads_q, case.seq_q, case.head_dim))
    k = np.random.default_rng(2).standard_normal((case.batch, case.heads_kv, case.seq_kv,
                                                  case.head_dim))
    g = np.arange(case.heads_kv)[None, :, None, None]
    j = np.arange(case.seq_kv)[None, None, :, None]
    v = np.broadcast_to(10.0 * g + j, k.shape).copy()
    return {"q": q, "k": k, "v": v}


# Hand-written: with q = 0, row i's output is the mean of the v rows it sees.
# Lq=3 < Lk=5, bottom-right: row 0 sees keys 0..2, row 1 keys 0..3, row 2 keys 0..4.
# Lq=5 > Lk=3: rows 0 and 1 see nothing (zeros), row 2 sees key 0, row 3 keys 0..1, row 4 0..2.
HAND = {
    (3, 5): [np.mean([0, 1, 2]), np.mean([0, 1, 2, 3]), np.mean([0, 1, 2, 3, 4])],
    (5, 3): [0.0, 0.0, np.mean([0]), np.mean([0, 1]), np.mean([0, 1, 2])],
}


@pytest.mark.parametrize("lq,lk", list(HAND))
def test_brute_force_matches_hand_written_causal(lq: int, lk: int):
    case = Case(1, 1, 1, lq, lk, 2, dtype="float64", mask="causal")
    out = brute_force(**uniform_arrays(case), case=case)
    np.testing.assert_allclose(out[0, 0, :, 0], HAND[(lq, lk)], atol=1e-12)


def test_empty_rows_are_zero_not_nan_and_others_are_not():
    case = Case(1, 1, 1, 5, 3, 2, dtype="float64", mask="causal")
    arrays = uniform_arrays(case)
    arrays["v"] += 1.0  # every seen row now averages to something non-zero
    out = brute_force(**arrays, case=case)
    assert np.all(out[0, 0, :2] == 0) and np.all(out[0, 0, 2:] != 0)


def test_brute_force_grouped_heads_hand_written():
    """Hq=4 over Hkv=2: heads 0,1 read kv head 0 and heads 2,3 read kv head 1 (not h % Hkv)."""
    case = Case(1, 4, 2, 1, 3, 2, dtype="float64")
    out = brute_force(**uniform_arrays(case), case=case)
    np.testing.assert_allclose(out[0, :, 0, 0], [1.0, 1.0, 11.0, 11.0], atol=1e-12)


def scale_arrays() -> tuple[dict[str, np.ndarray], float]:
    """Two keys with scores 2 and 0 for the one query; v = 1 for key 0 and 0 for key 1."""
    q = np.array([1.0, 0.0]).reshape(1, 1, 1, 2)
    k = np.array([[2.0, 0.0], [0.0, 0.0]]).reshape(1, 1, 2, 2)
    v = np.array([[1.0, 1.0], [0.0, 0.0]]).reshape(1, 1, 2, 2)
    return {"q": q, "k": k, "v": v}, 2.0


@pytest.mark.parametrize("scale", [None, 0.5, 3.0])
def test_brute_force_scale_hand_written(scale: float | None):
    case = Case(1, 1, 1, 1, 2, 2, dtype="float64", scale=scale)
    arrays, score = scale_arrays()
    c = case.softmax_scale
    expected = math.exp(c * score) / (math.exp(c * score) + 1.0)  # weight of key 0
    out = brute_force(**arrays, case=case)
    assert out[0, 0, 0, 0] == pytest.approx(expected, abs=1e-12)
    assert case.softmax_scale == (scale if scale is not None else 1 / math.sqrt(2))


SEMANTIC_CASES = [
    Case(1, 2, 2, 6, 11, 4, dtype="float64", mask="causal"),  # Lq < Lk
    Case(1, 2, 2, 11, 6, 4, dtype="float64", mask="causal"),  # Lq > Lk: empty rows
    Case(2, 6, 2, 5, 7, 3, dtype="float64", mask="causal"),  # grouped heads, cross
    Case(1, 4, 1, 4, 4, 4, dtype="float64", mask="none"),  # one kv head for all
    Case(1, 2, 2, 5, 9, 4, dtype="float64", mask="causal", scale=0.37),  # non-default scale
    Case(1, 2, 2, 1, 9, 4, dtype="float64", mask="causal"),  # decode
]


@pytest.mark.parametrize("case", SEMANTIC_CASES, ids=lambda c: c.id)
def test_oracle_matches_brute_force(case: Case):
    arrays = random_arrays(case)
    rows = np.arange(case.seq_q)
    ref = attention_rows(arrays["q"], arrays["k"], arrays["v"], case, rows)
    np.testing.assert_allclose(ref, brute_force(**arrays, case=case), atol=1e-12, rtol=0)


def test_several_backends_are_checked():
    assert len(BACKENDS) >= 3, BACKENDS  # numpy-naive, numba-cpu, torch-* where installed


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("case", SEMANTIC_CASES, ids=lambda c: c.id)
def test_backend_matches_brute_force(name: str, case: Case):
    case = Case(**{**case.to_dict(), "dtype": "float32"})
    arrays = {n: a.astype(np.float32).astype(np.float64) for n, a in random_arrays(case).items()}
    np.testing.assert_allclose(run_backend(name, case, arrays), brute_force(**arrays, case=case),
                               atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("lq,lk", list(HAND))
def test_backend_bottom_right_causal_hand_written(name: str, lq: int, lk: int):
    case = Case(1, 1, 1, lq, lk, 2, dtype="float32", mask="causal")
    out = run_backend(name, case, uniform_arrays(case))
    np.testing.assert_allclose(out[0, 0, :, 0], HAND[(lq, lk)], atol=1e-5)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_grouped_heads_hand_written(name: str):
    case = Case(1, 4, 2, 1, 3, 2, dtype="float32")
    out = run_backend(name, case, uniform_arrays(case))
    np.testing.assert_allclose(out[0, :, 0, 0], [1.0, 1.0, 11.0, 11.0], atol=1e-5)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_backend_scale_hand_written(name: str, scale: float):
    case = Case(1, 1, 1, 1, 2, 2, dtype="float32", scale=scale)
    arrays, score = scale_arrays()
    expected = math.exp(scale * score) / (math.exp(scale * score) + 1.0)
    assert run_backend(name, case, arrays)[0, 0, 0, 0] == pytest.approx(expected, abs=1e-6)


def test_the_checks_catch_wrong_backends(plugin_path):
    """The hand-written expectations above fail for the deliberately wrong test plugins."""
    pytest.importorskip("torch")
    reg = build_registry([plugin_path("wrong_scale.py"), plugin_path("top_left_causal.py")],
                         autoload=False)
    arrays, score = scale_arrays()
    case = Case(1, 1, 1, 1, 2, 2, dtype="float32", scale=0.5)
    out = reg.backends["wrong-scale"].prepare(make_inputs(case, arrays, "numpy"))()
    assert abs(out[0, 0, 0, 0] - math.exp(0.5 * score) / (math.exp(0.5 * score) + 1)) > 0.1
    case = Case(1, 1, 1, 3, 5, 2, dtype="float32", mask="causal")
    out = to_numpy64(reg.backends["top-left-causal"].prepare(
        make_inputs(case, uniform_arrays(case), "torch"))())
    assert not np.allclose(out[0, 0, :, 0], HAND[(3, 5)], atol=1e-3)
