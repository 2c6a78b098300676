"""The README's example plugin (examples/my_backend.py) is a real backend that passes `check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.case import Case
from attnbench.plugin.registry import build_registry
from attnbench.run.execute import CaseData, Options, execute

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_backend.py"


def test_example_is_short():
    assert len(EXAMPLE.read_text().splitlines()) < 40


def test_readme_shows_the_example_as_it_is():
    readme = (EXAMPLE.parent.parent / "README.md").read_text()
    assert "```python\n" + EXAMPLE.read_text() + "```" in readme


def test_example_passes_check_smoke(cli, tmp_path):
    proc = cli("check", "-s", "smoke", "--plugin", str(EXAMPLE), "-b", "numpy-chunked",
               "--device", "cpu", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "numpy-chunked" in proc.stdout and "✓" in proc.stdout


@pytest.mark.parametrize("case", [
    Case(1, 4, 2, 40, 100, 8, mask="causal"),  # several blocks, Lq < Lk
    Case(1, 2, 1, 100, 37, 8, mask="causal", dtype="float64"),  # Lq > Lk: empty rows
    Case(2, 2, 2, 50, 50, 8, scale=0.2),
], ids=lambda c: c.id)
def test_example_over_many_blocks(case: Case):
    backend = build_registry([str(EXAMPLE)], autoload=False).get("numpy-chunked")
    assert case.seq_kv > 2 * backend.block
    opts = Options(time_it=False, memory=False)
    rec = execute(backend, "t", case, lambda: CaseData(case, 0), opts)
    assert rec["status"] == "ok", rec.get("error") or rec["agreement"]
