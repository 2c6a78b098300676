"""Run folders that lost coverage or were corrupted, read by load(), report, compare and
--resume: lost coverage fails compare; bad record lines are skipped with a warning naming the
file and line; a run.json that is not usable is a one-line error (exit 2); never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import attnbench
from attnbench.errors import UsageError
from attnbench.record import record_key
from attnbench.results import read_run
from tests.conftest import TWO_CASES

pytestmark = pytest.mark.process

TINY = TWO_CASES
# JSON lines that are not records, each with the words its warning must contain
BAD_LINES = [
    (b"42", "a int, not a JSON object"),
    (b"[1, 2]", "a list, not a JSON object"),
    (b'{"foo": 1}', "field 'scenario' is missing"),
    (b'{"scenario": "tiny", "case_id": "c", "backend": "b", "device": "cpu", "status": "ok", '
     b'"timing": "fast"}', "field 'timing' has the wrong type"),
    (b'{"scenario": "tiny", "case_id": "c", "backend": "b", "device": "cpu", "status": "weird"}',
     "unknown status 'weird'"),
    (b'{"scenario": "tiny", "case_id": "c", "backend": "b", "device": "cpu", "status": "ok", '
     b'"timing": {"median_ms": "fast"}}', "field 'timing.median_ms' is not a number"),
    (b'{"scenario": "tiny", "case_id": "c", "backend": "b", "device": "cpu", "status": "ok", '
     b'"agreement": {"outputs": [1, "a"]}}', "field 'agreement.outputs' is not a list of objects"),
    (b'{"scenario": "tiny", "case_id": "c", "backend": "b", "device": "cpu", "status": "ok", '
     b'"scale": "x", "gflops_per_s": []}', "field 'scale' is not a number"),
    (b"\xff\xfe not utf-8", "not UTF-8 text ('utf-8' codec"),  # not a guess of UTF-16
    (b"{not json", "not JSON"),
]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """One real timed run: two backends, two cases."""
    tmp = tmp_path_factory.mktemp("damaged")
    (tmp / "tiny.toml").write_text(TINY)
    env = {**os.environ, "ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    cmd = [sys.executable, "-m", "attnbench", "run", "-s", str(tmp / "tiny.toml"), "--device",
           "cpu", "-b", "numpy-naive", "-b", "torch-naive", "--budget", "0.02", "--out",
           str(tmp / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return tmp / "run"


def copy(made: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(made, dst)
    return dst


def edit_meta(run: Path, **fields) -> None:
    meta = json.loads((run / "run.json").read_text())
    meta.update(fields)
    (run / "run.json").write_text(json.dumps(meta))


def keep_records(run: Path, keep) -> None:
    lines = (run / "records.jsonl").read_text().splitlines(keepends=True)
    (run / "records.jsonl").write_text("".join(x for x in lines if keep(json.loads(x))))


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


# --- compare over lost coverage ------------------------------------------------------------

def test_compare_a_run_with_itself_passes(cli, made: Path):
    proc = cli("compare", str(made), str(made))
    assert proc.returncode == 0 and "compare: passed" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("damage,words", [
    (lambda run: keep_records(run, lambda r: r["backend"] != "torch-naive"),
     "backend torch-naive has no records in the new run"),
    (lambda run: keep_records(run, lambda r: r["seq_kv"] != 32),
     "lacks 1 case(s)"),
    (lambda run: edit_meta(run, finished=False, stopped="interrupted by SIGTERM"),
     "did not finish (interrupted by SIGTERM)"),
], ids=["missing backend", "missing case", "unfinished"])
def test_lost_coverage_fails_compare(cli, made: Path, tmp_path: Path, damage, words: str):
    new = copy(made, tmp_path)
    damage(new)
    proc = cli("compare", str(made), str(new))
    verdict = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert verdict.startswith("compare: FAILED") and words in verdict
    assert "--allow-missing" in verdict
    proc = cli("compare", str(made), str(new), "--allow-missing")
    assert proc.returncode == 0 and "compare: passed" in proc.stdout, proc.stdout + proc.stderr
    assert words in proc.stderr  # still said, as a note
    no_traceback(proc)


def test_an_untimed_check_run_is_lost_timing_coverage(cli, made: Path, tmp_path: Path):
    """`compare` of a timed run against an untimed `check` of the same cases: every verdict
    "untimed" is no pass; it fails naming what lost its timing, and --allow-missing notes it."""
    (tmp_path / "tiny.toml").write_text(TINY)
    proc = cli("check", "-s", str(tmp_path / "tiny.toml"), "-b", "numpy-naive", "-b",
               "torch-naive", "--out", str(tmp_path / "checked"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = cli("compare", str(made), str(tmp_path / "checked"))
    verdict = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for backend in ("numpy-naive", "torch-naive"):
        assert f"backend {backend} lost the timing of 2 case(s)" in verdict, verdict
    assert "4 untimed" in verdict and "--allow-missing" in verdict
    proc = cli("compare", str(made), str(tmp_path / "checked"), "--allow-missing")
    assert proc.returncode == 0 and "compare: passed" in proc.stdout, proc.stdout + proc.stderr
    assert "note: backend numpy-naive lost the timing of 2 case(s)" in proc.stderr
    no_traceback(proc)


# --- corrupted records.jsonl ---------------------------------------------------------------

@pytest.fixture
def corrupted(made: Path, tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """A copy of the run with the bad lines between its records; line number -> words."""
    run = copy(made, tmp_path, "corrupted")
    good = (run / "records.jsonl").read_bytes().splitlines()
    lines = [good[0], *(text for text, _ in BAD_LINES), *good[1:]]
    (run / "records.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return run, {i + 2: words for i, (_, words) in enumerate(BAD_LINES)}


def assert_warned(stderr: str, run: Path, bad: dict[int, str]) -> None:
    warnings = [x for x in stderr.splitlines() if x.startswith("attnbench: warning: ")]
    for number, words in bad.items():
        assert any(f"{run / 'records.jsonl'}:{number}: skipped, " in w and words in w
                   for w in warnings), (number, words, stderr)


def test_load_skips_bad_lines_and_names_them(corrupted, made: Path, capsys):
    run, bad = corrupted
    df = attnbench.load(run)
    assert len(df) == len(read_run(made)[1]) == 4
    assert set(df["status"]) == {"ok"}
    assert_warned(capsys.readouterr().err, run, bad)


def test_report_skips_bad_lines(cli, corrupted, tmp_path: Path):
    run, bad = corrupted
    proc = cli("report", str(run), "-o", "rep")
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert_warned(proc.stderr, run, bad)
    assert (tmp_path / "rep" / "report.html").is_file()


def test_compare_skips_bad_lines(cli, corrupted, made: Path):
    run, bad = corrupted
    proc = cli("compare", str(made), str(run))
    assert proc.returncode == 0 and "compare: passed" in proc.stdout, proc.stdout + proc.stderr
    no_traceback(proc)
    assert_warned(proc.stderr, run, bad)


def test_resume_skips_bad_lines_and_redoes_what_is_missing(cli, corrupted, made: Path):
    run, bad = corrupted
    lines = (run / "records.jsonl").read_bytes().splitlines(keepends=True)
    (run / "records.jsonl").write_bytes(b"".join(lines[:-1]))  # lose the last record
    edit_meta(run, finished=False)
    proc = cli("run", "--resume", str(run), "--allow-code-change")
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert_warned(proc.stderr, run, bad)
    _, records = read_run(run)
    assert sorted(map(record_key, records)) == sorted(map(record_key, read_run(made)[1]))


# --- real records with one field of the wrong type ------------------------------------------

# (path of the field, value, words of the warning): each once a traceback in report or resume
TYPED = [
    ("softcap", "x", "field 'softcap' is not a number or null ('x')"),
    ("q_lens", {"a": 1}, "field 'q_lens' is not a list of integers or null"),
    ("window_left", [1, 2], "field 'window_left' is not an integer or null"),
    ("layout", ["paged"], "field 'layout' is not a string"),
    ("agreement.outputs.0.max_abs_err", None, "max_abs_err' is null in an output without"),
    ("agreement.outputs.0.bound", None, "bound' is null in an output without an error"),
    ("determinism", {"repeats": 2, "bitwise_identical": False, "max_abs_diff": "x"},
     "field 'determinism.max_abs_diff' is not a number or null"),
]


def with_typed_lines(run: Path) -> dict[int, str]:
    """Append to a run's records.jsonl copies of its first record, each with one field of the
    wrong type (and status mismatch, so that readers explain it); line number -> words."""
    lines = (run / "records.jsonl").read_text().splitlines()
    out = {}
    for i, (path, value, words) in enumerate(TYPED):
        rec = json.loads(lines[0])
        rec["case_id"] += f"-typed{i}"
        rec["status"] = "mismatch"
        node, *keys = rec, *path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[keys[-1]] = value
        out[len(lines) + 1] = words
        lines.append(json.dumps(rec))
    (run / "records.jsonl").write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def checked(tmp_path_factory) -> Path:
    """One real untimed check run (numpy-naive, two cases)."""
    tmp = tmp_path_factory.mktemp("checked")
    (tmp / "tiny.toml").write_text(TINY)
    cmd = [sys.executable, "-m", "attnbench", "check", "-s", str(tmp / "tiny.toml"), "-b",
           "numpy-naive", "--out", str(tmp / "run")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert proc.returncode == 0, proc.stderr
    return tmp / "run"


@pytest.mark.parametrize("reader", ["report", "compare", "recommend", "load"])
def test_wrongly_typed_fields_are_skipped_by_every_reader(cli, made: Path, tmp_path: Path,
                                                           capsys, reader: str):
    run = copy(made, tmp_path, "typed")
    bad = with_typed_lines(run)
    if reader == "load":
        assert len(attnbench.load(run)) == 4
        assert_warned(capsys.readouterr().err, run, bad)
        return
    args = {"report": ["report", str(run), "-o", "rep"], "recommend": ["recommend", str(run)],
            "compare": ["compare", str(made), str(run)]}[reader]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    no_traceback(proc)
    assert_warned(proc.stderr, run, bad)


# (path, value, words): numbers no run measures; each once a traceback in compare or history,
# or a NaN median that passed compare's gate on a run 10x slower
IMPOSSIBLE = [
    ("timing.median_ms", -5, "field 'timing.median_ms' is -5, not a finite number >= 0"),
    ("timing.median_ms", float("nan"), "field 'timing.median_ms' is nan, not a finite number"),
    ("timing.median_ms", float("inf"), "field 'timing.median_ms' is inf, not a finite number"),
    ("timing.median_ms", 0, "field 'timing.median_ms' is 0, not a time"),
    ("timing.samples_ms", [0.1, float("nan")], "'timing.samples_ms' is not a list of finite"),
    ("timing.samples_ms", [], "'timing.samples_ms' is empty beside a median"),
    ("memory.peak_bytes", -1, "field 'memory.peak_bytes' is -1, not a finite number >= 0"),
    ("gflops_per_s", float("-inf"), "field 'gflops_per_s' is -inf, not a finite number >= 0"),
]


def test_impossible_numbers_are_skipped_and_a_nan_median_fails_the_gate(
        cli, made: Path, tmp_path: Path, capsys):
    run = copy(made, tmp_path, "impossible")
    lines = (run / "records.jsonl").read_text().splitlines()
    bad = {}
    for i, (path, value, words) in enumerate(IMPOSSIBLE):
        rec = json.loads(lines[0])
        rec["case_id"] += f"-impossible{i}"
        outer, _, inner = path.rpartition(".")
        (rec[outer] if outer else rec)[inner] = value
        bad[len(lines) + 1] = words
        lines.append(json.dumps(rec))
    (run / "records.jsonl").write_text("\n".join(lines) + "\n")
    assert len(attnbench.load(run)) == 4
    assert_warned(capsys.readouterr().err, run, bad)
    nan = copy(made, tmp_path, "nan-median")  # a NaN median: that record's timing is lost
    recs = [json.loads(x) for x in (nan / "records.jsonl").read_text().splitlines()]
    recs[0]["timing"]["median_ms"] = float("nan")
    (nan / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    proc = cli("compare", str(made), str(nan))
    assert proc.returncode == 1 and "compare: passed" not in proc.stdout, proc.stdout
    no_traceback(proc)


def test_records_jsonl_that_is_a_folder_is_refused_not_read_as_empty(cli, made: Path,
                                                                       tmp_path: Path):
    run = copy(made, tmp_path, "folder-records")
    (run / "records.jsonl").unlink()
    (run / "records.jsonl").mkdir()
    with pytest.raises(UsageError, match="records.jsonl: not a regular file"):
        attnbench.load(run)
    proc = cli("report", str(run), "-o", "rep")
    assert proc.returncode == 2 and "not a regular file" in proc.stderr
    no_traceback(proc)


def test_check_resume_skips_wrongly_typed_fields(cli, checked: Path, tmp_path: Path):
    run = copy(checked, tmp_path, "typed-check")
    bad = with_typed_lines(run)
    proc = cli("check", "--resume", str(run), "--allow-code-change")
    assert proc.returncode == 0 and "check passed" in proc.stdout, proc.stdout + proc.stderr
    no_traceback(proc)
    assert_warned(proc.stderr, run, bad)


# --- unusable run.json ---------------------------------------------------------------------

BAD_META = [
    ("not an object", b"[1, 2, 3]", "not a run's metadata (a list, not a JSON object)"),
    ("config not an object", {"config": "fast"}, "field 'config' has the wrong type (str)"),
    ("roofs of the wrong shape", {"roofs": {"cpu": 5}}, "field 'roofs.cpu' has the wrong type"),
    ("versions a list", {"environment": {"versions": []}},
     "field 'environment.versions' has the wrong type (list)"),
    ("finished a string", {"finished": "yes"}, "field 'finished' has the wrong type (str)"),
    ("not JSON", b"{", "not valid JSON"),
]


def damage_meta(made: Path, tmp_path: Path, change) -> Path:
    run = copy(made, tmp_path, "badmeta")
    if isinstance(change, bytes):
        (run / "run.json").write_bytes(change)
    else:
        edit_meta(run, **change)
    return run


@pytest.mark.parametrize("change,words", [b[1:] for b in BAD_META], ids=[b[0] for b in BAD_META])
def test_bad_run_json_load_raises_one_line(made: Path, tmp_path: Path, change, words: str):
    run = damage_meta(made, tmp_path, change)
    with pytest.raises(UsageError, match="run.json: ") as info:
        attnbench.load(run)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("change,words", [b[1:] for b in BAD_META[:3]],
                         ids=[b[0] for b in BAD_META[:3]])
def test_bad_run_json_is_one_line_for_every_cli_reader(cli, made: Path, tmp_path: Path, change,
                                                       words: str):
    run = damage_meta(made, tmp_path, change)
    for args in (["report", str(run), "-o", "rep"], ["compare", str(made), str(run)],
                 ["recommend", str(made), str(run)], ["run", "--resume", str(run)]):
        proc = cli(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (args, proc.stderr)
        assert lines[0].startswith("attnbench: error: ") and words in lines[0], (args, lines)
        assert str(run / "run.json") in lines[0]


def test_many_bad_lines_are_counted_not_listed(tmp_path: Path, capsys):
    from attnbench.results import MAX_WARNINGS, read_records

    path = tmp_path / "records.jsonl"
    path.write_text("[]\n" * (MAX_WARNINGS + 15))
    assert read_records(path) == []
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == MAX_WARNINGS + 1
    assert warnings[-1] == f"attnbench: warning: {path}: 15 more lines skipped, not records"


def test_a_whole_last_record_without_its_newline_is_kept(cli, made: Path, tmp_path: Path,
                                                         capsys):
    """An editor dropped the file's last newline: that record was lost without a word (and
    compare then failed on lost coverage); a cut line (a killed writer) is still skipped."""
    from attnbench.results import read_records
    from attnbench.run.runner import _cut_torn_tail

    run = tmp_path / "edited"
    shutil.copytree(made, run)
    path = run / "records.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole.rstrip(b"\n"))
    assert len(read_records(path)) == whole.count(b"\n")
    assert "its newline is missing; kept" in capsys.readouterr().err
    proc = cli("compare", str(made), str(run))
    assert proc.returncode == 0 and "compare: passed" in proc.stdout, proc.stdout + proc.stderr
    _cut_torn_tail(path)  # resume: the newline is given back, not the record cut
    assert path.read_bytes() == whole
    path.write_bytes(whole + b'{"scenario": "tin')
    assert len(read_records(path)) == whole.count(b"\n")
    assert "newline" not in capsys.readouterr().err
