"""The poisoned-padding scenario catches a backend that reads one key past its lengths, while a
kernel that stops at the lengths (numpy-flash) passes it; `check` exits 1 and says where."""

from __future__ import annotations

import json

import pytest

SCENARIO = """
name = "poisoned"
[base]
batch = 2
heads = 2
head_dim = 16
seq_len = 40
mask = "causal"
poison = true
kv_lens = [40, 13]
q_lens = [40, 29]
"""


@pytest.mark.process
def test_reading_past_the_lengths_meets_nan_and_is_a_mismatch(cli, plugin_path, tmp_path):
    scenario, out = tmp_path / "poisoned.toml", tmp_path / "run"
    scenario.write_text(SCENARIO)
    proc = cli("check", "-s", str(scenario), "--plugin", plugin_path("reads_past_lengths.py"),
               "-b", "reads-past-lengths", "-b", "numpy-flash", "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    recs = {r["backend"]: r for r in map(json.loads, (out / "records.jsonl").open())}
    assert recs["numpy-flash"]["status"] == "ok"
    wrong = recs["reads-past-lengths"]
    assert wrong["status"] == "mismatch" and wrong["case_id"].endswith("-poison-fwd")
    (entry,) = wrong["agreement"]["outputs"]
    assert entry["nonfinite"] > 0
    assert entry["diagnosis"]["labels"][0].endswith("it read the NaN-poisoned padding")
    assert "NaN/Inf" in proc.stdout
