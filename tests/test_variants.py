"""The variant semantics (attnbench/variants.py) against a literal double loop over the rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from attnbench.case import Case, case_variants
from attnbench.errors import ScenarioError
from attnbench.scenario import load_scenario
from attnbench.variants import (
    alibi_slopes,
    key_ranges,
    random_lengths,
    visibility,
    visible_pairs_per_batch,
)
from attnbench.verify import layouts
from attnbench.verify.inputs import flops, make_inputs, reference_arrays


def literal(case: Case, b: int) -> np.ndarray:
    """The visibility rule of the README, one (i, j) at a time."""
    lq = case.q_lens[b] if case.q_lens else case.seq_q
    lk = case.kv_lens[b] if case.kv_lens else case.seq_kv
    off = lk - lq
    doc = np.repeat(np.arange(len(case.doc_lens)), case.doc_lens) if case.doc_lens else None
    out = np.zeros((case.seq_q, case.seq_kv), dtype=bool)
    for i, j in itertools.product(range(case.seq_q), range(case.seq_kv)):
        ok = i < lq and j < lk
        ok &= case.mask != "causal" or j <= i + off
        ok &= case.window_left is None or j >= i + off - case.window_left
        ok &= case.window_right is None or j <= i + off + case.window_right
        ok &= doc is None or doc[i] == doc[j]
        out[i, j] = ok
    return out


CASES = [
    Case(1, 1, 1, 9, 9, 4, mask="causal", window_left=3),
    Case(1, 1, 1, 7, 12, 4, window_left=2, window_right=1),
    Case(1, 1, 1, 12, 7, 4, mask="causal", window_left=0, window_right=5),
    Case(3, 1, 1, 6, 10, 4, mask="causal", q_lens=(6, 0, 3), kv_lens=(10, 4, 0)),
    Case(2, 1, 1, 5, 8, 4, kv_lens=(8, 2), window_left=1),
    Case(1, 1, 1, 10, 10, 4, doc_lens=(3, 5, 2)),
    Case(1, 1, 1, 10, 10, 4, mask="causal", doc_lens=(4, 1, 5), window_left=2),
    Case(2, 1, 1, 1, 9, 4, mask="causal", kv_lens=(9, 5)),  # decode against cache lengths
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_visibility_and_pair_counts_match_the_literal_rule(case):
    for b in range(case.batch):
        want = literal(case, b)
        assert np.array_equal(visibility(case, b), want)
        lo, hi = key_ranges(case, b)
        assert np.array_equal(want.any(axis=1), lo <= hi)
        assert visible_pairs_per_batch(case)[b] == want.sum()
    pairs = sum(literal(case, b).sum() for b in range(case.batch))
    assert flops(case) == 2 * case.heads_q * pairs * (case.head_dim + case.dv)


def test_alibi_slopes_are_the_geometric_ones():
    assert np.allclose(alibi_slopes(8), [2 ** -(i + 1) for i in range(8)])
    # 12 heads: the 8 of a power of two, then every other slope of 16
    s16 = 2.0 ** (-8.0 * np.arange(1, 17) / 16)
    assert np.allclose(alibi_slopes(12), np.concatenate([alibi_slopes(8), s16[0::2][:4]]))


def test_case_variants_and_ids():
    c = Case(2, 4, 2, 8, 8, 16, kv_lens=(8, 3), alibi=True, softcap=30.0, head_dim_v=8)
    assert case_variants(c) == ("lengths", "alibi", "softcap", "dv")
    assert "-kvl8,3" in c.id and "-alibi" in c.id and "-cap30.0" in c.id and "-dv8" in c.id
    assert Case(1, 1, 1, 8, 8, 16).id == "b1-h1:1-q8-k8-d16-float32-none-fwd"  # unchanged
    assert Case.from_dict(c.to_dict() | {"kv_lens": [8, 3]}) == c  # lists from JSON


def test_pack_unpack_and_pages_round_trip():
    case = Case(3, 2, 1, 5, 7, 4, q_lens=(5, 0, 2), kv_lens=(7, 1, 4), layout="packed")
    arrays = reference_arrays(case, 0)
    inputs = make_inputs(case, arrays, "numpy")
    assert inputs.q.shape == (7, 2, 4) and inputs.k.shape == (12, 1, 4)
    assert list(inputs.cu_seqlens_k) == [0, 7, 8, 12]
    back = layouts.unpack(inputs.q.astype(np.float64), np.array([5, 0, 2]), 5)
    assert np.array_equal(back[0], arrays["q"][0]) and np.array_equal(back[2, :, :2],
                                                                       arrays["q"][2, :, :2])
    paged = Case(2, 2, 2, 1, 10, 4, kv_lens=(10, 6), layout="paged", page_size=4)
    arrays = reference_arrays(paged, 0)
    inp = make_inputs(paged, arrays, "numpy")
    assert inp.k.shape == (8, 4, 2, 4) and inp.block_table.shape == (2, 3)  # + 2 free pages
    for b in range(2):
        keys = np.concatenate([inp.k[p] for p in inp.block_table[b]])[:10]  # (10, H, D)
        assert np.array_equal(np.swapaxes(keys, 0, 1), arrays["k"][b].astype(np.float32))


def write(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def test_scenario_keys_expand_to_variant_cases(tmp_path):
    s = load_scenario(write(tmp_path, """
