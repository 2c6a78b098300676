"""A full disk ("No space left on device", made real with /dev/full): every file a run or a
report writes is named in a one-line error (exit 2), and a run that cannot append a record
stops with the records written before kept and run.json saying why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attnbench.results import read_run
from tests.conftest import ROOT

pytestmark = [pytest.mark.process,
              pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")]
TINY = "[base]\nbatch = 1\nheads = 2\nhead_dim = 16\n[sweep]\nseq_len = [16, 32, 48]\n"
ENOSPC = "No space left on device"


def error_line(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("attnbench: error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    (tmp_path / "tiny.toml").write_text(TINY)
    return tmp_path / "tiny.toml"


def test_a_record_that_cannot_be_appended_stops_the_run(cli, tmp_path, scenario):
    """The disk fills after the first record (records.jsonl's descriptor pointed at /dev/full,
    injected into the run's process through tests/faults/sitecustomize.py)."""
    env = {"PYTHONPATH": str(ROOT / "tests" / "faults"), "ATTNBENCH_TEST_DISK_FULL_AFTER": "1"}
    proc = cli("check", "-s", str(scenario), "-b", "numpy-naive", "--out", "run", env=env)
    line = error_line(proc)
    records = tmp_path / "run" / "records.jsonl"
    assert f"cannot append a record to {records}: {ENOSPC}" in line
    meta, kept = read_run(tmp_path / "run")
    assert [r["seq_kv"] for r in kept] == [16]  # written before the disk filled: kept
    assert meta["finished"] is False and f"{records}: {ENOSPC}" in meta["stopped"]


def test_run_json_that_cannot_be_written_is_named(cli, tmp_path, scenario):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json.tmp").symlink_to("/dev/full")
    proc = cli("check", "-s", str(scenario), "-b", "numpy-naive", "--out", "run")
    assert f"cannot write {tmp_path / 'run' / 'run.json'}: {ENOSPC}" in error_line(proc)


def test_report_files_and_junit_that_cannot_be_written_are_named(cli, tmp_path, scenario):
    proc = cli("check", "-s", str(scenario), "-b", "numpy-naive", "--out", "run",
               "--junit-xml", "/dev/full")
    assert f"cannot write /dev/full: {ENOSPC}" in error_line(proc)
    run = tmp_path / "run"
    assert len(read_run(run)[1]) == 3  # the run itself is whole
    assert cli("report", str(run), "-o", "probe").returncode == 0
    plot = sorted(p.name for p in (tmp_path / "probe" / "plots").iterdir())[0]
    for name in ("report.md", "report.html", "summary.csv", f"plots/{plot}"):
        target = tmp_path / f"rep-{name.replace('/', '-')}" / name
        target.parent.mkdir(parents=True)
        target.symlink_to("/dev/full")
        proc = cli("report", str(run), "-o", str(target.parent if "/" not in name
                                                 else target.parent.parent))
        assert f"cannot write {target}: {ENOSPC}" in error_line(proc), name
