"""Mask functions (attnbench/mask_mod.py): references, loading, evaluation, checks, pictures."""

from __future__ import annotations

import numpy as np
import pytest

from attnbench import mask_eval, mask_mod, variants
from attnbench.case import Case
from attnbench.errors import ScenarioError
from attnbench.scenario import load_scenario

PREFIX = "attnbench.mask_functions:prefix_lm(4)"
pytestmark = pytest.mark.process  # mask functions are evaluated in a child process


@pytest.mark.parametrize("ref, parsed", [
    ("m:f", ("m", "f", (), {})),
    ("pkg.mod:factory(8, seed=2)", ("pkg.mod", "factory", (8,), {"seed": 2})),
    ("dir/file.py:make((1, 2), 'x')", ("dir/file.py", "make", ((1, 2), "x"), {})),
    ("m:f()", ("m", "f", (), {})),
])
def test_references_parse(ref, parsed):
    assert mask_mod.parse(ref) == parsed


@pytest.mark.parametrize("ref", ["nofunction", "m:", "m:1f", "m:f(os.system('x'))",
                                 "m:f(1", "m:f(lambda: 1)", ":f"])
def test_bad_references_are_refused(ref):
    with pytest.raises(mask_mod.MaskModError):
        mask_mod.parse(ref)


def test_short_names_keep_plain_arguments_and_checksum_others():
    assert mask_mod.short_name("a.b:prefix_lm(8)") == "prefix_lm_8"
    assert mask_mod.short_name("a.b:blocks(4, 30, seed=1)") == "blocks_4_30_seed1"
    assert mask_mod.short_name("a.b:plain") == "plain"
    odd = mask_mod.short_name("a.b:f('a b/c')")
    assert odd.startswith("f_") and len(odd) == 10
    assert mask_mod.short_name("x.py:f") == mask_mod.short_name("/elsewhere/x.py:f")


def test_a_relative_file_is_made_absolute_against_the_scenario_folder(tmp_path):
    assert mask_mod.absolute("masks.py:f(1)", tmp_path) == f"{tmp_path / 'masks.py'}:f(1)"
    assert mask_mod.absolute("pkg.mod:f", tmp_path) == "pkg.mod:f"
    assert mask_mod.absolute("/abs/m.py:f", tmp_path) == "/abs/m.py:f"


def _case(ref: str, **kw) -> Case:
    return Case(**{"batch": 2, "heads_q": 2, "heads_kv": 1, "seq_q": 10, "seq_kv": 12,
                   "head_dim": 4, "mask_mod": ref, **kw})


def test_a_function_from_a_file_narrows_the_other_masks(tmp_path):
    (tmp_path / "mine.py").write_text(
        "def even_keys(b, h, q_idx, kv_idx):\n    return kv_idx % 2 == 0\n")
    case = _case(f"{tmp_path / 'mine.py'}:even_keys", mask="causal", kv_lens=(12, 5))
    for b, lk in ((0, 12), (1, 5)):
        vis = variants.visibility(case, b)
        i, j = np.indices(vis.shape)
        expect = (j % 2 == 0) & (j < lk) & (j <= i + lk - 10)
        assert np.array_equal(vis, expect)
    assert variants.empty_rows(case)[1].sum() == 5  # rows 0..4 of b1 see no key (j <= i - 5)
    pairs = [int(variants.visibility(case, b).sum()) for b in range(2)]
    assert variants.visible_pairs_per_batch(case).tolist() == pairs


def test_counts_follow_the_function_row_by_row_and_key_by_key():
    case = _case("attnbench.mask_functions:random_blocks(3, 35)", seq_q=13, seq_kv=11)
    for b in range(2):
        vis = variants.visibility(case, b)
        assert np.array_equal(variants.row_counts(case, b), vis.sum(axis=1))
        assert np.array_equal(variants.key_counts(case, b), vis.sum(axis=0))
    assert not np.array_equal(variants.visibility(case, 0), variants.visibility(case, 1))


@pytest.mark.parametrize("body, words", [
    ("def f(b, h, q, k):\n    return (q - k).astype(float)\n", "float64 values, not booleans"),
    ("def f(b, h, q, k):\n    return (q > k)[:2]\n", "does not broadcast"),
    ("def f(b, h, q, k):\n    raise RuntimeError('nope')\n", "raised RuntimeError: nope"),
    ("f = 3\n", "int, not a function"),
    ("raise ImportError('broken module')\n", "broken module"),
])
def test_a_bad_function_is_named_with_what_is_wrong(tmp_path, body, words):
    path = tmp_path / f"m{abs(hash(body))}.py"
    path.write_text(body)
    problem = mask_eval.check_cases([_case(f"{path}:f")])
    assert problem is not None and problem.startswith("key 'mask_mod'") and words in problem


