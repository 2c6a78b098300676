"""Plugin and scenario strings holding markup reach every sink as text: terminal (run, check,
list), rich progress, plots (mathtext), CSV (formulas), report files; plot files stay unique."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from attnbench.run.progress import RichProgress
from attnbench.sanitize import csv_cell, plain

RAW = ("\x1b", "\x07", "\u202e", "\r")  # control characters that must never reach a sink raw
EVIL_SCENARIO = r'=cmd $\\frac{1}{$ [bold]x[/] \u001b[31mred'  # TOML: a $ pair, markup, ESC
TOML = 'name = "{name}"\n[base]\nbatch = 1\nheads = 2\nhead_dim = 8\n[sweep]\nseq_len = [16, 32]\n'
EVIL = ("evil[/] [link=https://attacker.example]click[/link] $\\frac{1}{$ \x1b[31mred\x1b[0m "
        "\x1b]8;;https://attacker.example\x07osc")  # a part of tests/plugins/markup.py's text


def no_raw_controls(text: str) -> bool:
    return not any(c in text for c in RAW)


def scenarios(folder: Path) -> list[str]:
    """-s arguments for three scenarios: 'x y', 'x_y' (one file name slug) and a hostile name."""
    args = []
    for i, name in enumerate(["x y", "x_y", EVIL_SCENARIO]):
        (folder / f"s{i}.toml").write_text(TOML.format(name=name))
        args += ["-s", str(folder / f"s{i}.toml")]
    return args


@pytest.mark.process
def test_run_and_report_show_hostile_text_as_text(cli, plugin_path, tmp_path):
    out = tmp_path / "run"
    proc = cli("run", *scenarios(tmp_path), "--plugin", plugin_path("markup.py"),
               "-b", "numpy-naive", "-b", "test-markup", "--device", "cpu", "--budget", "0.05",
               "--out", str(out), timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for stream in (proc.stdout, proc.stderr):
        assert no_raw_controls(stream)
        assert not any(line.startswith("[9/9] forged") for line in stream.splitlines())
    records = (out / "records.jsonl").read_text().splitlines()
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == len(records) == 12  # one line a record: no line forged by a message
    assert "`tick` [l](u) evil[/] [link=htt" in proc.stderr  # markup printed, not read
    assert EVIL in json.loads(records[-1])["error"]  # the record keeps the text as it was
    check_report(cli, out, tmp_path / "rep")
    compared = cli("compare", str(out), str(out), "--all")  # names printed by compare too
    assert compared.returncode == 0 and "Traceback" not in compared.stderr
    assert no_raw_controls(compared.stdout + compared.stderr)


def check_report(cli, run: Path, rep: Path) -> None:
    """`report` of that run: every file written, plot files unique, CSV without formulas."""
    proc = cli("report", str(run), "-o", str(rep), "--baseline", "numpy-naive")
    assert proc.returncode == 0, proc.stderr[-2000:]  # a $ pair in a title did not stop mathtext
    pngs = sorted((rep / "plots").glob("*-latency.png"))
    assert len(pngs) == 3 and len({p.name for p in pngs}) == 3  # 'x y' and 'x_y' both kept
    for name in ("report.md", "report.html", "summary.csv"):
        assert no_raw_controls((rep / name).read_text(encoding="utf-8"))
    rows = list(csv.DictReader(open(rep / "summary.csv", encoding="utf-8")))
    hostile = [r for r in rows if "cmd" in r["scenario"]]
    assert hostile and all(r["scenario"].startswith("'=cmd $") for r in hostile)
    assert {r["scenario"] for r in rows} >= {"x y", "x_y"}


@pytest.mark.process
def test_check_and_list_print_plugin_text_as_text(cli, plugin_path, tmp_path):
    check = cli("check", *scenarios(tmp_path), "--plugin", plugin_path("markup.py"),
                "-b", "test-markup", "--device", "cpu", "--out", str(tmp_path / "check"))
    assert check.returncode == 1 and "Traceback" not in check.stderr  # test-markup errors
    assert no_raw_controls(check.stdout + check.stderr)
    assert "[link=https://attacker.example]" in check.stdout
    listed = cli("list", "--plugin", plugin_path("markup.py"), env={"COLUMNS": "400"})
    assert listed.returncode == 0 and no_raw_controls(listed.stdout)
    assert "test-markup" in listed.stdout and "\\x1b[31mred" in listed.stdout.replace("\n", "")


def test_csv_cells_formulas_quoted_numbers_not():
    assert csv_cell("=1+2") == "'=1+2" and csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("+cmd") == "'+cmd" and csv_cell("-2+3") == "'-2+3"
    assert csv_cell("-1.5") == "-1.5" and csv_cell("-3e-05") == "-3e-05"
    assert csv_cell(-1.5) == -1.5 and csv_cell(None) is None and csv_cell("a=b") == "a=b"


def test_plain_text_is_one_printable_line():
    assert plain("a\nb\tc\r") == "a b c "
    assert plain("\x1b[31m\x07\u202e") == "\\x1b[31m\\x07\\u202e"
    assert no_raw_controls(plain(EVIL))


def test_rich_progress_shows_markup_as_text():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    p = RichProgress(stream)
    with p.running(total=1):
        p.starting("case evil[/] [link=https://attacker.example]x", "b[/]")
        p.advance({"case_id": "c", "backend": "b", "status": "error", "error": EVIL})
    text = stream.getvalue()
    assert "[link=https://attacker.example]x" in text and "evil[/]" in text
    assert "\x1b]8;" not in text  # no hyperlink was emitted
