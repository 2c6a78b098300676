"""`attnbench history add | show | bisect | export`: what each subcommand does and prints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attnbench.errors import UsageError
from attnbench.history import store
from attnbench.history.changes import detect
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
    with store.connect(args.db) as conn:
        if args.history_command == "add":
            for run in args.runs:
                n = store.add_run(conn, run, args.label if len(args.runs) == 1 else None)
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
        print(plain(first_step(named)))
        if named:
            print(plain(changed_versions(versions, min(s.seq for s in named))))
        return 0
    _print_table(table_rows(points, steps))
    if args.out:
        made = save_plots(points, steps, factors, Path(args.out), every=args.all)
        print(f"plots: {len(made)} under {args.out}")
    return 0


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
