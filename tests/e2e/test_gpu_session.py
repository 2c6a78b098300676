"""benchmarks/gpu_session.sh rehearsed on the CPU: every step starts, caps hold, results packed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"
STEPS = ("facts", "setup", "list", "smoke", "backward", "crosscheck", "kernels", "sweep", "report",
         "flex", "variants", "bench", "twice")
GROUPS = ("env", "checks", "timer", "sweep", "flex", "variants", "bench")
LINE = re.compile(r"^\[[\d:]+\] step ([\w-]+): (ok|STOPPED at its cap|SKIPPED|FAILED|not asked)")

# runs the CLI, its workers and torch.compile, each step against its time cap. Not `alone`: a
# step that meets its cap on a loaded machine is still packed and passes (facts, set-up and list
# take seconds against caps of 10-30 s), so it runs beside the other test files.
pytestmark = pytest.mark.process


def session(tmp_path: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true"}
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), *args, "--work", str(tmp_path / "work"),
                           "--out", str(tmp_path / "out")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def verdicts(summary: str) -> dict[str, str]:
    return {m[1]: m[2] for m in map(LINE.match, summary.splitlines()) if m}


@pytest.mark.skipif(shutil.which("timeout") is None, reason="coreutils' timeout is missing")
def test_the_tiny_rehearsal_runs_every_step_and_packs_them_and_a_second_call_resumes(tmp_path):
    proc = session(tmp_path, "--device", "cpu", "--tiny", "--total", "300")
    summary = (tmp_path / "out" / "summary.log").read_text()
    assert proc.returncode == 0, summary + proc.stderr[-2000:]
    seen = verdicts(summary)
    # Every step started, in order, none skipped and none failed; on a loaded machine a step may
    # meet its cap (flex always does on a CPU: it compiles), which still packs what it wrote.
    # make bench stopped at its cap still wrote records: its report is made from them
    assert list(seen) == [*STEPS[:-1], "bench-report", "twice"], summary
    assert set(seen.values()) <= {"ok", "STOPPED at its cap"}, summary
    assert all(seen[s] == "ok" for s in ("facts", "setup", "list")), summary
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert out == sorted([*(f"{g}.tar.gz" for g in GROUPS), "summary.log"])  # 8 files at most
    with tarfile.open(tmp_path / "out" / "env.tar.gz") as tar:
        names = tar.getnames()
    assert {"env/facts.log", "env/setup.log", "env/list.log"} <= set(names)
    with tarfile.open(tmp_path / "out" / "checks.tar.gz") as tar:
        names = tar.getnames()
        records = tar.extractfile("checks/smoke/records.jsonl")
        assert records is not None and records.read().count(b"\n") > 0
    assert {"checks/smoke.log", "checks/backward/records.jsonl"} <= set(names)
    with tarfile.open(tmp_path / "out" / "sweep.tar.gz") as tar:
        names = tar.getnames()
    assert "sweep/run/run.json" in names and not any(n.endswith(".svg") for n in names)
    # the same sweep twice back to back (compared, where both ended within the step's cap)
    assert "sweep/twice-a/run.json" in names, names
    assert "rehearsal" in summary.lower() or "REHEARSAL" in (
        tmp_path / "work" / "timer" / "crosscheck.log").read_text()
    resumed_in_a_second_call(tmp_path)  # with the same --work, as a second device call


def test_a_short_total_skips_steps_and_says_so(tmp_path):
    proc = session(tmp_path, "--device", "cpu", "--tiny", "--total", "30", timeout=120)
    summary = (tmp_path / "out" / "summary.log").read_text()
    seen = verdicts(summary)
    assert proc.returncode == 0, summary
    assert list(seen) == list(STEPS) and "SKIPPED" in seen.values(), summary
    assert re.search(r"step \w+: SKIPPED, -?\d+s of the total left \(it needs \d+s\)", summary)


def test_only_runs_the_steps_asked_for(tmp_path):
    """--only: facts, set-up and list always run; the other steps run only when named."""
    proc = session(tmp_path, "--device", "cpu", "--tiny", "--only", "kernels", timeout=200)
    summary = (tmp_path / "out" / "summary.log").read_text()
    assert proc.returncode == 0, summary
    seen = verdicts(summary)
    ran = {"facts", "setup", "list", "kernels"}
    assert {s for s, v in seen.items() if v != "not asked"} <= ran | {"report"}, summary
    assert all(seen[s] == "ok" for s in ran), summary
    assert all(seen[s] == "not asked" for s in STEPS if s not in ran and s != "report"), summary


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "tpu"], "--device must be cuda or cpu"),
    (["--total", "ten"], "--total must be a whole number"),
    (["--tiny"], "--tiny is the CPU rehearsal"),
    (["--frobnicate"], "unknown option --frobnicate"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    proc = session(tmp_path, *args, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def resumed_in_a_second_call(tmp_path: Path) -> None:
    """A session split over two device calls: the bench the first call stopped at its cap goes
    on in the second (same --work), with its records kept, rather than starting again."""
    bench = tmp_path / "work" / "bench" / "run"
    assert (bench / "run.json").is_file()
    before = (bench / "records.jsonl").read_text().count("\n")
    second = session(tmp_path, "--device", "cpu", "--tiny", "--only", "bench", timeout=200)
    summary = (tmp_path / "out" / "summary.log").read_text()
    assert second.returncode == 0, summary
    log = (tmp_path / "work" / "bench" / "bench.log").read_text()
    assert "resuming the run an earlier call left in" in log, log[-2000:]
    assert "step bench: " in summary and "attn run " + str(bench) in summary, summary
    assert (bench / "records.jsonl").read_text().count("\n") >= before
    assert verdicts(summary)["bench-report"] == "ok", summary  # the report is made again
