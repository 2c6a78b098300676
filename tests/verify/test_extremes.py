"""Extreme but valid inputs (issue 19, item 8): what a dtype cannot carry is refused when the
scenario is read (one line, exit 2); a huge scale it can carry is judged soundly (all-zeros
fails, correct backends pass); records stay strict JSON."""

from __future__ import annotations

import json

import pytest

REFUSED = {  # [base] lines -> what the one-line error must name
    'dtype = "float32"\nsoftcap = 1e39': ("softcap", "float32"),
    'dtype = "float16"\nsoftcap = 1e5': ("softcap", "float16"),
    'dtype = "float64"\nscale = 1e308': ("scale", "float64"),
    'dtype = "float16"\nscale = 1e4': ("scale", "float16"),
}


def scenario(tmp_path, lines: str, name: str = "s") -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n[base]\nbatch = 1\nheads = 2\nhead_dim = 16\n'
                    f'seq_len = 24\n{lines}\n')
    return str(path)


@pytest.mark.parametrize("lines", list(REFUSED))
def test_what_a_dtype_cannot_carry_is_refused_in_one_line(cli, tmp_path, lines):
    path = scenario(tmp_path, lines)
    proc = cli("check", "-s", path, "-b", "numpy-naive", "--device", "cpu",
               "--out", str(tmp_path / "run"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    key, dtype = REFUSED[lines]
    assert path in proc.stderr and f"key '{key}'" in proc.stderr and dtype in proc.stderr
    assert not (tmp_path / "run" / "records.jsonl").exists()


def records(run) -> list[dict]:
    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")

    lines = (run / "records.jsonl").read_text().splitlines()
    return [json.loads(line, parse_constant=refuse) for line in lines]


def test_a_huge_scale_float32_can_carry_is_judged_soundly(cli, plugin_path, tmp_path):
    """scale 1e6 in float32: every row is (nearly) one-hot. The old floor let all-zeros pass
    there; the model's bound is the rounding of the one value each row selects."""
    path = scenario(tmp_path, 'dtype = "float32"\nscale = 1e6\nmask = "causal"')
    proc = cli("check", "-s", path, "--device", "cpu", "--out", str(tmp_path / "run"),
               "--plugin", plugin_path("wrong_halves.py"), "-b", "numpy-naive",
               "-b", "torch-naive", "-b", "test-fused", "-b", "test-zeros")
    assert proc.returncode == 1, proc.stderr
    got = {r["backend"]: r for r in records(tmp_path / "run")}
    for name in ("numpy-naive", "torch-naive", "test-fused"):
        assert got[name]["status"] == "ok", got[name]["agreement"]
    zeros = got["test-zeros"]["agreement"]["outputs"][0]
    assert got["test-zeros"]["status"] == "mismatch" and zeros["error_over_bound"] > 1e3


def test_records_stay_strict_json_when_a_bound_is_zero(cli, plugin_path, tmp_path):
    """A row that sees no key has a bound of 0: a backend writing 1e-7 there has an infinite
    error/bound, written as null (never a bare Infinity), and is a mismatch."""
    path = scenario(tmp_path, 'dtype = "float32"\nmask = "causal"\nseq_q = 30\nseq_kv = 20')
    proc = cli("check", "-s", path, "--device", "cpu", "--out", str(tmp_path / "run"),
               "--plugin", plugin_path("wrong_halves.py"), "-b", "test-empty-rows-not-zero")
    assert proc.returncode == 1, proc.stderr
    (rec,) = records(tmp_path / "run")
    out = rec["agreement"]["outputs"][0]
    assert rec["status"] == "mismatch" and out["error_over_bound"] is None
    assert "it sees no key: it must be exactly 0" in out["worst"]
    assert "Infinity" not in (tmp_path / "run" / "records.jsonl").read_text()
    assert cli("report", str(tmp_path / "run")).returncode == 0
