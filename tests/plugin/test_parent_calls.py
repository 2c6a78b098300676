"""Plugin methods attnbench calls (unsupported in the backend's worker, availability in the
catalog process) that raise or never return: the run goes on, each becomes an `error` or
`timeout` record or an "unavailable: ..." line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.process
SWEEP = ('name = "lengths"\n[base]\nbatch = 1\nheads = 2\nhead_dim = 8\n'
         "[sweep]\nseq_len = [32, 64, 128]\n")


def table_rows(text: str) -> dict[str, list[str]]:
    """A rich table's rows by first cell, each cell's wrapped lines joined by spaces."""
    rows: dict[str, list[str]] = {}
    last: list[str] = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if not cells:
            continue
        if cells[0]:
            last = rows.setdefault(cells[0], [""] * len(cells))
        for i, c in enumerate(cells):
            last[i] = f"{last[i]} {c}".strip() if c else last[i]
    return rows


def records(out: Path) -> dict[tuple[str, int], dict]:
    lines = (out / "records.jsonl").read_text().splitlines()
    return {(r["backend"], r["seq_kv"]): r for r in map(json.loads, lines)}


@pytest.fixture
def sweep(tmp_path: Path) -> str:
    path = tmp_path / "lengths.toml"
    path.write_text(SWEEP)
    return str(path)


def test_raising_methods_are_error_records_and_the_run_goes_on(cli, plugin_path, sweep, tmp_path):
    out = tmp_path / "run"
    # the file's other backends include one whose availability() never returns: the catalog
    # cuts it at ATTNBENCH_PLUGIN_CALL_TIMEOUT (60 s unless set), which this test need not wait
    proc = cli("run", "-s", sweep, "--plugin", plugin_path("parent_calls.py"), "--budget", "0.05",
               "-b", "test-unsupported-raises", "-b", "test-availability-raises",
               "-b", "numpy-naive", "--device", "cpu", "--out", str(out),
               env={"ATTNBENCH_PLUGIN_CALL_TIMEOUT": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    recs = records(out)
    assert len(recs) == 9 and json.loads((out / "run.json").read_text())["finished"] is True
    assert recs[("test-unsupported-raises", 64)]["status"] == "error"
    assert "unsupported() raised ValueError: unsupported() fails on purpose" in recs[
        ("test-unsupported-raises", 64)]["error"]
    assert {recs[("test-unsupported-raises", n)]["status"] for n in (32, 128)} == {"ok"}
    for n in (32, 64, 128):
        assert recs[("test-availability-raises", n)]["status"] == "error"
        assert "KeyError: 'availability() fails on purpose'" in recs[
            ("test-availability-raises", n)]["error"]
        assert recs[("numpy-naive", n)]["status"] == "ok"


def test_a_method_that_never_returns_is_cut_at_the_timeout(cli, plugin_path, sweep, tmp_path):
    # --timeout also bounds a worker's start (torch imports): 10 s leaves room on a busy host
    out = tmp_path / "check"
    proc = cli("check", "-s", sweep, "--plugin", plugin_path("parent_calls.py"),
               "-b", "test-unsupported-sleeps", "-b", "test-availability-sleeps",
               "-b", "numpy-naive", "--device", "cpu", "--timeout", "10", "--out", str(out),
               timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]  # errors fail a check
    recs = records(out)
    assert len(recs) == 9 and recs[("test-unsupported-sleeps", 32)]["status"] == "ok"
    hung = recs[("test-unsupported-sleeps", 64)]  # in its worker, killed at the --timeout
    assert hung["status"] == "timeout" and "no reply within 10 s" in hung["error"]
    assert recs[("test-unsupported-sleeps", 128)]["status"] == "ok"  # a fresh worker
    assert all(recs[("test-availability-sleeps", n)]["status"] == "error" for n in (32, 64, 128))
    assert "within 10 s" in recs[("test-availability-sleeps", 32)]["error"]  # --timeout rules
    assert all(recs[("numpy-naive", n)]["status"] == "ok" for n in (32, 64, 128))


def test_list_shows_raising_and_hanging_methods_as_unavailable(cli, plugin_path):
    proc = cli("list", "--plugin", plugin_path("parent_calls.py"),
               env={"ATTNBENCH_PLUGIN_CALL_TIMEOUT": "1", "COLUMNS": "400"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    status = {name: cells[2] for name, cells in table_rows(proc.stdout).items()}
    assert status["test-availability-raises"] == (
        "unavailable: availability() raised KeyError: 'availability() fails on purpose'")
    assert status["test-availability-sleeps"] == (
        "unavailable: availability() did not return within 1 s")
    assert status["test-unsupported-sleeps"] == status["numpy-naive"] == "available on cpu"
