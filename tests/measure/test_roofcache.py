"""The best-known roof cache: per machine key, only raised, off by env, damage tolerated."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from attnbench.measure import ceiling, roofcache

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
    stored = json.loads(path.read_text())["k"]
    assert list(stored) == ["cpu"] and list(stored["cpu"]) == ["float32"]
    assert stored["cpu"]["float32"]["flops_per_s"] == 2e11 and stored["cpu"]["float32"]["sig"]


def test_forged_entries_are_ignored_and_implausible_roofs_never_stored(tmp_path: Path):
    """A plugin stored 1e18 FLOP/s and every later run was busy: an entry without this cache's
    signature, a signed one whose value was edited, and a signed one above the ceiling are
    all ignored when read; remember() refuses a roof above the ceiling and says so."""
    path = tmp_path / "roofs.json"
    roofcache.remember("k", [{"cpu": {"float32": 2e11}}], "r", "t", path)
    key_file = roofcache.secret_path(path)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    data["k"]["cpu"]["float32"]["flops_per_s"] = 3e11  # edited: the signature no longer fits
    data["k"]["cpu"]["float64"] = {"flops_per_s": 1e11, "run_id": "x", "at": "t"}  # unsigned
    path.write_text(json.dumps(data))
    assert roofcache.best_known("k", path) == {}
    secret = bytes.fromhex(key_file.read_text())
    held = {"flops_per_s": 1e18, "run_id": "evil", "at": "t"}  # signed with the real secret
    held["sig"] = roofcache._signature(secret, "k", "cpu", "float32", held)
    path.write_text(json.dumps({"k": {"cpu": {"float32": held}}}))
    assert roofcache.best_known("k", path) == {}  # above what this CPU can reach
    refused = roofcache.remember("k", [{"cpu": {"float32": 1e18}}], "evil", "t", path)
    assert len(refused) == 1 and "above what this cpu can reach" in refused[0]
    assert roofcache.best_known("k", path) == {}
    assert roofcache.remember("k", [{"cpu": {"float32": 2e11}}], "r", "t", path) == []
    assert roofcache.best_known("k", path)["cpu"]["float32"] == {
        "flops_per_s": 2e11, "run_id": "r", "at": "t"}


def test_a_missing_secret_trusts_nothing_and_a_new_one_is_made(tmp_path: Path):
    path = tmp_path / "roofs.json"
    roofcache.remember("k", [{"cpu": {"float32": 2e11}}], "r", "t", path)
    os.remove(roofcache.secret_path(path))  # the cache copied without its secret
    assert roofcache.best_known("k", path) == {}
    roofcache.remember("k", [{"cpu": {"float32": 1e11}}], "r2", "t2", path)
    assert roofcache.best_known("k", path)["cpu"]["float32"]["run_id"] == "r2"


def test_the_ceiling_is_above_the_real_roof_and_far_below_a_forged_one():
    """The CPU ceiling of this machine is above a real measured matmul roof in every dtype
    the roof measures, and below 1e18; the GPU table from recorded nvidia-smi output."""
    from attnbench.measure.roof import measure_roofs

    real = measure_roofs("cpu", ["float32", "float64", "bfloat16"], seconds=0.2)
    for dtype in ("float32", "float64", "bfloat16"):
        top = ceiling.flops_ceiling("cpu", dtype)
        assert real[dtype] is not None and real[dtype] < top < 1e18, (dtype, real, top)
    h200 = "9.0\n9.0\n"  # `nvidia-smi --query-gpu=compute_cap --format=csv,noheader`
    assert ceiling.parse_compute_cap(h200) == (9, 0)
    assert ceiling.parse_compute_cap("[N/A]\n") is None
    assert 989e12 < ceiling.cuda_ceiling("bfloat16", (9, 0)) < 2e15  # H200: 989 T dense
    assert 67e12 < ceiling.cuda_ceiling("float64", (9, 0))  # H200 FP64 tensor cores
    assert 495e12 < ceiling.cuda_ceiling("float32", (9, 0))  # TF32
    assert 1e18 > ceiling.cuda_ceiling("bfloat16", None) > 2.5e15


def test_the_clock_comes_from_cpufreq_else_cpuinfo(tmp_path: Path):
    freq = tmp_path / "cpu" / "cpu3" / "cpufreq"
    freq.mkdir(parents=True)
    (freq / "cpuinfo_max_freq").write_text("3700000\n")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu MHz\t\t: 2600.000\n")
    assert ceiling.max_clock_ghz(str(tmp_path / "cpu"), str(info)) == pytest.approx(3.7)
    assert ceiling.max_clock_ghz(str(tmp_path / "none"), str(info)) == pytest.approx(3.9)
    assert ceiling.max_clock_ghz(str(tmp_path / "none"), str(tmp_path / "no")) is None


@pytest.mark.process
def test_a_plugin_forging_roofs_cannot_make_later_runs_busy(cli, tmp_path: Path, plugin_path):
    """A real plugin writes 1e18 FLOP/s into the cache (unsigned, and signed with the secret
    it reads beside it) and patches the roof measurement in every process it is imported
    into: the roofs come from a roof worker that imports no plugin, the forged entries are
    purged, and a later run sees no forged best-known roof."""
    toml = tmp_path / "s.toml"
    toml.write_text("[base]\nbatch = 1\nheads = 2\nhead_dim = 16\nseq_len = 32\n")
    env = {"ATTNBENCH_ROOF_CACHE": str(tmp_path / "roofs.json")}
    first = cli("run", "-s", str(toml), "-b", "numpy-naive", "--budget", "0.05",
                "--out", "first", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    proc = cli("run", "-s", str(toml), "-b", "test-forges-roof", "--plugin",
               plugin_path("forges_roof.py"), "--budget", "0.05", "--out", "forged", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((tmp_path / "forged" / "run.json").read_text())
    assert 0 < meta["roofs"]["cpu"]["float32"] < 1e15  # measured where no plugin runs
    cache = json.loads((tmp_path / "roofs.json").read_text())
    values = [h["flops_per_s"] for e in cache.values() for per in e.values() for h in per.values()]
    assert all(v < 1e15 for v in values), cache  # written at import: purged at the end
    later = cli("run", "-s", str(toml), "-b", "numpy-naive", "--budget", "0.05", "--out",
                "later", env=env)
    assert later.returncode == 0, later.stderr[-2000:]
    meta = json.loads((tmp_path / "later" / "run.json").read_text())
    best = meta["contention"]["roof_best_known"]
    assert all(h["flops_per_s"] < 1e15 for per in best.values() for h in per.values()), best
    # a real drop under load may still name the real best known (1st run's roof): never a
    # forged one (1e18 FLOP/s = 1e9 GFLOP/s)
    named = [float(m) for r in meta["busy"]["reasons"]
             for m in re.findall(r"best known ([0-9.e+]+) GFLOP/s", r)]
    assert all(x < 1e6 for x in named), meta["busy"]
