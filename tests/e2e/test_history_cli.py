"""`attnbench history` through the real CLI: twelve copies of one real run, each run's timings
scaled by a shared drift (as this VM's runs differ) and one backend's by 1.3 from the seventh
on: `bisect` names that label and that backend, `show` tables and plots it and nothing else,
`export` writes Bencher's format; bad input is one line and exit 2."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np

from attnbench.results import read_run

RUNS, STEP_AT, SLOWED = 12, 7, "slow-copy"


def _scaled_copy(run: Path, to: Path, run_id: str, factor: dict[tuple[str, str], float]
                 ) -> Path:
    """A copy of run under a new run id, each (backend, mask)'s timings times its factor."""
    shutil.copytree(run, to)
    meta, records = read_run(to)
    meta["run_id"] = run_id
    (to / "run.json").write_text(json.dumps(meta))
    lines = []
    for rec in records:
        timing, f = rec.get("timing"), factor[(rec["backend"], rec["mask"])]
        if isinstance(timing, dict) and isinstance(timing.get("median_ms"), float):
            timing["median_ms"] *= f
            timing["samples_ms"] = [s * f for s in timing.get("samples_ms") or []]
        lines.append(json.dumps(rec))
    (to / "records.jsonl").write_text("\n".join(lines) + "\n")
    return to


def _history(run: Path, folder: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    meta, records = read_run(run)
    series = sorted({(r["backend"], r["mask"]) for r in records})
    runs = []
    for i in range(1, RUNS + 1):
        drift = float(np.exp(rng.normal(0, 0.15)))
        factor = {(b, m): drift * float(np.exp(rng.normal(0, 0.01))) * (
            1.3 if (b, m) == (SLOWED, "causal") and i >= STEP_AT else 1.0) for b, m in series}
        runs.append(_scaled_copy(run, folder / f"r{i:02d}", f"commit-{i:02d}", factor))
    return runs


def test_bisect_names_the_planted_step_and_show_plots_it(real_run, cli, tmp_path):
    runs = _history(real_run("base"), tmp_path)
    db = tmp_path / "h.sqlite"
    added = cli("history", "add", *map(str, runs), "--db", str(db))
    assert added.returncode == 0, added.stderr
    assert added.stdout.count("timed records stored") == RUNS

    bisect = cli("history", "bisect", "--db", str(db))
    assert bisect.returncode == 0, bisect.stderr
    assert bisect.stdout.startswith(f"first step at commit-{STEP_AT:02d}: {SLOWED}")
    assert "numpy-naive" not in bisect.stdout and "-none-" not in bisect.stdout
    assert "no library version changed there" in bisect.stdout

    show = cli("history", "show", "--db", str(db), "-o", str(tmp_path / "plots"))
    assert show.returncode == 0, show.stderr
    stepped = [ln for ln in show.stdout.splitlines() if f"commit-{STEP_AT:02d}" in ln]
    assert stepped and all(SLOWED in ln for ln in stepped), show.stdout
    plots = sorted((tmp_path / "plots").glob("*.png"))
    assert plots and all(SLOWED in p.name for p in plots)

    raw = cli("history", "show", "--db", str(db), "--raw", "--backend", "numpy-naive")
    assert raw.returncode == 0 and "commit-07" not in raw.stdout


def test_bisect_on_too_few_runs_says_it_cannot_tell(real_run, cli, tmp_path):
    """Two runs: "no step found in the history" read as an answer; detection needs eight."""
    runs = _history(real_run("base"), tmp_path)[:2]
    db = tmp_path / "h.sqlite"
    assert cli("history", "add", *map(str, runs), "--db", str(db)).returncode == 0
    bisect = cli("history", "bisect", "--db", str(db))
    assert bisect.returncode == 0, bisect.stderr
    assert bisect.stdout.strip() == "no step can be found in 2 run(s): detection needs at least 8"


def test_export_writes_bencher_metric_format(real_run, cli, tmp_path):
    run = real_run("base")
    out = tmp_path / "bmf.json"
    proc = cli("history", "export", str(run), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    unfinished = tmp_path / "unfinished"  # exported, and said so
    shutil.copytree(run, unfinished)
    meta = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**meta, "finished": False}))
    partial = cli("history", "export", str(unfinished))
    assert partial.returncode == 0 and "did not finish" in partial.stderr
    assert json.loads(partial.stdout) == json.loads(out.read_text())
    (unfinished / "records.jsonl").write_text("")  # nothing timed: it printed {}, exit 0
    empty = cli("history", "export", str(unfinished))
    assert empty.returncode == 2 and "nothing to export" in empty.stderr
    bmf = json.loads(out.read_text())
    _, records = read_run(run)
    timed = [r for r in records if r.get("status") == "ok"
             and isinstance((r.get("timing") or {}).get("median_ms"), float)]
    assert len(bmf) == len(timed) > 0
    for rec in timed:
        lat = bmf[f"{rec['scenario']}/{rec['case_id']}/{rec['backend']}"]["latency"]
        assert lat["value"] == rec["timing"]["median_ms"] * 1e6
        assert lat["lower_value"] <= lat["value"] <= lat["upper_value"]


def test_bad_history_input_is_one_line_and_exit_2(real_run, cli, tmp_path):
    for verb, db in (("show", str(tmp_path / "typo" / "h.sqlite")),
                     ("bisect", f"sqlite:///{tmp_path}/typo/h.sqlite")):  # a mistyped --db:
        gone = cli("history", verb, "--db", db)  # refused, not made (it was, empty)
        assert gone.returncode == 2 and "no history database there" in gone.stderr
        assert len(gone.stderr.strip().splitlines()) == 1 and not (tmp_path / "typo").exists()
    sqlite3.connect(tmp_path / "empty.sqlite").close()
    empty = cli("history", "show", "--db", str(tmp_path / "empty.sqlite"))
    assert empty.returncode == 2 and "no stored timings" in empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1 and "Traceback" not in empty.stderr
    two = cli("history", "add", str(real_run("base")), str(real_run("slow")), "--label", "v1",
              "--db", str(tmp_path / "l.sqlite"))  # the label was silently dropped
    assert two.returncode == 2 and "--label names one run" in two.stderr
    db = tmp_path / "h.sqlite"
    assert cli("history", "add", str(real_run("base")), "--db", str(db)).returncode == 0
    again = cli("history", "add", str(real_run("base")), "--db", str(db))
    assert again.returncode == 2 and "already in the history" in again.stderr
    missing = cli("history", "add", str(tmp_path / "nope"), "--db", str(db))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert cli("history", "frobnicate").returncode == 2
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    bad = cli("history", "show", "--db", str(text))
    assert bad.returncode == 2 and "not a database" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