def test_missing_modules_files_and_names_are_problems(tmp_path):
    assert "cannot be imported" in mask_eval.check_cases([_case("no_such_module_x:f")])
    assert "no such file" in mask_eval.check_cases([_case(f"{tmp_path / 'gone.py'}:f")])
    assert "has no 'nothing'" in mask_eval.check_cases(
        [_case("attnbench.mask_functions:nothing")])
    assert "calling prefix_lm raised TypeError" in mask_eval.check_cases(
        [_case("attnbench.mask_functions:prefix_lm()")])
    assert mask_eval.check_cases([_case(PREFIX)]) is None


def test_the_picture_is_the_exact_share_of_visible_pairs_per_block():
    case = _case("attnbench.mask_functions:dilated(3)", seq_q=100, seq_kv=70, mask="causal")
    small = variants.mask_picture(Case(**{**case.to_dict(), "seq_q": 10, "seq_kv": 7}))
    vis = variants.visibility(Case(**{**case.to_dict(), "seq_q": 10, "seq_kv": 7}), 0)
    assert np.array_equal(small, vis.astype(float))  # one pixel per pair below the cap
    pic = mask_mod.picture(case, lambda rows: variants.visibility(case, 0, rows), most=7)
    full = variants.visibility(case, 0).astype(float)
    rows = np.unique(np.linspace(0, 100, 8).round().astype(int))
    cols = np.unique(np.linspace(0, 70, 8).round().astype(int))
    expect = [[full[a:b, c:d].mean() for c, d in zip(cols[:-1], cols[1:], strict=True)]
              for a, b in zip(rows[:-1], rows[1:], strict=True)]
    np.testing.assert_allclose(pic, expect, atol=1e-12)


def test_pictures_survive_the_record_and_damage_is_refused():
    shades = np.linspace(0, 1, 12).reshape(3, 4)
    field = mask_mod.encode(shades)
    np.testing.assert_allclose(mask_mod.decode(field), shades, atol=0.5 / 255)
    for bad in (None, {"rows": 3}, {**field, "rows": 4}, {**field, "shades": "%%%"},
                {**field, "cols": 10**6}, "text"):
        assert mask_mod.decode(bad) is None


def test_a_scenario_names_a_file_beside_it_and_bad_ones_are_scenario_errors(tmp_path):
    (tmp_path / "masks.py").write_text(
        "def band(width):\n"
        "    def f(b, h, q, k):\n"
        "        return abs(q - k) <= width\n"
        "    return f\n")
    head = "[base]\nbatch = 2\nheads = 2\nseq_len = 16\nhead_dim = 8\n"
    good = tmp_path / "good.toml"
    good.write_text(head + "mask_mod = \"masks.py:band(2)\"\n")
    [case] = load_scenario(good).cases("cpu")
    assert case.mask_mod == f"{tmp_path / 'masks.py'}:band(2)"
    assert case.id.endswith("-mm_band_2-fwd") and case.variants == ("mask_mod",)
    for body, words in (("mask_mod = 7", "expected \"module:function\""),
                        ("mask_mod = \"masks.py\"", "is not \"module:function\""),
                        ("mask_mod = \"masks.py:band\"",
                         "band\\(\\) takes 1 positional argument"),
                        ("mask_mod = \"other.py:band(1)\"", "no such file")):
        bad = tmp_path / "bad.toml"
        bad.write_text(head + body + "\n")
        with pytest.raises(ScenarioError, match=words) as err:
            load_scenario(bad)
        assert "\n" not in str(err.value)


def test_a_hanging_function_is_stopped_with_what_it_started(tmp_path, monkeypatch):
    """It starts a process of its own, writes its pid, then sleeps: on the timeout both go."""
    import os
    import time

    pid_file = tmp_path / "grandchild"
    (tmp_path / "slow.py").write_text(
        "import subprocess, sys, time\n"
        "def f(b, h, q, k):\n"
        "    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"    open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "    time.sleep(60)\n"
        "    return q >= k\n")
    monkeypatch.setenv("ATTNBENCH_MASK_TIMEOUT", "3")
    problem = mask_eval.check_cases([_case(f"{tmp_path / 'slow.py'}:f")])
    assert "took more than 3 s (ATTNBENCH_MASK_TIMEOUT)" in problem
    pid = int(pid_file.read_text())
    for _ in range(50):  # killed at once; reaped by init soon after
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if _zombie(pid):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the function's own process outlived the timeout")
    monkeypatch.setenv("ATTNBENCH_MASK_TIMEOUT", "soon")
    assert "must be a positive number of seconds, got 'soon'" in mask_eval.check_cases(
        [_case(f"{tmp_path / 'slow.py'}:f")])


def _zombie(pid: int) -> bool:
    """Whether a process is dead but not yet reaped (state Z in /proc)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
