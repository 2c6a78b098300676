"""run --frontier: doubling per backend until a failure or the limit, recorded in frontier.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnbench.case import Case
from attnbench.results import read_run
from attnbench.run.frontier import Chain, _advance, doubled, starts
from attnbench.run.runner import Plan


def test_doubling_keeps_a_decode_query_single():
    c = Case(1, 2, 2, 64, 64, 16)
    assert (doubled(c).seq_q, doubled(c).seq_kv) == (128, 128)
    d = Case(1, 2, 2, 1, 64, 16)
    assert (doubled(d).seq_q, doubled(d).seq_kv) == (1, 128)


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
