"""Exports of a real run: Bencher's BMF and an asv results folder that asv itself loads (where
asv is installed: it is in the dev extra) with the medians and quartiles of the records."""

from __future__ import annotations

import json

import pytest

from attnbench.history.export import asv_name, asv_results, bencher_metrics, timed
from attnbench.history.store import quartiles
from attnbench.results import read_run


def test_bencher_metrics_are_the_medians_in_ns(real_run):
    _, records = read_run(real_run("base"))
    bmf = bencher_metrics(records)
    assert len(bmf) == len(timed(records)) > 0
    for rec, median in timed(records):
        lat = bmf[f"{rec['scenario']}/{rec['case_id']}/{rec['backend']}"]["latency"]
        assert lat["value"] == pytest.approx(median * 1e6)
        assert lat["lower_value"] <= lat["value"] <= lat["upper_value"]


def test_asv_results_are_written_and_added_to(real_run, tmp_path):
    meta, records = read_run(real_run("base"))
    first = asv_results(meta, records, tmp_path, "c1")
    second = asv_results(meta, records, tmp_path, "c2")
    assert first.parent == second.parent and first != second
    bench = json.loads((tmp_path / "benchmarks.json").read_text())
    assert bench["version"] == 2 and len(bench) == len(timed(records)) + 1
    machine = json.loads((first.parent / "machine.json").read_text())
    assert machine["version"] == 1 and machine["machine"] == first.parent.name
    data = json.loads(second.read_text())
    assert data["commit_hash"] == "c2" and set(data["results"]) == set(bench) - {"version"}


def test_asv_loads_what_was_written(real_run, tmp_path):
    results = pytest.importorskip("asv.results")
    meta, records = read_run(real_run("base"))
    loaded = results.Results.load(str(asv_results(meta, records, tmp_path, "abc123")))
    assert loaded.commit_hash == "abc123"
    for rec, median in timed(records):
        name = asv_name(rec)
        assert name in set(loaded.get_all_result_keys())
        assert loaded.get_result_value(name, []) == [pytest.approx(median / 1e3)]
        q25, q75 = quartiles(rec["timing"])
        stats = loaded.get_result_stats(name, [])[0]
        assert stats["q_25"] == pytest.approx(q25 / 1e3) and stats["q_75"] == pytest.approx(
            q75 / 1e3)

