"""The best-known roof cache: per machine key, only raised, off by env, damage tolerated."""

from __future__ import annotations

import json
from pathlib import Path

from attnbench.measure import roofcache

ENV = {"host": "h", "cpu": "EPYC", "cores": 2, "threads": {"affinity_cores": 2},
       "gpu": None, "versions": {"torch": "2.13.0", "numpy": "2.4"}}


def test_key_names_what_sets_a_roof():
    key = roofcache.machine_key(ENV, None)
    assert key == "h | EPYC | 2 cores | threads all | gpu none | torch 2.13.0 | numpy 2.4"
    assert roofcache.machine_key(ENV, 1) != key  # one thread has another roof


def test_only_a_higher_roof_replaces_the_stored_one(tmp_path: Path):
    path = tmp_path / "roofs.json"
    key = roofcache.machine_key(ENV, None)
    roofcache.remember(key, [{"cpu": {"float32": 1.7e11}}, {"cpu": {"float32": 1.5e11}}],
                       "run-1", "t1", path)
    roofcache.remember(key, [{"cpu": {"float32": 0.3e11, "float64": 0.8e11}}], "run-2", "t2", path)
    best = roofcache.best_known(key, path)
    assert best["cpu"]["float32"] == {"flops_per_s": 1.7e11, "run_id": "run-1", "at": "t1"}
    assert best["cpu"]["float64"]["run_id"] == "run-2"
    assert roofcache.best_known("another machine", path) == {}


def test_the_env_var_moves_or_disables_the_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(roofcache.ENV, str(tmp_path / "x.json"))
    assert roofcache.cache_path() == tmp_path / "x.json"
    roofcache.remember("k", [{"cpu": {"float32": 1e11, "unmeasured": {"a": "b"}}}], None, "t")
    assert json.loads((tmp_path / "x.json").read_text())["k"]["cpu"]["float32"]["flops_per_s"]
    monkeypatch.setenv(roofcache.ENV, "off")
    assert roofcache.cache_path() is None and roofcache.best_known("k") == {}
    roofcache.remember("k", [{"cpu": {"float32": 1e12}}], None, "t")  # nothing written


def test_a_damaged_cache_is_started_afresh(tmp_path: Path):
    path = tmp_path / "roofs.json"
    path.write_text("{not json")
    assert roofcache.best_known("k", path) == {}
    roofcache.remember("k", [{"cpu": {"float32": 2e11}}], "r", "t", path)
    assert roofcache.best_known("k", path)["cpu"]["float32"]["flops_per_s"] == 2e11


def test_a_cache_of_the_wrong_shape_is_ignored_and_repaired(tmp_path: Path):
    """Entries that are not {device: {dtype: {"flops_per_s": > 0}}} (a hand edit) are dropped:
    once they made every later run's busy verdict fail with an AttributeError."""
    path = tmp_path / "roofs.json"
    path.write_text(json.dumps({"k": {"cpu": {"float32": 5, "float64": {"flops_per_s": "x"}},
                                      "cuda": 3}}))
    assert roofcache.best_known("k", path) == {}
    roofcache.remember("k", [{"cpu": {"float32": 2e11}}], "r", "t", path)
    assert json.loads(path.read_text())["k"] == {
        "cpu": {"float32": {"flops_per_s": 2e11, "run_id": "r", "at": "t"}}}
