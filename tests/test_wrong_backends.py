"""`attnbench check` catches the deliberately wrong test plugins and exits 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnbench.case import resolve_scenario


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_forgotten_scale_is_a_mismatch(cli, plugin_path, tmp_path):
    out = tmp_path / "run"
    proc = cli("check", "-s", "smoke", "--plugin", plugin_path("wrong_scale.py"),
               "-b", "wrong-scale", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "mismatch" in proc.stdout and "wrong-scale" in proc.stdout
    assert "check failed" in proc.stderr
    ran = [r for r in records(out) if r["status"] != "unsupported"]
    assert ran and all(r["status"] == "mismatch" for r in ran)  # every case has rows of >1 key
    worst = ran[0]["agreement"]["outputs"][0]
    assert worst["max_abs_err"] > worst["bound"]


def test_top_left_causal_fails_only_where_lq_differs_from_lk(cli, plugin_path, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    proc = cli("check", "-s", "smoke", "--plugin", plugin_path("top_left_causal.py"),
               "-b", "top-left-causal", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "mismatch" in proc.stdout
    recs = records(out)
    assert len(recs) == len(resolve_scenario("smoke").cases("cpu"))
    bad = {r["case_id"] for r in recs if r["status"] == "mismatch"}
    expected = {r["case_id"] for r in recs if r["mask"] == "causal" and r["seq_q"] != r["seq_kv"]}
    assert expected and bad == expected
    assert {r["status"] for r in recs if r["case_id"] not in bad} == {"ok"}
