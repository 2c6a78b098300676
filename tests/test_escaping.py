"""Plugin and scenario strings holding markup reach every sink as text: terminal (run, check,
list), rich progress, plots (mathtext), CSV (formulas), report files; plot files stay unique."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from attnbench.progress import RichProgress
from attnbench.sanitize import csv_cell, plain

sys.path.insert(0, str(Path(__file__).resolve().parent / "plugins"))
from markup import EVIL  # noqa: E402  (the test plugin's string, to look for in the outputs)

RAW = ("\x1b", "\x07", "\u202e", "\r")  # control characters that must never reach a sink raw
EVIL_SCENARIO = r'=cmd $\\frac{1}{$ [bold]x[/] \u001b[31mred'  # TOML: a $ pair, markup, ESC
TOML = 'name = "{name}"\n[base]\nbatch = 1\nheads = 2\nhead_dim = 8\n[sweep]\nseq_len = [16, 32]\n'


def no_raw_controls(text: str) -> bool:
    return not any(c in text for c in RAW)


@pytest.fixture(scope="module")
def evil_run(tmp_path_factory) -> tuple[Path, list[str], object]:
    """One real run: scenarios 'x y', 'x_y' and a hostile name; numpy-naive and test-markup."""
    from conftest import PLUGINS, run_cli  # the shared runner, for a module-scoped fixture

    root = tmp_path_factory.mktemp("evil")
    paths = []
    for i, name in enumerate(["x y", "x_y", EVIL_SCENARIO]):
        (root / f"s{i}.toml").write_text(TOML.format(name=name))
        paths += ["-s", str(root / f"s{i}.toml")]
    proc = run_cli("run", *paths, "--plugin", str(PLUGINS / "markup.py"), "-b", "numpy-naive",
                   "-b", "test-markup", "--device", "cpu", "--budget", "0.05",
                   "--out", str(root / "run"), cwd=root, timeout=240)
    return root / "run", paths, proc


@pytest.mark.process
def test_run_prints_plugin_text_as_text(evil_run):
    out, _, proc = evil_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for stream in (proc.stdout, proc.stderr):
        assert no_raw_controls(stream)
        assert not any(line.startswith("[9/9] forged") for line in stream.splitlines())
    records = (out / "records.jsonl").read_text().splitlines()
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == len(records) == 12  # one line a record: no line forged by a message
    assert "`tick` [l](u) evil[/] [link=htt" in proc.stderr  # markup printed, not read
    assert json.loads(records[-1])["error"] == f"RuntimeError: {EVIL}"  # stored as it was


@pytest.mark.process
def test_check_and_list_print_plugin_text_as_text(cli, plugin_path, evil_run):
    _, paths, _ = evil_run
    check = cli("check", *paths, "--plugin", plugin_path("markup.py"), "-b", "test-markup",
                "--device", "cpu")
    assert check.returncode == 1 and "Traceback" not in check.stderr  # test-markup errors
    assert no_raw_controls(check.stdout + check.stderr)
    assert "[link=https://attacker.example]" in check.stdout
    listed = cli("list", "--plugin", plugin_path("markup.py"), env={"COLUMNS": "400"})
    assert listed.returncode == 0 and no_raw_controls(listed.stdout)
    assert "test-markup" in listed.stdout and "\\x1b[31mred" in listed.stdout.replace("\n", "")


@pytest.mark.process
def test_report_of_hostile_names_writes_every_file(cli, evil_run, tmp_path):
    out, _, _ = evil_run
    proc = cli("report", str(out), "-o", str(tmp_path / "rep"), "--baseline", "numpy-naive")
    assert proc.returncode == 0, proc.stderr[-2000:]  # a $ pair in a title did not stop mathtext
    pngs = sorted((tmp_path / "rep" / "plots").glob("*-latency.png"))
    assert len(pngs) == 3 and len({p.name for p in pngs}) == 3  # 'x y' and 'x_y' both kept
    for name in ("report.md", "report.html", "summary.csv"):
        assert no_raw_controls((tmp_path / "rep" / name).read_text(encoding="utf-8"))
    rows = list(csv.DictReader(open(tmp_path / "rep" / "summary.csv", encoding="utf-8")))
    hostile = [r for r in rows if "cmd" in r["scenario"]]
    assert hostile and all(r["scenario"].startswith("'=cmd $") for r in hostile)
    assert {r["scenario"] for r in rows} >= {"x y", "x_y"}


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
