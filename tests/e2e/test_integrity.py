"""Verdicts no plugin can fake: made in a process that imports no plugin, on timed calls too,
on rows drawn after the output exists; impossible throughput fails (real plugins, real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.process

TINY = """name = "tiny"
description = "two small float32 cases"
[base]
batch = 1
heads = 2
head_dim = 16
dtype = "float32"
[sweep]
mask = ["none", "causal"]
seq_len = [40]
"""


def _scenario(tmp_path: Path, text: str = TINY) -> str:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return str(path)


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]


def _by_backend(out: Path) -> dict[str, list[dict]]:
    got: dict[str, list[dict]] = {}
    for r in _records(out):
        got.setdefault(r["backend"], []).append(r)
    return got


def test_wrong_timed_calls_are_mismatches_in_run_and_check(cli, plugin_path, tmp_path):
    """Right on the first call, zeros after: check (its second call) and run (timed calls)."""
    plugin = plugin_path("garbage_when_timed.py")
    for verb in ("check", "run"):
        out = tmp_path / verb
        proc = cli(verb, "-s", _scenario(tmp_path), "-b", "test-garbage-when-timed",
                   "--plugin", plugin, "--budget", "0.05", "--out", str(out))
        recs = _records(out)
        assert recs and all(r["status"] == "mismatch" for r in recs), (verb, proc.stderr[-800:])
        names = [o["name"] for r in recs for o in r["agreement"]["outputs"] if not o["passed"]]
        assert names and all("timed call" in n for n in names), names
        assert "star" not in proc.stdout and proc.returncode == (1 if verb == "check" else 0)


def test_a_backend_computing_only_when_checked_fails_when_timed(cli, plugin_path, tmp_path):
    """It passes --repeat 3 --require-deterministic in check (every call there is checked),
    and is a mismatch in run: the timed calls' outputs are verified."""
    plugin = plugin_path("computes_when_checked.py")
    args = ("-s", _scenario(tmp_path), "-b", "test-computes-when-checked", "--plugin", plugin)
    run = cli("run", *args, "--budget", "0.05", "--out", str(tmp_path / "run"))
    recs = _records(tmp_path / "run")
    assert recs and all(r["status"] == "mismatch" for r in recs), run.stderr[-800:]
    assert all(r["agreement"]["timed_calls"]["compared"] >= 1 for r in recs)


def test_tensor_subclasses_and_modes_lying_when_read_are_mismatches(cli, plugin_path, tmp_path):
    """A subclass that computes its output only when copied out (zeros, and no work, when
    timed), one whose dtype says float32 over float64 values, and plain zeros with a
    TorchFunctionMode or TorchDispatchMode left entered that computes them on `detach`: all were
    ok (the first at 0.001 ms); only a plain tensor is read now, with neither kind of mode."""
    out = tmp_path / "run"
    backends = ("test-lazy-tensor", "test-dtype-tensor", "test-mode-lazy", "test-dispatch-lazy",
                "torch-naive")  # check: its calls' outputs are read as the timed ones are
    proc = cli("check", "-s", _scenario(tmp_path), *(f"-b{b}" for b in backends), "--plugin",
               plugin_path("tensor_subclasses.py"), "--out", str(out))
    got = _by_backend(out)
    assert {r["status"] for r in got["torch-naive"]} == {"ok"}, proc.stderr[-800:]
    for name in backends[:4]:
        assert {r["status"] for r in got[name]} == {"mismatch"}, got[name][0].get("error")
    for name in backends[:2]:
        assert all("a subclass of torch.Tensor" in json.dumps(r["agreement"]) for r in got[name])


def test_a_plugin_replacing_the_exchange_folder_costs_only_its_own_cases(cli, plugin_path,
                                                                          tmp_path):
    """It deletes its run's exchange folder and puts a file there: the run used to stop with
    `Not a directory` (exit 2, no record); now the folder is made again for the next task."""
    out = tmp_path / "run"
    proc = cli("check", "-s", _scenario(tmp_path), "-b", "test-replaces-exchange", "-b",
               "numpy-naive", "--plugin", plugin_path("replaces_exchange.py"), "--out", str(out))
    got = _by_backend(out)
    assert proc.returncode == 1 and len(got["numpy-naive"]) == 2, proc.stderr[-800:]
    assert {r["status"] for r in got["numpy-naive"]} == {"ok"}
    assert {r["status"] for r in got["test-replaces-exchange"]} == {"error"}


