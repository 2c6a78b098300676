"""Strided q, k, v (views of a transposed or a wider fused-projection buffer) catch a backend
that reads its inputs' memory as if contiguous; its contiguous cases pass."""

from __future__ import annotations

import json

import pytest

SCENARIO = """
name = "strided"
[base]
batch = 2
heads = 2
head_dim = 16
seq_len = 24
[sweep]
strides = ["contiguous", "transposed", "sliced"]
"""


@pytest.mark.process
def test_a_backend_assuming_contiguous_inputs_fails_only_on_views(cli, plugin_path, tmp_path):
    scenario, out = tmp_path / "strided.toml", tmp_path / "run"
    scenario.write_text(SCENARIO)
    proc = cli("check", "-s", str(scenario), "--plugin", plugin_path("assumes_contiguous.py"),
               "-b", "assumes-contiguous", "-b", "numpy-naive", "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    recs = [json.loads(line) for line in (out / "records.jsonl").open()]
    status = {(r["backend"], r["strides"]): r["status"] for r in recs}
    assert status == {("numpy-naive", "contiguous"): "ok", ("numpy-naive", "transposed"): "ok",
                      ("numpy-naive", "sliced"): "ok",
                      ("assumes-contiguous", "contiguous"): "ok",
                      ("assumes-contiguous", "transposed"): "mismatch",
                      ("assumes-contiguous", "sliced"): "mismatch"}
