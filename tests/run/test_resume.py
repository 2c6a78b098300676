"""Resume: SIGKILL mid-sweep, SIGTERM mid-resume, then finish; refusals of changed configs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from attnbench.cli import main
from attnbench.record import record_key
from attnbench.results import read_run

pytestmark = pytest.mark.process  # runs the CLI in processes

SCENARIO = """name = "ten"
[base]
batch = 1
heads = 2
head_dim = 16
[sweep]
seq_len = [16, 32, 48, 64, 80, 96, 112, 128, 144, 160]
"""
ARGS = ["-b", "numpy-naive", "--device", "cpu", "--budget", "0.02"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "attnbench", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}


def _lines(run: Path) -> int:
    try:
        return (run / "records.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _start_and_signal(cmd: list[str], run: Path, after: int, sig: int) -> int:
    """Start cmd, send sig once run has `after` more complete records; return its exit code."""
    start = _lines(run)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _lines(run) < start + after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    return proc.returncode


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    (tmp / "ten.toml").write_text(SCENARIO)
    scen = str(tmp / "ten.toml")
    full, cut = tmp / "full", tmp / "cut"
    subprocess.run(_cli("run", "-s", scen, *ARGS, "--out", str(full)), env=_env(), check=True,
                   capture_output=True)
    rc_kill = _start_and_signal(_cli("run", "-s", scen, *ARGS, "--out", str(cut)), cut, 2,
                                signal.SIGKILL)
    killed_lines = (cut / "records.jsonl").read_bytes()
    with open(cut / "records.jsonl", "ab") as fh:  # what a writer killed mid-line leaves
        fh.write(b'{"scenario": "ten", "case_id": "b1-h2:2-q')
    # --allow-code-change: engineers may commit to this checkout while the test runs
    again = _cli("run", "--resume", str(cut), "--allow-code-change")
    rc_term = _start_and_signal(again, cut, 2, signal.SIGTERM)
    after_term = read_run(cut)
    done = subprocess.run(again, env=_env(), capture_output=True,
                          text=True)
    return {"full": full, "cut": cut, "rc_kill": rc_kill, "killed_lines": killed_lines,
            "rc_term": rc_term, "after_term": after_term, "done": done, "scenario": scen}


def test_sigkill_leaves_a_partial_unfinished_run(runs):
    assert runs["rc_kill"] == -signal.SIGKILL
    n = runs["killed_lines"].count(b"\n")
    assert 2 <= n < 10
    assert json.loads((runs["cut"] / "run.json").read_text())["resumes"]  # resumed since


def test_sigterm_stops_cleanly_and_says_why(runs):
    meta, records = runs["after_term"]
    assert runs["rc_term"] == 130
    assert meta["finished"] is False and meta["stopped"] == "interrupted by SIGTERM"
    assert runs["killed_lines"].count(b"\n") + 2 <= len(records) < 10


def test_resumed_run_equals_an_uninterrupted_one(runs):
    assert runs["done"].returncode == 0, runs["done"].stderr
    meta, records = read_run(runs["cut"])
    _, full = read_run(runs["full"])
    keys = [record_key(r) for r in records]
    assert len(keys) == len(set(keys)) == 10
    assert set(keys) == {record_key(r) for r in full}
    assert all(r["status"] == "ok" for r in records)
    raw = (runs["cut"] / "records.jsonl").read_bytes()
    assert raw.startswith(runs["killed_lines"]) and b'"case_id": "b1-h2:2-q{' not in raw
    assert len(raw.splitlines()) == 10  # the torn line was cut, not kept
    assert meta["finished"] is True and len(meta["resumes"]) == 2


def test_records_carry_the_roof_fraction_and_their_place_on_the_roofline(runs):
    meta, records = read_run(runs["cut"])
    roof = meta["roofs"]["cpu"]["float32"]
    bandwidth = meta["roofs"]["cpu"]["bandwidth"]["bytes_per_s"]
    assert roof > 1e8 and bandwidth > 1e8
    for r in records:
        assert r["roof_flops_per_s"] == roof
        assert r["roof_fraction"] == pytest.approx(r["gflops_per_s"] * 1e9 / roof)
        assert r["gbytes_per_s"] == pytest.approx(r["io_bytes"] / r["timing"]["median_ms"] / 1e6)
        assert r["arithmetic_intensity"] == pytest.approx(r["flops"] / r["io_bytes"])
        line = min(roof, r["arithmetic_intensity"] * bandwidth)
        assert r["roofline_flops_per_s"] == pytest.approx(line)
        assert r["bound_by"] == ("memory" if line < roof else "compute")
        assert r["roofline_fraction"] == pytest.approx(r["gflops_per_s"] * 1e9 / line)


def _copy(runs, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(runs["cut"], dst)
    return dst


@pytest.mark.parametrize("flags", [["--budget", "0.5"], ["-b", "torch-naive"], ["--seed", "3"]])
def test_resume_refuses_other_flags(runs, tmp_path, capsys, flags):
    assert main(["run", "--resume", str(_copy(runs, tmp_path)), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "differs from the run's" in err


def test_resume_refuses_a_changed_scenario_file(runs, tmp_path, capsys):
    run = _copy(runs, tmp_path)
    scen = Path(runs["scenario"])
    original = scen.read_text()
    try:
        scen.write_text(original.replace("160]", "160, 176]"))
        assert main(["run", "--resume", str(run)]) == 2
    finally:
        scen.write_text(original)
    assert "changed since the run started" in capsys.readouterr().err


def test_a_scenario_file_that_is_gone_is_resumed_from_its_copy_in_run_json(runs, tmp_path,
                                                                            capsys):
    """run.json keeps each scenario's whole spec: a deleted scenario file blocked the resume
    ("no such scenario file"); its stored copy is used, and said so."""
    run = _copy(runs, tmp_path)
    meta = json.loads((run / "run.json").read_text())
    gone = str(tmp_path / "deleted\x1b[2J.toml")  # an escape in run.json's text: shown plain
    meta["config"]["scenarios"][0]["path"] = gone
    (run / "run.json").write_text(json.dumps(meta))
    lines = (run / "records.jsonl").read_bytes().splitlines(keepends=True)
    (run / "records.jsonl").write_bytes(b"".join(lines[:-1]))  # one record left to do
    assert main(["run", "--resume", str(run)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "is gone: its copy in run.json is used" in err and "\x1b" not in err
    assert len(read_run(run)[1]) == len(lines) and read_run(run)[0]["finished"] is True


@pytest.mark.parametrize("key,value,words", [
    ("versions", {"numpy": "0.0.1"}, "numpy version was 0.0.1"),
    ("git_commit", "0" * 40, "git_commit was"),
])
def test_resume_refuses_another_code_version(runs, tmp_path, capsys, key, value, words):
    run = _copy(runs, tmp_path)
    meta = json.loads((run / "run.json").read_text())
    env = meta["environment"]
    env[key] = {**env[key], **value} if isinstance(value, dict) else value
    (run / "run.json").write_text(json.dumps(meta))
    assert main(["run", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert words in err and "start a new run" in err


@pytest.mark.parametrize("key,value,words", [
    ("seed", "x", "config.seed has the wrong type (str)"),
    ("timed", "zzz", "config.timed has the wrong type (str)"),
    ("executor", "zzz", "config.executor is 'zzz', not local or ray"),
])
def test_resume_refuses_a_stored_config_it_cannot_trust(runs, tmp_path, capsys, key, value,
                                                        words):
    """A run.json edited by hand: a wrong type or an unknown executor is one line, nothing
    run (an unknown executor and a string `timed` resumed before)."""
    run = _copy(runs, tmp_path)
    meta = json.loads((run / "run.json").read_text())
    meta["config"][key] = value
    (run / "run.json").write_text(json.dumps(meta))
    before = (run / "records.jsonl").read_bytes()
    assert main(["run", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err
    assert (run / "records.jsonl").read_bytes() == before


def test_resume_refuses_check_on_a_run(runs, tmp_path, capsys):
    assert main(["check", "--resume", str(_copy(runs, tmp_path))]) == 2
    assert "started by run" in capsys.readouterr().err


def test_allow_code_change_is_recorded(runs, tmp_path, capsys):
    run = _copy(runs, tmp_path)
    meta = json.loads((run / "run.json").read_text())
    meta["environment"]["git_commit"] = "f" * 40
    (run / "run.json").write_text(json.dumps(meta))
    lines = (run / "records.jsonl").read_bytes().splitlines(keepends=True)
    (run / "records.jsonl").write_bytes(b"".join(lines[:-1]))  # one record left to do
    assert main(["run", "--resume", str(run), "--allow-code-change"]) == 0
    meta, records = read_run(run)
    assert len(records) == 10 and meta["finished"] is True
    assert "git_commit was ffff" in meta["resumes"][-1]["notes"][0]


def test_resuming_a_finished_run_with_every_record_changes_nothing(runs, tmp_path, capsys):
    """Nothing to do: its run.json (readings, worker statistics, busy verdict) is left as it
    was, not replaced by those of a resume that timed nothing."""
    run = _copy(runs, tmp_path)
    before = {f: (run / f).read_bytes() for f in ("run.json", "records.jsonl")}
    assert main(["run", "--resume", str(run), "--allow-code-change"]) == 0
    assert "the run finished: nothing to do" in capsys.readouterr().err
    assert {f: (run / f).read_bytes() for f in before} == before


def test_resume_refuses_a_changed_plugin_file(tmp_path, capsys, plugin_path):
    """A --plugin file is fingerprinted (sha256) in run.json like the code: resuming after it
    changed would mix records of two plugin versions; refused in one line, unless
    --allow-code-change, which records the change."""
    plugin = tmp_path / "mine.py"
    shutil.copy(plugin_path("slow_copy.py"), plugin)
    (tmp_path / "s.toml").write_text(SCENARIO.replace("16, 32, 48, 64, 80, 96, 112, 128, 144, "
                                                      "160", "16, 32"))
    run = tmp_path / "run"
    assert main(["run", "-s", str(tmp_path / "s.toml"), "-b", "slow-copy", "--plugin",
                 str(plugin), "--budget", "0.02", "--out", str(run)]) == 0
    digest = read_run(run)[0]["environment"]["plugin_files"][str(plugin)]
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    assert main(["run", "--resume", str(run)]) == 0  # unchanged: nothing left to do
    capsys.readouterr()
    plugin.write_text(plugin.read_text() + "\nSLOW = 0  # another version\n")
    assert main(["run", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"plugin {plugin} changed since the run started" in err
    assert "--allow-code-change" in err
    lines = (run / "records.jsonl").read_bytes().splitlines(keepends=True)
    (run / "records.jsonl").write_bytes(b"".join(lines[:-1]))  # one record left to do
    assert main(["run", "--resume", str(run), "--allow-code-change"]) == 0
    notes = read_run(run)[0]["resumes"][-1]["notes"]
    assert any(f"plugin {plugin} changed" in n for n in notes), notes


def test_resume_refuses_a_changed_module_the_plugin_imports(tmp_path, capsys):
    """A helper module of the plugin's own (imported from beside it) is fingerprinted with the
    plugin: changing it between run and resume is refused like a changed plugin file."""
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    helper = helpers / "plugin_helper.py"
    helper.write_text("FACTOR = 1.0\n")
    plugin = tmp_path / "with_helper.py"
    plugin.write_text(textwrap.dedent('''\
        """A test plugin that imports a module of its own from beside it."""
        import os
        import sys

        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "helpers"))
        import plugin_helper  # noqa: E402,F401

        from attnbench import hookimpl  # noqa: E402
        from attnbench.backends.numpy_naive import NumpyNaive  # noqa: E402


        class WithHelper(NumpyNaive):
            name = "test-with-helper"


        @hookimpl
        def attnbench_backends():
            return [WithHelper()]
        '''))
    (tmp_path / "s.toml").write_text(SCENARIO.replace("16, 32, 48, 64, 80, 96, 112, 128, 144, "
                                                      "160", "16, 32"))
    run = tmp_path / "run"
    assert main(["check", "-s", str(tmp_path / "s.toml"), "-b", "test-with-helper",
                 "--plugin", str(plugin), "--out", str(run)]) == 0
    files = read_run(run)[0]["environment"]["plugin_files"]
    assert f"{plugin} imports {helper}" in files, files
    helper.write_text("FACTOR = 1.1  # another version\n")
    capsys.readouterr()
    assert main(["check", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{plugin} imports {helper} changed" in err, err