def test_the_compared_rows_are_not_predictable(cli, plugin_path, tmp_path):
    """Beyond the oracle budget (8192², d256: half the rows compared) a backend computing only
    the rows an earlier attnbench would have drawn (run.json's seed, records' seeds) fails."""
    text = TINY.replace("seq_len = [40]", "seq_len = [8192]").replace(
        'mask = ["none", "causal"]', 'mask = ["none"]').replace("heads = 2", "heads = 1").replace(
        "head_dim = 16", "head_dim = 256")
    out = tmp_path / "big"
    proc = cli("check", "-s", _scenario(tmp_path, text), "-b", "test-predicts-rows",
               "--plugin", plugin_path("predicts_rows.py"), "--out", str(out), timeout=600)
    rec, = _records(out)
    assert rec["status"] == "mismatch", proc.stderr[-800:]
    assert rec["agreement"]["rows_checked"] != "all", rec["agreement"]["rows_checked"]
    assert "check_seed" not in json.loads((out / "run.json").read_text())["config"]


def test_a_plugin_cannot_rewrite_verdicts_from_its_import(cli, plugin_path, tmp_path):
    """It patches the comparison and the record builder, and spoils numpy-naive and torch-naive,
    in every process that imports it: none of them makes a verdict."""
    out = tmp_path / "out"
    proc = cli("check", "-s", _scenario(tmp_path), "-b", "numpy-naive", "-b", "torch-naive",
               "-b", "test-patches-verdicts", "--plugin", plugin_path("patches_verdicts.py"),
               "--out", str(out))
    got = _by_backend(out)
    assert proc.returncode == 1, proc.stderr[-800:]
    assert {r["status"] for r in got["test-patches-verdicts"]} == {"mismatch"}
    assert {r["status"] for r in got["numpy-naive"] + got["torch-naive"]} == {"ok"}


def test_a_mismatch_stays_a_mismatch_when_a_later_call_is_unsupported(cli, plugin_path,
                                                                        tmp_path):
    out = tmp_path / "out"
    proc = cli("check", "-s", _scenario(tmp_path), "-b", "test-unsupported-after-mismatch",
               "-b", "test-unsupported-after-ok",
               "--plugin", plugin_path("unsupported_after_mismatch.py"), "--out", str(out))
    got = _by_backend(out)
    assert proc.returncode == 1
    assert {r["status"] for r in got["test-unsupported-after-mismatch"]} == {"mismatch"}
    after_ok = got["test-unsupported-after-ok"]
    assert {r["status"] for r in after_ok} == {"error"}
    assert all("after its first call had returned an output" in r["error"] for r in after_ok)


def test_a_throughput_above_the_roof_is_a_failure(cli, plugin_path, tmp_path):
    """A plugin that fakes its worker's timer: correct outputs, 1e6 x faster claimed."""
    out = tmp_path / "out"
    proc = cli("run", "-s", _scenario(tmp_path), "-b", "numpy-naive", "-b", "test-fakes-timer",
               "--plugin", plugin_path("fakes_timer.py"), "--budget", "0.05", "--out", str(out))
    got = _by_backend(out)
    assert {r["status"] for r in got["numpy-naive"]} == {"ok"}, proc.stderr[-800:]
    faked = got["test-fakes-timer"]
    assert {r["status"] for r in faked} == {"error"}
    assert all("impossible throughput" in r["error"] for r in faked)
    assert all("impossible_throughput" in r["flags"] for r in faked)


def test_no_plugin_is_imported_where_verdicts_are_made(plugin_path, tmp_path):
    """The run's own process never imports a plugin; a backend's worker imports only its own."""
    importers = tmp_path / "importers"
    env = {**os.environ, "ATTNBENCH_TEST_IMPORTERS": str(importers)}
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnbench", "check", "-s", _scenario(tmp_path),
         "-b", "numpy-naive", "-b", "test-noted", "--plugin", plugin_path("notes_importers.py"),
         "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-800:]
    pids = {int(x) for x in importers.read_text().split()}
    got = _by_backend(out)
    assert proc.pid not in pids
    assert {r["worker"]["pid"] for r in got["test-noted"]} <= pids
    assert not {r["worker"]["pid"] for r in got["numpy-naive"]} & pids


