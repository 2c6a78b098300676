"""Mask functions through the real CLI: a bad one is one line and exit 2, before or mid-run."""

from __future__ import annotations

import json

import pytest

HEAD = "[base]\nbatch = 1\nheads = 2\nhead_dim = 8\n"


@pytest.mark.process
def test_a_missing_function_is_one_line_and_exit_2(cli, tmp_path):
    (tmp_path / "masks.py").write_text("def band(b, h, q, k):\n    return abs(q - k) < 3\n")
    (tmp_path / "s.toml").write_text(HEAD + "seq_len = 16\nmask_mod = \"masks.py:bnd\"\n")
    proc = cli("check", "-s", str(tmp_path / "s.toml"), "-b", "numpy-naive",
               "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "key 'mask_mod'" in proc.stderr and "has no 'bnd'" in proc.stderr


@pytest.mark.process
def test_a_function_failing_mid_run_stops_with_one_line_and_keeps_the_records(cli, tmp_path):
    """Reading a large case (over 2^26 pairs) evaluates only its first and last rows: this
    function fails on rows in between, when the run counts the case's work; the plain case
    measured before it stays in the results."""
    (tmp_path / "late.py").write_text(
        "import numpy as np\n"
        "def f(b, h, q, k):\n"
        "    if np.any((q > 4000) & (q < 4100)):\n"
        "        raise RuntimeError('row 4050 is not allowed')\n"
        "    return q >= k\n")
    (tmp_path / "s.toml").write_text(
        HEAD + "seq_len = 16\n[[variant]]\nname = \"plain\"\n"
        "[[variant]]\nname = \"late\"\nseq_len = 8200\nmask_mod = \"late.py:f\"\n")
    out = tmp_path / "o"
    proc = cli("check", "-s", str(tmp_path / "s.toml"), "-b", "numpy-naive", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if "error" in x]
    assert "row 4050 is not allowed" in line and "late.py:f" in line
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert [(r["seq_q"], r["status"]) for r in recs] == [(16, "ok")]


@pytest.mark.process
def test_a_mask_function_module_cannot_rewrite_verdicts(cli, plugin_path, tmp_path):
    """The mask function's module imports a plugin that, on import, patches the comparison and
    the record builder so everything passes. It runs in attnbench's child process and in the
    workers, never in the process that makes verdicts: a wrong backend still fails."""
    patcher = plugin_path("patches_verdicts.py")
    marks = tmp_path / "imported_by"
    (tmp_path / "sly.py").write_text(
        "import os, sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('sly_patcher', {patcher!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        f"with open({str(marks)!r}, 'a') as f:\n"
        "    f.write(str('attnbench.run.sweep' in sys.modules) + '\\n')\n"
        "def f(b, h, q, k):\n"
        "    return q >= k\n")
    (tmp_path / "s.toml").write_text(HEAD + "seq_len = 16\nmask_mod = \"sly.py:f\"\n")
    out = tmp_path / "o"
    proc = cli("check", "-s", str(tmp_path / "s.toml"), "-b", "wrong-mask-mod",
               "--plugin", plugin_path("wrong_mask_mod.py"), "--out", str(out))
    assert proc.returncode == 1, proc.stderr[-800:]
    [rec] = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert rec["status"] == "mismatch"
    seen = marks.read_text().split()
    assert seen and "True" not in seen  # imported, but never where the sweep runs
