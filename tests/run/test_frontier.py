"""run --frontier: doubling per backend until a failure or the limit, recorded in frontier.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnbench.case import Case
from attnbench.results import read_run
from attnbench.run.frontier import Chain, _advance, doubled, starts
from attnbench.run.plan import Plan


def test_doubling_keeps_a_decode_query_single():
    c = Case(1, 2, 2, 64, 64, 16)
    assert (doubled(c).seq_q, doubled(c).seq_kv) == (128, 128)
    d = Case(1, 2, 2, 1, 64, 16)
    assert (doubled(d).seq_q, doubled(d).seq_kv) == (1, 128)


def test_doubling_doubles_documents_and_lengths_and_stops_where_a_case_cannot_double():
    docs = Case(1, 2, 2, 32, 32, 8, mask="causal", doc_lens=(5, 11, 16))
    assert doubled(docs).doc_lens == (10, 22, 32)
    lens = Case(2, 2, 2, 1, 40, 8, q_lens=(1, 0), kv_lens=(40, 9))
    assert (doubled(lens).q_lens, doubled(lens).kv_lens) == ((1, 0), (80, 18))
    chain = Chain("s", _B(), Case(1, 2, 2, 2**30, 2**30, 8))
    _advance(chain, {"status": "ok"}, limit=2**40)
    assert chain.status == "limit" and "cannot double" in chain.reason


def test_starts_take_the_smallest_case_of_each_variant():
    cases = [Case(1, 2, 2, n, n, 16, mask=m) for m in ("none", "causal") for n in (64, 32, 128)]
    got = starts(Plan([("s", c) for c in cases], []))
    assert sorted((c.mask, c.seq_kv) for _, c in got) == [("causal", 32), ("none", 32)]


class _B:
    name = "b"


def test_chain_stops_at_a_failure_or_the_limit():
    chain = Chain("s", _B(), Case(1, 2, 2, 32, 32, 16))
    rec = {"status": "ok"}
    _advance(chain, rec, limit=64)
    assert (chain.reached, chain.case.seq_kv, chain.status) == (32, 64, "running")
    _advance(chain, {"status": "mismatch"}, limit=64)  # wrong but ran: still reached
    assert (chain.reached, chain.status, chain.stopped_at) == (64, "limit", None)
    failing = Chain("s", _B(), Case(1, 2, 2, 32, 32, 16))
    rec = {"status": "oom", "error": "MemoryError: too big"}
    _advance(failing, rec, limit=1024)
    assert (failing.reached, failing.stopped_at, failing.status) == (None, 32, "oom")
    assert rec["frontier_stop"] == "oom" and "too big" in failing.reason


@pytest.mark.process
def test_frontier_run_stops_where_the_backend_runs_out_of_memory(cli, tmp_path: Path,
                                                                   plugin_path):
    scenario = tmp_path / "grow.toml"
    scenario.write_text('name = "grow"\ndescription = "x"\n[base]\nbatch = 1\nheads = 2\n'
                        'head_dim = 8\nseq_len = 32\n')
    proc = cli("run", "--frontier", "--frontier-max", "1024", "-s", str(scenario),
               "-b", "test-hog", "--plugin", plugin_path("hog.py"), "--budget", "0.02",
               "--timeout", "77", "--out", "fr")
    assert proc.returncode == 0, proc.stderr
    stops = json.loads((tmp_path / "fr" / "frontier.json").read_text())
    assert len(stops) == 1
    assert stops[0]["backend"] == "test-hog"
    assert (stops[0]["reached_seq_kv"], stops[0]["stopped_at_seq_kv"]) == (32, 64)
    assert stops[0]["stop"] == "oom"
    meta, records = read_run(tmp_path / "fr")
    assert meta["finished"] is True and meta["timeout_s"] == 77.0  # --timeout reached the run
    assert meta["frontier"]["max_seq_kv"] == 1024
    assert (tmp_path / "fr" / "logs" / "test-hog.log").is_file()  # worker logs are kept
    assert [(r["seq_kv"], r["status"]) for r in records] == [(32, "ok"), (64, "oom")]
    assert records[-1]["frontier_stop"] == "oom"
    from attnbench.report.write import write_report

    md = write_report([tmp_path / "fr"], tmp_path / "rep", "test-hog").markdown.read_text()
    frontier_rows = md.split("## Frontier")[1].split("##")[0]
    assert "| test-hog |" in frontier_rows and "| 32 | 64 | oom |" in frontier_rows


@pytest.mark.process
def test_frontier_over_documents_climbs_and_finishes(cli, tmp_path: Path):
    """doc_lens must fill the sequence: the climb doubles the documents with it (it was a
    ValueError traceback with run.json left neither finished nor stopped)."""
    (tmp_path / "d.toml").write_text('[base]\nbatch = 1\nheads = 2\nhead_dim = 8\n'
                                     'seq_len = 32\nmask = "causal"\ndoc_lens = [5, 11, 16]\n')
    proc = cli("run", "--frontier", "--frontier-max", "128", "-s", str(tmp_path / "d.toml"),
               "-b", "numpy-naive", "--budget", "0.02", "--out", "fr")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    meta, records = read_run(tmp_path / "fr")
    assert meta["finished"] is True
    assert [(r["seq_kv"], r["doc_lens"], r["status"]) for r in records] == [
        (32, [5, 11, 16], "ok"), (64, [10, 22, 32], "ok"), (128, [20, 44, 64], "ok")]
    stops = json.loads((tmp_path / "fr" / "frontier.json").read_text())
    assert [(s["reached_seq_kv"], s["stop"]) for s in stops] == [(128, "limit")]


@pytest.mark.process
def test_an_interrupted_frontier_run_says_so_and_is_not_resumed(cli, tmp_path: Path,
                                                                 plugin_path):
    """SIGTERM mid-climb: exit 130, run.json stopped, frontier.json says "interrupted" (not
    "running"), the advice names no --resume, and --resume of it is refused in one line
    (it used to run the ordinary plan and mark the run finished)."""
    (tmp_path / "g.toml").write_text('[base]\nbatch = 1\nheads = 2\nhead_dim = 8\n'
                                     'seq_len = 32\n')
    env = {**os.environ, "ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen(  # test-sleeps sleeps 60 s before the case of 128 keys
        [sys.executable, "-m", "attnbench", "run", "--frontier", "--frontier-max", "1024",
         "-s", "g.toml", "-b", "test-sleeps", "--plugin", plugin_path("sleeps.py"),
         "--budget", "0.02", "--out", "fr"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    records = tmp_path / "fr" / "records.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and (
            not records.exists() or len(records.read_text().splitlines()) < 2):
        time.sleep(0.1)
    time.sleep(0.5)  # into the case of 128 keys
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" not in err and "cannot be resumed" in err, err
    meta, recs = read_run(tmp_path / "fr")
    assert meta["finished"] is False and meta["stopped"] == "interrupted by SIGTERM"
    assert [r["seq_kv"] for r in recs] == [32, 64]
    stops = json.loads((tmp_path / "fr" / "frontier.json").read_text())
    assert [(s["reached_seq_kv"], s["stopped_at_seq_kv"], s["stop"]) for s in stops] == [
        (64, 128, "interrupted")]
    again = cli("run", "--resume", "fr", "--plugin", plugin_path("sleeps.py"))
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert "is a --frontier run" in again.stderr
    assert read_run(tmp_path / "fr")[0]["finished"] is False
