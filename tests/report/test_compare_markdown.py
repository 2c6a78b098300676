"""`compare --format markdown`: the same verdict and exit code as the table, as a PR comment;
cells escaped so a hostile backend or case name cannot break the table."""

from __future__ import annotations

from pathlib import Path

from attnbench.cli import main
from attnbench.report.compare_markdown import cell
from tests.report.test_compare import judged


def test_a_regression_is_a_markdown_comment_with_the_same_exit_code(real_run, tmp_path: Path,
                                                                      capsys):
    base, slow = judged(real_run("base"), tmp_path, False), judged(real_run("slow"), tmp_path,
                                                                   False)
    assert main(["compare", str(base), str(slow), "--allow-missing", "--format",
                 "markdown"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("### attnbench: ") and lines[2].startswith("❌ FAILED")
    assert "slow-copy (regression)" in lines[2]
    rows = [ln for ln in lines if ln.startswith("| tiny |")]
    assert rows and all(ln.count(" | ") == 8 for ln in rows)
    assert any("| slow-copy |" in ln and "**regression**" in ln for ln in rows)
    assert "┃" not in out  # no terminal table


def test_an_unchanged_run_says_so(real_run, capsys):
    base = str(real_run("base"))
    assert main(["compare", base, base, "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "✅ passed" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| tiny |")]
    assert all(ln.endswith("| untimed |") for ln in rows)  # test-markup is never timed


def test_cells_escape_pipes_backticks_and_control_characters():
    assert "\x1b" not in cell("a\x1b[31m") and cell("a|b`c") == "a\\|b\\`c"
    assert "|" not in cell("x|y").replace("\\|", "")