[base]
batch = 3
heads = 2
seq_len = 16
head_dim = 8
mask = "causal"
kv_lens = [16, 0, 5]
[sweep]
window_left = [0, 4]
[[variant]]
softcap = 20.0
alibi = true
[[variant]]
kv_lens = "random"
[[variant]]
kv_lens = [[16, 1, 1], [2, 2, 2]]
"""))
    cases = s.cases("cpu")
    assert {c.kv_lens for c in cases} >= {(16, 0, 5), (16, 1, 1), (2, 2, 2)}
    assert all(c.window_left in (0, 4) for c in cases)
    random = [c for c in cases if c.kv_lens not in ((16, 0, 5), (16, 1, 1), (2, 2, 2))]
    assert random and all(0 < n <= 16 for c in random for n in c.kv_lens)
    # the draw is fixed by the key and shape, so every process gets the same lengths
    assert random[0].kv_lens == random_lengths("kv_lens", 3, 16)


@pytest.mark.parametrize("body,words", [
    ("kv_lens = [16, 3]", "2 lengths for batch=3"),
    ("kv_lens = [16, 3, 17]", "exceeds seq_kv=16"),
    ("q_lens = [1, -1, 2]", "integers >= 0"),
    ("doc_lens = [4, 4]", "must fill the sequence"),
    ("doc_lens = \"random:99\"", "do not fit"),
    ("layout = \"paged\"", "page_size"),
    ("window_left = -2", "from 0 to"),
    ("window_left = 99999999999999999999", "from 0 to"),
    ("softcap = 0", "positive"),
    ("softcap = 1e-50", "below 2\\*\\*-126"),
    ("layout = \"paged\"\nseq_kv = 2147483647\npage_size = 1073741824",
     "beyond a 32-bit slot index"),
    ("layout = \"packed\"", "\"packed\" needs q_lens or kv_lens"),
    ("doc_lens = \"random:\u00b2\"", "random:N"),
    ("alibi = 1", "true or false"),
    ("bias = \"rows\"", "unknown bias"),
    ("mode = \"bwd\"\nlayout = \"packed\"", "use mode"),
    ("mode = \"fwd_bwd\"\nlayout = \"paged\"\npage_size = 4", "padded layout only"),
    ("mode = \"bwd\"\nsinks = true", "without sinks"),
    ("sinks = 1", "expected true or false"),
    ("mode = \"fwd_bwd\"\nlse = true", "key 'lse': forward only"),
    ("lse = true\nlayout = \"packed\"\nq_lens = [16, 9, 3]", "padded and paged layouts only"),
    ("lse = \"yes\"", "expected true or false"),
])
def test_bad_variant_values_name_the_key(tmp_path, body, words):
    text = f"[base]\nbatch = 3\nheads = 2\nseq_len = 16\nhead_dim = 8\n{body}\n"
    with pytest.raises(ScenarioError, match=words) as err:
        load_scenario(write(tmp_path, text))
    assert str(err.value).startswith(str(tmp_path / "s.toml"))  # the file is named too


@pytest.mark.process
def test_pages_larger_than_the_sequence_run_and_absurd_pools_are_refused(tmp_path, cli):
    """FlashAttention's own tests put 239 keys in pages of 512: such a case runs and agrees
    with the oracle; a backend without the paged layout says why; a page no memory can hold
    is one line at plan time, before any run folder."""
    import json

    text = ("[base]\nbatch = 2\nheads_q = 4\nheads_kv = 2\nseq_q = 3\nseq_kv = 239\n"
            "head_dim = 16\nmask = \"causal\"\nkv_lens = [239, 100]\nlayout = \"paged\"\n"
            "page_size = 512\n")
    (tmp_path / "p.toml").write_text(text)
    proc = cli("check", "-s", str(tmp_path / "p.toml"), "-b", "numpy-naive", "-b", "torch-naive",
               "-b", "numba-cpu", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = {r["backend"]: r for r in map(json.loads, (tmp_path / "run" / "records.jsonl")
                                         .read_text().splitlines())}
    assert recs["numpy-naive"]["status"] == recs["torch-naive"]["status"] == "ok"
    assert recs["numpy-naive"]["page_size"] == 512
    assert recs["numba-cpu"]["status"] == "unsupported"
    assert "block table" in recs["numba-cpu"]["reasons"][0]
    (tmp_path / "huge.toml").write_text(text.replace("page_size = 512",
                                                     "page_size = 2147483647"))
    proc = cli("check", "-s", str(tmp_path / "huge.toml"), "-b", "numpy-naive",
               "--out", str(tmp_path / "huge"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "GiB" in proc.stderr, proc.stderr
    assert not (tmp_path / "huge").exists()
