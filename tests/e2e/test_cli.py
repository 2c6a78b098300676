"""The command line end to end, in fresh processes: list, run, check, usage errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import attnbench
from attnbench.cli import main
from attnbench.results_schema import SCHEMA_VERSION

TINY = """name = "tiny"
description = "two small cases for the CLI tests"
[base]
batch = 1
heads = 2
head_dim = 16
mask = "causal"
[sweep]
seq_len = [16, 32]
"""

BAD = {  # file text -> what the one-line error must contain besides the path
    'name = "x"\n[base]\nbatch = -1\n': "base.batch",
    '[base]\nbatch = 1\nheads = 2\nheads_kv = 3\nhead_dim = 8\nseq_len = 4\n': "heads_q",
    '[base]\ndtype = "float8"\n': "base.dtype",
    '[base]\nbatch = [1, 2]\n': "base.batch",
    '[device.tpu]\nbatch = 1\n': "device.tpu",
    '[base\n': "not valid TOML",
    'wat = 1\n': "wat",
}


def one_line(stderr: str) -> str:
    """The one error line; other stderr lines may only be notices of plugins that failed."""
    lines = stderr.strip().splitlines()
    errors = [x for x in lines if x.startswith("attnbench: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert all(x.startswith("attnbench: plugin ") for x in lines[:-1]), stderr
    assert "Traceback" not in stderr
    return errors[0]


@pytest.mark.parametrize("text", list(BAD))
def test_bad_scenario_in_process(tmp_path: Path, capsys, text: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", "-s", str(path), "--out", str(tmp_path / "out")]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(path) in line and BAD[text] in line
    assert not (tmp_path / "out").exists()  # rejected before anything ran


def test_bad_scenario_subprocess(cli, tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[base]\nbatch = 1\nheads = 2\nhead_dim = 0\nseq_len = 4\n')
    proc = cli("run", "-s", str(path))
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert str(path) in line and "base.head_dim" in line and "positive" in line
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("args,words", [
    (["run", "-s", "no-such-scenario"], "unknown scenario"),
    (["check", "-s", "smoke", "-b", "no-such-backend"], "unknown backend"),
    (["run", "--frobnicate"], "--frobnicate"),
    (["run", "-s", "smoke", "--budget", "-1"], "--budget"),
    (["check", "--plugin", "/nonexistent/plugin.py"], "no such file"),
])
def test_usage_errors_subprocess(cli, tmp_path: Path, args: list[str], words: str):
    proc = cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert words in one_line(proc.stderr)
    assert not (tmp_path / "results").exists()


def test_usage_errors_in_process(capsys):
    assert main(["frobnicate"]) == 2
    assert "frobnicate" in one_line(capsys.readouterr().err)
    assert main([]) == 2
    assert one_line(capsys.readouterr().err)


def test_version_is_printed_and_the_seed_bound_in_full(capsys):
    import attnbench

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"attnbench {attnbench.__version__}"
    assert main(["run", "--seed", "99999999999"]) == 2
    assert "must be at most 4294967295, got 99999999999" in one_line(capsys.readouterr().err)


def test_help_exits_0(cli):
    proc = cli("run", "--help")
    assert proc.returncode == 0
    assert "--scenario" in proc.stdout and "--plugin" in proc.stdout


def test_list_shows_every_backend_and_why(cli, registry):
    proc = cli("list")
    assert proc.returncode == 0, proc.stderr
    status, variants, last = {}, {}, None
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 6 and cells[1]:
            last = cells[1]
            status[last], variants[last] = cells[3], cells[6]
        elif len(cells) > 6 and last:  # a wrapped row goes on: its cells continue
            status[last] = f"{status[last]} {cells[3]}".strip()
            variants[last] = f"{variants[last]} {cells[6]}".strip()
    assert variants["numpy-naive"] == variants["torch-naive"] == "all"  # the variants column
    for name, backend in registry.backends.items():
        assert name in status, name
        runnable = not backend.availability() and any(
            not backend.device_reasons(d) for d in backend.capabilities.devices)
        if runnable:
            assert status[name].startswith("available"), status[name]
        else:
            assert status[name].startswith("unavailable: ") and len(status[name]) > 14


def test_run_writes_results_and_summary(cli, tmp_path: Path):
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    out = tmp_path / "run1"
    proc = cli("run", "-s", str(scenario), "-b", "torch-sdpa", "-b", "numpy-naive",
               "--device", "cpu", "--out", str(out), "--budget", "0.05")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["schema_version"] == SCHEMA_VERSION and meta["finished"] is True
    lines = (out / "records.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert len(records) == 4
    assert {(r["backend"], r["seq_kv"]) for r in records} == {
        (b, s) for b in ("torch-sdpa", "numpy-naive") for s in (16, 32)}
    assert all(r["status"] == "ok" and r["timing"]["median_ms"] > 0 for r in records)
    assert all(len(r["timing"]["samples_ms"]) == r["timing"]["n"] for r in records)
    assert "tiny on cpu" in proc.stdout
    assert "torch-sdpa" in proc.stdout and "numpy-naive" in proc.stdout and "✓" in proc.stdout
    df = attnbench.load(out)
    assert len(df) == 4 and set(df["backend"]) == {"torch-sdpa", "numpy-naive"}
    assert set(df["status"]) == {"ok"} and (df["timing.median_ms"] > 0).all()
    assert df["run_id"].nunique() == 1 and df["run_id"].iloc[0] == meta["run_id"]


# One backend of each family, through the CLI and its worker processes. Every registered
# backend is checked on every smoke case in process by tests/backends/test_correctness.py
# (the same execute() and pass rule), and CI runs the full `attnbench check -s smoke` gate.
E2E_BACKENDS = ["numpy-naive", "torch-sdpa"]


def test_check_smoke_passes_on_builtins(cli, tmp_path: Path, registry):
    out = tmp_path / "check"
    names = [n for n in E2E_BACKENDS if n in registry.backends
             and not registry.backends[n].availability()]
    proc = cli("check", "-s", "smoke", "--device", "cpu", "--out", str(out),
               *[x for n in names for x in ("-b", n)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    ran = {r["backend"] for r in records if r["status"] == "ok"}
    assert "numpy-naive" in ran and ran == set(names)
    assert all("timing" not in r for r in records)  # check does not time
