"""The history database: a real run's timed records stored under a label, in order; a run that
did not finish or is already stored is refused; the same SQL through an SQLAlchemy URL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from attnbench.errors import UsageError
from attnbench.history import store
from attnbench.results import read_run


def _copy(run: Path, to: Path, run_id: str) -> Path:
    shutil.copytree(run, to)
    meta = json.loads((to / "run.json").read_text())
    meta["run_id"] = run_id
    (to / "run.json").write_text(json.dumps(meta))
    return to


def _timed(run: Path) -> list[dict]:
    _, records = read_run(run)
    return [r for r in records if isinstance((r.get("timing") or {}).get("median_ms"), float)]


def test_a_real_run_is_stored_with_its_medians_and_quartiles(real_run, tmp_path):
    run = real_run("base")
    with store.connect(tmp_path / "h.sqlite") as conn:
        n = store.add_run(conn, run, "commit-a")
    timed = _timed(run)
    assert n == len(timed) > 0
    with store.connect(tmp_path / "h.sqlite") as conn:
        pts = store.points(conn)
        one = store.points(conn, backend="numpy-naive", case=timed[0]["case_id"])
    assert len(pts) == n and {p.label for p in pts} == {"commit-a"} and {p.seq for p in pts} == {1}
    by = {(p.case_id, p.backend): p for p in pts}
    for rec in timed:
        p = by[(rec["case_id"], rec["backend"])]
        assert p.median_ms == rec["timing"]["median_ms"]
        assert p.q25_ms <= p.median_ms <= p.q75_ms
    assert [p.backend for p in one] == ["numpy-naive"]


def test_runs_get_successive_seqs_and_a_stored_run_is_refused(real_run, tmp_path):
    run = real_run("base")
    second = _copy(run, tmp_path / "second", "another-run")
    db = tmp_path / "h.sqlite"
    with store.connect(db) as conn:
        store.add_run(conn, run, None)
        store.add_run(conn, second, "b")
        with pytest.raises(UsageError, match="already in the history"):
            store.add_run(conn, run, "again")
        seqs = {(p.seq, p.label) for p in store.points(conn)}
    meta, _ = read_run(run)
    assert seqs == {(1, meta["run_id"]), (2, "b")}


def test_an_unfinished_run_is_refused(real_run, tmp_path):
    cut = _copy(real_run("base"), tmp_path / "cut", "cut-run")
    meta = json.loads((cut / "run.json").read_text())
    meta["finished"] = False
    (cut / "run.json").write_text(json.dumps(meta))
    with store.connect(tmp_path / "h.sqlite") as conn, \
            pytest.raises(UsageError, match="did not finish"):
        store.add_run(conn, cut, None)


def test_damaged_fields_are_stored_as_unknown_and_impossible_times_never_shown(real_run,
                                                                             tmp_path):
    """A run.json `busy` that is no object and a sample count that is no integer are stored as
    not busy and 0 (they raised before); a median no run measures, stored by an older
    attnbench, is left out of the points that show and bisect read."""
    odd = _copy(real_run("base"), tmp_path / "odd", "odd-run")
    meta = json.loads((odd / "run.json").read_text())
    meta["busy"] = "zzz"
    (odd / "run.json").write_text(json.dumps(meta))
    lines = [json.loads(x) for x in (odd / "records.jsonl").read_text().splitlines()]
    for rec in lines:
        if isinstance(rec.get("timing"), dict):
            rec["timing"]["n"] = "x"
    (odd / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with store.connect(tmp_path / "h.sqlite") as conn:
        n = store.add_run(conn, odd, None)
        assert n > 0 and {p.samples for p in store.points(conn)} == {0}
        conn.execute("UPDATE points SET median_ms = :m WHERE case_id = :c",
                     {"m": float("inf"), "c": store.points(conn)[0].case_id})
        kept = store.points(conn)
    assert 0 < len(kept) < n and all(0 < p.median_ms < float("inf") for p in kept)


def test_an_sqlalchemy_url_stores_the_same_points(real_run, tmp_path):
    pytest.importorskip("sqlalchemy")
    run = real_run("base")
    with store.connect(f"sqlite:///{tmp_path / 'alchemy.sqlite'}") as conn:
        n = store.add_run(conn, run, "x")
    with store.connect(tmp_path / "alchemy.sqlite") as conn:  # the same file, read directly
        assert len(store.points(conn)) == n


def test_a_bad_url_is_one_usage_error(tmp_path):
    pytest.importorskip("sqlalchemy")
    with pytest.raises(UsageError, match="nosuchdialect"), \
            store.connect("nosuchdialect://x/y"):
        pass


def test_labels_and_names_are_printed_plain(tmp_path, capsys):
    """A label (user) or case name (scenario file) with escape sequences and line breaks is
    shown as plain text by show and bisect: nothing reaches the terminal raw."""
    import argparse

    import numpy as np

    from attnbench.history.command import run_history

    evil = "x\x1b[31mred\x1b]8;;https://a.example\x07\nforged"
    db = tmp_path / "h.sqlite"
    rng = np.random.default_rng(0)
    with store.connect(db) as conn:
        for seq in range(1, 13):
            label = f"{evil}-{seq}"
            conn.execute("INSERT INTO runs VALUES (:r, :l, :s, '', 'm', '{}', 0)",
                         {"r": f"run{seq}", "l": label, "s": seq})
            for case in range(3):
                med = (1 + case) * (1.5 if seq >= 7 and case == 0 else 1.0) * float(
                    np.exp(rng.normal(0, 0.01)))
                row = dict(zip(store.POINT_FIELDS, (f"run{seq}", seq, label, "s",
                                                    f"{evil}{case}", "b", "cpu", "m", "ok",
                                                    med, med, med, 10), strict=True))
                conn.execute(f"INSERT INTO points VALUES "
                             f"({', '.join(':' + f for f in store.POINT_FIELDS)})", row)
    for command in ("show", "bisect"):
        args = argparse.Namespace(history_command=command, db=str(db), only_backend=None,
                                  only_case=None, raw=False, penalty=None, out=None, all=False)
        assert run_history(args) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out and "forged" in out
        assert "\nforged" not in out
