"""`attnbench history add | show | bisect | export`: what each subcommand does and prints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attnbench.errors import UsageError
from attnbench.history import store
from attnbench.history.changes import MIN_RUNS, detect
from attnbench.history.view import (
    bisect_steps,
    changed_versions,
    first_step,
    save_plots,
    table_rows,
)
from attnbench.sanitize import plain


def run_history(args: argparse.Namespace) -> int:
    """Run one history subcommand; 0 on success (usage errors raise UsageError)."""
    if args.history_command == "export":
        return _export(args)
    if args.history_command == "add" and args.label is not None and len(args.runs) > 1:
        raise UsageError("--label names one run: give it with one RUN (each of several is "
                         "labelled by its run id)")
    if args.history_command != "add":
        _existing(args.db)
    with store.connect(args.db) as conn:
        if args.history_command == "add":
            for run in args.runs:
                n = store.add_run(conn, run, args.label)
                print(f"history: {run}: {n} timed records stored in {args.db or store.DEFAULT_DB}")
            return 0
        points = store.points(conn, args.only_backend, args.only_case)
        versions = store.run_versions(conn)
    if not points:
        only = " for that backend/case" if args.only_backend or args.only_case else ""
        raise UsageError(f"no stored timings in {args.db or store.DEFAULT_DB}{only}")
    steps, factors = detect(points, normalize=not args.raw, penalty=args.penalty)
    if args.history_command == "bisect":
        named = bisect_steps(steps, args.raw)
        runs = len({p.seq for p in points})
        if not named and runs < MIN_RUNS:
            print(f"no step can be found in {runs} run(s): detection needs at least {MIN_RUNS}")
            return 0
        print(plain(first_step(named)))
        if named:
            print(plain(changed_versions(versions, min(s.seq for s in named))))
        return 0
    _print_table(table_rows(points, steps))
    if args.out:
        made = save_plots(points, steps, factors, Path(args.out), every=args.all)
        print(f"plots: {len(made)} under {args.out}")
    return 0


def _existing(db: str | None) -> None:
    """Refuse a history database file that is not there: reading would make an empty one."""
    target = str(db or store.DEFAULT_DB)
    file = target.removeprefix("sqlite:///") if target.startswith("sqlite:///") else target
    if "://" not in file and not Path(file).is_file():
        raise UsageError(f"--db {target}: no history database there (history add makes one)")


def _print_table(rows: list[list[str]]) -> None:
    from rich.table import Table

    from attnbench.report.tables import console

    t = Table(title="history: each series and the steps found in it")
    for h in ("series", "runs", "last median ms", "steps"):
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*(plain(c) for c in r))  # names and labels came from plugins and users
    console().print(t)


def _export(args: argparse.Namespace) -> int:
    """A run's timings for Bencher (BMF JSON, to a file or stdout) or asv (a results folder)."""
    from attnbench.history.export import asv_results, bencher_metrics
    from attnbench.results import read_run

    meta, records = read_run(args.run)
    if not any(r.get("status") == "ok" and (r.get("timing") or {}).get("median_ms")
               for r in records):
        raise UsageError(f"{args.run}: no timed record that is ok: nothing to export")
    if meta.get("finished") is not True:
        print(f"note: {args.run} did not finish: only the records it has are exported",
              file=sys.stderr)
    if args.format == "asv":
        if not args.out:
            raise UsageError("history export --format asv needs -o DIR (asv's results folder)")
        path = asv_results(meta, records, Path(args.out), args.label)
        print(f"asv: {path} written (benchmarks.json and machine.json beside it)")
        return 0
    metrics = bencher_metrics(records)
    text = json.dumps(metrics, indent=2, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"bencher: {len(metrics)} benchmarks written to {args.out}")
    else:
        print(text)
    return 0