def test_an_observer_thread_that_never_ends_does_not_hang_the_run(cli, plugin_path, tmp_path):
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = cli("check", "-s", _scenario(tmp_path), "-b", "numpy-naive",
               "--plugin", plugin_path("observer_thread.py"), "--out", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert "check passed" in proc.stdout
    assert time.monotonic() - t0 < 60
    assert len(_records(out)) == 2


# alone: its plugin attacks every attnbench exchange folder of this user, so run beside other
# tests it zeroes their runs' outputs too (seen as their mismatches and errors under xdist)
@pytest.mark.alone
def test_a_backend_cannot_touch_another_backends_output_files(cli, plugin_path, tmp_path):
    """Each task writes into a new folder of an unguessable name, read by attnbench at once;
    the other workers are stopped meanwhile: zeroing files and planting FIFOs change nothing."""
    out = tmp_path / "out"
    proc = cli("run", "-s", _scenario(tmp_path), "-b", "numpy-naive",
               "-b", "test-tampers-exchange", "-b", "torch-naive", "--budget", "0.05",
               "--plugin", plugin_path("tampers_exchange.py"), "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    got = _by_backend(out)  # it zeroes its own first output too: that one is its own doing
    assert {r["status"] for r in got["numpy-naive"] + got["torch-naive"]} == {"ok"}
    assert len(got["test-tampers-exchange"]) == 2


def _refused(rec: dict) -> str:
    """The error of a record's first output (a refused array fails with the reason)."""
    return rec["agreement"]["outputs"][0].get("error") or ""


def test_a_fifo_in_place_of_an_output_file_fails_that_backend_alone(cli, plugin_path, tmp_path):
    """A worker that swaps its output file for a FIFO: the parent opens nothing that blocks
    (O_NONBLOCK, O_NOFOLLOW, a regular file or refused), the run ends, the others are ok."""
    out = tmp_path / "out"
    proc = cli("run", "-s", _scenario(tmp_path), "-b", "numpy-naive", "-b", "test-ships-fifo",
               "--budget", "0.05", "--plugin", plugin_path("ships_fifo.py"), "--out", str(out),
               timeout=120)
    assert proc.returncode == 0, proc.stderr[-800:]
    got = _by_backend(out)
    assert {r["status"] for r in got["numpy-naive"]} == {"ok"}
    for rec in got["test-ships-fifo"]:
        assert rec["status"] == "mismatch"
        assert "is not a regular file" in _refused(rec) and "\n" not in _refused(rec)


def test_a_sparse_terabyte_output_is_refused_before_it_is_read(cli, plugin_path, tmp_path):
    """A worker ships a 1 TiB sparse .npy whose header and reply claim that shape: refused from
    its header (not the case's shape) without reading it; the round's other records are kept."""
    out = tmp_path / "out"
    proc = cli("run", "-s", _scenario(tmp_path), "-b", "numpy-naive",
               "-b", "test-ships-sparse", "-b", "torch-naive", "--budget", "0.05",
               "--plugin", plugin_path("ships_sparse.py"), "--out", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert "Traceback" not in proc.stderr
    got = _by_backend(out)
    assert {r["status"] for r in got["numpy-naive"] + got["torch-naive"]} == {"ok"}
    for rec in got["test-ships-sparse"]:
        assert rec["status"] == "mismatch"
        assert "(262144, 1048576), not the case's (1, 2, 40, 16)" in _refused(rec)


def _gone(pid: int) -> bool:
    """Whether a process has ended (no such process, or a zombie not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("escaper", ["test-escapes-pause", "test-escapes-by-double-fork"])
def test_a_process_escaping_the_pause_is_killed_before_the_next_task(cli, plugin_path,
                                                                       tmp_path, escaper):
    """A worker starts a process in a new session (the pause of its group misses it) that
    zeroes the exchange folders' files and would outlive the run: it is killed before the next
    backend's task, named in run.json, and the other backends' records are right. Forked
    twice, it is orphaned at once (never seen below its worker): the run's process adopts it."""
    out, pidfile = tmp_path / "out", tmp_path / "pids"
    try:
        proc = cli("run", "-s", _scenario(tmp_path), "-b", "numpy-naive",
                   "-b", escaper, "-b", "torch-naive", "--budget", "0.05",
                   "--plugin", plugin_path("escapes_pause.py"), "--out", str(out),
                   env={"ATTNBENCH_TEST_PIDFILE": str(pidfile)}, timeout=300)
        pids = [int(x) for x in pidfile.read_text().split()]
        assert proc.returncode == 0, proc.stderr[-800:]
        assert len(pids) == 2 and all(_gone(p) for p in pids)
        got = _by_backend(out)
        assert {r["status"] for r in got["numpy-naive"] + got["torch-naive"]} == {"ok"}
        contention = json.loads((out / "run.json").read_text())["contention"]
        killed = contention.get("killed_escaped", [])
        assert {k["pid"] for k in killed} == set(pids), (contention, proc.stderr[-2000:])
        assert all(k["when"].startswith("before ") and "torch-naive" in k["when"]
                   for k in killed)
    finally:
        for pid in [int(x) for x in pidfile.read_text().split()] if pidfile.exists() else []:
            if not _gone(pid):
                os.kill(pid, 9)
