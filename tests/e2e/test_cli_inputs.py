"""Inputs the CLI refuses or settles before anything runs: numbers, an --out that holds a run,
case ids that would collide, repeated flags, and paths that a plugin's os.chdir cannot move."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from attnbench.case import Case
from attnbench.cli import main
from attnbench.errors import UsageError
from attnbench.run.plan import make_plan
from tests.conftest import TWO_CASES

TINY = TWO_CASES
CHECK = ["check", "-s", "tiny.toml", "-b", "numpy-naive", "--device", "cpu"]


def one_error(stderr: str) -> str:
    """The single `attnbench: error:` line that is all of stderr (no traceback)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnbench: error: "), stderr
    return lines[0]


def records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("args,words", [
    (["run", "--budget", "nan"], "--budget: must be a finite number"),
    (["run", "--budget", "inf"], "--budget: must be a finite number"),
    (["run", "--budget", "1e300"], "--budget: must be at most 3600"),
    (["run", "--timeout", "nan"], "--timeout: must be a finite number"),
    (["run", "--timeout=-inf"], "--timeout: must be a finite number"),
    (["run", "--timeout", "1e300"], "--timeout: must be at most"),
    (["run", "--seed", "-1"], "--seed: must be at least 0"),
    (["run", "--seed", str(2**64)], "--seed: must be at most"),
    (["run", "--threads", "100000"], "--threads: must be at most"),
    (["run", "--frontier-max", str(10**30)], "--frontier-max: must be at most"),
    (["check", "--seed", "1.5"], "--seed: not an integer"),
    (["run", "--wait-idle", "nan"], "--wait-idle: must be a finite number"),
    (["run", "--wait-idle", "-5"], "--wait-idle: must be at least 0"),
    (["check", "--wait-idle"], "unrecognized arguments: --wait-idle"),
    (["compare", "a", "b", "--threshold", "nan"], "--threshold: must be a finite number"),
    (["compare", "a", "b", "--threshold", "inf"], "--threshold: must be a finite number"),
    (["compare", "a", "b", "--threshold", "1e9"], "--threshold: must be at most 1000"),
    (["compare", "a", "b", "--min-abs", "nan"], "--min-abs: must be a finite number"),
    (["compare", "a", "b", "--min-abs", "1e99"], "--min-abs: must be at most"),
])
def test_bad_numbers_are_refused(tmp_path: Path, capsys, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert words in one_error(capsys.readouterr().err)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.process
def test_bad_numbers_subprocess(cli, tmp_path: Path):
    (tmp_path / "tiny.toml").write_text(TINY)
    for flag, value in (("--budget", "inf"), ("--seed", "-3"), ("--threads", "4096")):
        proc = cli(*CHECK, flag, value)
        assert proc.returncode == 2 and flag in one_error(proc.stderr)
    (tmp_path / "nan.toml").write_text(TINY + "scale = [0.5, nan]\n")
    proc = cli("check", "-s", "nan.toml")
    assert proc.returncode == 2 and "sweep.scale" in one_error(proc.stderr)
    assert not (tmp_path / "results").exists()


def test_threads_limit_is_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "refused (exit 2)" in " ".join(capsys.readouterr().out.split())


@pytest.mark.process
def test_out_holding_a_run_is_refused_unless_overwrite(cli, tmp_path: Path):
    (tmp_path / "tiny.toml").write_text(TINY)
    assert cli(*CHECK, "--out", "out").returncode == 0
    before = (tmp_path / "out" / "records.jsonl").read_bytes()
    proc = cli(*CHECK, "--out", "out")
    assert proc.returncode == 2
    assert "already holds a run" in one_error(proc.stderr) and "--overwrite" in proc.stderr
    (tmp_path / "bad.toml").write_text("[base]\nbatch = 0\n")  # refused before deleting
    assert cli(*CHECK, "-s", "bad.toml", "--out", "out", "--overwrite").returncode == 2
    assert cli(*CHECK, "--out", "out", "--overwrite", "--resume", "out").returncode == 2
    assert (tmp_path / "out" / "records.jsonl").read_bytes() == before
    (tmp_path / "out" / "logs" / "stale.log").write_text("old")
    (tmp_path / "out" / "notes.txt").write_text("the user's own file")
    (tmp_path / "small.toml").write_text(TINY.replace("[16, 32]", "[8]"))
    proc = cli(*CHECK[:2], "small.toml", *CHECK[3:], "--out", "out", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert [r["seq_kv"] for r in records(tmp_path / "out")] == [8]  # afresh: one record
    assert not (tmp_path / "out" / "logs" / "stale.log").exists()
    assert (tmp_path / "out" / "notes.txt").read_text() == "the user's own file"
    meta = json.loads((tmp_path / "out" / "run.json").read_text())
    assert meta["finished"] is True and "resumes" not in meta


@pytest.mark.process
def test_close_scales_are_three_cases(cli, tmp_path: Path):
    (tmp_path / "tiny.toml").write_text(TINY.replace("[16, 32]", "[16]")
                                        + "scale = [0.5, 0.5000001, 0.50000002]\n")
    proc = cli(*CHECK, "--out", "out")
    assert proc.returncode == 0, proc.stderr
    recs = records(tmp_path / "out")
    assert len({r["case_id"] for r in recs}) == 3
    assert sorted(r["scale"] for r in recs) == [0.5, 0.50000002, 0.5000001]
    assert Case(1, 1, 1, 2, 2, 4, scale=0.5000001).id.endswith("-s0.5000001-float32-none-fwd")
    assert Case(1, 1, 1, 2, 2, 4, scale=1).id == Case(1, 1, 1, 2, 2, 4, scale=1.0).id


class SameId(Case):
    """A case whose id ignores its fields: what a collision would look like."""

    @property
    def id(self) -> str:
        return "same"


class TwoCases:
    """A scenario-like source of two different cases that share one id."""

    name = "clash"

    def cases(self, device: str) -> list[Case]:
        return [SameId(1, 1, 1, 2, 2, 4, device=device), SameId(1, 1, 1, 4, 4, 4, device=device)]


def test_two_cases_on_one_id_are_a_plan_error(registry):
    with pytest.raises(UsageError, match="case id same names two different cases"):
        make_plan(registry, [TwoCases()], ["numpy-naive"], ["cpu"], [])


@pytest.mark.process
def test_repeated_flags_run_once(cli, tmp_path: Path):
    (tmp_path / "tiny.toml").write_text(TINY)
    proc = cli(*CHECK, "-b", "numpy-naive", "-s", "tiny.toml", "-s", str(tmp_path / "tiny.toml"),
               "--device", "cpu", "--dtype", "float32", "--dtype", "float32", "--out", "out")
    assert proc.returncode == 0, proc.stderr
    assert len(records(tmp_path / "out")) == 2
    config = json.loads((tmp_path / "out" / "run.json").read_text())["config"]
    assert config["backends"] == ["numpy-naive"] and len(config["scenarios"]) == 1


@pytest.mark.process
def test_a_plugin_that_changes_folder_moves_no_path(cli, tmp_path: Path, plugin_path):
    """Relative --out, -s, --plugin, --junit-xml and --resume keep meaning the start folder."""
    away = tmp_path / "away"
    away.mkdir()
    (tmp_path / "tiny.toml").write_text(TINY)
    shutil.copy(plugin_path("chdir_away.py"), tmp_path / "chdir_away.py")
    env = {"ATTNBENCH_TEST_CHDIR": str(away)}
    args = ["check", "-s", "tiny.toml", "--plugin", "chdir_away.py", "--device", "cpu",
            "-b", "test-chdir-away", "-b", "numpy-naive"]
    proc = cli(*args, "--out", "out", "--junit-xml", "j.xml", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["status"] for r in records(tmp_path / "out")] == ["ok"] * 4
    assert (tmp_path / "j.xml").is_file()
    proc = cli(*args, env=env)  # the default folder, results/<run-id>, is under the start folder
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "results").glob("*/records.jsonl"))) == 1
    proc = cli("check", "--resume", "out", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not any(away.iterdir())


@pytest.mark.parametrize("args,words", [
    (["run", "-s", "tiny.toml", "--out", ""], "argument --out: an empty path"),
    (["check", "-s", "tiny.toml", "--resume", " "], "argument --resume: an empty path"),
    (["compare", "a", ""], "argument NEW: an empty path"),
    (["report", "", "-o", "x"], "argument RUN: an empty path"),
    (["check", "-s", "tiny.toml", "--junit-xml", "."], "a folder, not a file"),
    (["check", "-s", "tiny.toml", "--junit-xml", "tiny.toml/j.xml"],
     "tiny.toml is no folder this user can write in"),
    (["report", "r", "./r", "-o", "x"], "r is given twice: each run is counted once"),
    (["recommend", "r", "r"], "r is given twice"),
    (["history", "add", "r", "r"], "r is given twice"),
    (["report", "tiny.toml"], "tiny.toml: a file, not a run folder (no run.json)"),
    (["history", "add", "--label", "", "x"], "argument --label: an empty label"),
    (["run", "-s", "tiny.toml", "--frontier-max", "64"], "--frontier-max needs --frontier"),
])
def test_bad_paths_and_lone_flags_are_refused_before_anything_runs(tmp_path: Path, capsys,
                                                                    monkeypatch, args, words):
    """An empty path (it meant the current folder or the default one) or label, a folder as the
    JUnit file, or one under a file (both refused after the whole check had run), a file as a
    run folder (named by its folder before), --frontier-max without --frontier (ignored
    before), a run given twice (report and recommend counted its samples twice)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text('name = "t"\n[base]\nbatch = 1\nheads = 1\n'
                                        "head_dim = 8\nseq_len = 8\n")
    assert main(args) == 2
    assert words in one_error(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]  # nothing written


@pytest.mark.process
def test_check_fails_when_a_named_plugin_does_not_load(cli, tmp_path: Path):
    """A --plugin that raises on import: the built-ins it was checked beside passed and the
    check said "passed" (exit 0) with the plugin's kernel never run; now it fails, saying why,
    and run.json keeps the failure."""
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "broken.py").write_text("def (\n")
    proc = cli("check", "-s", "tiny.toml", "--plugin", "broken.py", "-b", "numpy-naive",
               "--device", "cpu", "--out", "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "check failed: the plugin " in proc.stderr and "SyntaxError" in proc.stderr
    assert [r["status"] for r in records(tmp_path / "out")] == ["ok", "ok"]
    meta = json.loads((tmp_path / "out" / "run.json").read_text())
    assert meta["plugin_failures"][0][0] == str(tmp_path / "broken.py")


@pytest.mark.process
def test_a_plugin_path_that_is_no_plugin_says_what_it_is(cli, tmp_path: Path):
    """A folder or a file that is not Python was "no such file" (it exists); an empty folder
    given as a module name imported as an empty package with no backends, silently."""
    (tmp_path / "tiny.toml").write_text("x = 1\n")
    (tmp_path / "empty").mkdir()
    for plugin, words in [("tiny.toml", "a file that is not Python (.py), and no module"),
                          ("/", "plugin '/': a folder, not a .py file"),
                          ("empty", "plugin 'empty': a folder with no __init__.py")]:
        proc = cli("list", "--plugin", plugin)
        assert proc.returncode == 2 and words in one_error(proc.stderr), (plugin, proc.stderr)


def test_a_run_given_twice_through_a_link_is_refused(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r").mkdir()
    (tmp_path / "also-r").symlink_to(tmp_path / "r")
    assert main(["recommend", "r", "also-r"]) == 2
    assert "is given twice: each run is counted once" in one_error(capsys.readouterr().err)
