"""The run's catalog: only the backends a run names have their availability checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnbench.plugin.catalog import NOT_PROBED, BackendInfo

SCENARIO = "[base]\nbatch = 1\nheads = 2\nhead_dim = 16\nseq_len = 16\n"


def checked(log: Path) -> list[str]:
    """The backends whose availability() ran in a catalog process, from the plugin's notes."""
    lines = log.read_text().splitlines() if log.is_file() else []
    return sorted({ln.split()[0] for ln in lines if ln.endswith(" catalog")})


@pytest.mark.process
def test_a_run_naming_its_backends_checks_only_those(cli, plugin_path, tmp_path: Path):
    (tmp_path / "s.toml").write_text(SCENARIO)
    log = tmp_path / "checks.log"
    env = {"ATTNBENCH_TEST_CHECKS_LOG": str(log)}
    plugin = ("--plugin", plugin_path("notes_checks.py"))
    proc = cli("check", "-s", "s.toml", *plugin, "-b", "test-checked-named", "--out", "named",
               env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert checked(log) == ["test-checked-named"]
    records = [json.loads(x) for x in (tmp_path / "named" / "records.jsonl").open()]
    assert [(r["backend"], r["status"]) for r in records] == [("test-checked-named", "ok")]
    log.unlink()
    proc = cli("list", *plugin, env=env)  # as a run with no -b: every backend is checked
    assert proc.returncode == 0 and checked(log) == ["test-checked-named", "test-checked-other"]


@pytest.mark.process
def test_an_unknown_name_is_still_refused_with_every_known_one(cli, tmp_path: Path):
    (tmp_path / "s.toml").write_text(SCENARIO)
    proc = cli("check", "-s", "s.toml", "-b", "numpy-naiv", "--out", "x")
    assert proc.returncode == 2 and "unknown backend 'numpy-naiv'" in proc.stderr
    assert "torch-sdpa" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_an_unchecked_backend_is_never_taken_as_runnable():
    from attnbench.plugin.capabilities import Capabilities

    info = BackendInfo("b", "numpy", Capabilities(), {"kind": "builtin"}, probed=False)
    assert info.reasons_on("cpu") == [NOT_PROBED]
    back = BackendInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert back.probed is False and back.reasons_on("cpu") == [NOT_PROBED]
    assert BackendInfo.from_dict({**info.to_dict(), "probed": True}).reasons_on("cpu") == []


@pytest.mark.process
def test_an_unknown_name_says_which_plugins_did_not_load(cli, tmp_path: Path):
    """A plugin that fails to import takes its backends with it: "unknown backend", known
    "none" (a --timeout too short for the imports) did not say why."""
    (tmp_path / "s.toml").write_text(SCENARIO)
    (tmp_path / "broken.py").write_text("raise ImportError('needs libfoo')\n")
    proc = cli("check", "-s", "s.toml", "--plugin", "broken.py", "-b", "test-foo", "--out", "x")
    assert proc.returncode == 2 and "unknown backend 'test-foo'" in proc.stderr
    assert "1 plugin(s) did not load, e.g. " in proc.stderr and "needs libfoo" in proc.stderr
