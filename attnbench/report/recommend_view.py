"""The recommendation shown: one table and its notes, for the terminal, Markdown and the report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.report.compare_verdict import DEFAULTS
from attnbench.report.groups import Run, read_runs
from attnbench.report.recommend import (
    Bucket,
    Options,
    Point,
    Range,
    Recommendation,
    recommend,
)
from attnbench.report.render import Cell, Heading, Table, Text, md_escape
from attnbench.report.significance import ALPHA
from attnbench.sanitize import plain

HEADERS = ["#", "device", "dtype mode", "variant", "shape", "phase", "length", "winner",
           "margin over the next", "tied within noise"]
INTRO = ("Per bucket (device, dtype, pass, variant, head dim, heads, batch, prefill or decode) "
         "and length: the fastest backend whose records agree with the oracle. Margin: the next "
         "backend's median over the winner's, with the Mann-Whitney p on the raw samples; a "
         "backend is tied when it is not slower beyond noise (as `compare` judges a "
         "regression: {noise}, and p < {alpha}). A backend with a failing or unverified record "
         "in a bucket is never recommended in it.").format(
    noise=", ".join(f"{thr:.0%} and {floor * 1000:g} µs on {device}"
                    for device, (thr, floor) in DEFAULTS.items()), alpha=ALPHA)
NOTHING_TIMED = ("no backend can be recommended: no record is both timed and ok (a check run "
                 "times nothing).")


def p_text(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def margin_text(p: Point) -> str:
    if p.verdict == "none":
        return "–"
    if p.next is None:
        return "only one eligible" if p.verdict == "sole" else "no other eligible"
    margin = f"×{p.margin:.2f}" if p.margin is not None else "×?"
    return f"{margin} over {p.next} ({p_text(p.p_value)})"


def tie_text(p: Point) -> str:
    medians = {str(b): float(m) for b, m in p.ranking}
    return ", ".join(f"{b} ×{medians[b] / p.winner_ms:.2f}" if p.winner_ms else b
                     for b in p.tied) or "–"


def winner_text(p: Point) -> str:
    if p.winner is None:
        return "none eligible"
    return p.winner + (" (preferred)" if p.preferred else "")


def bucket_columns(number: int, b: Bucket) -> list[str]:
    k = b.key
    dv = f" dv{k.head_dim_v}" if k.head_dim_v is not None else ""
    shape = f"d{k.head_dim}{dv} h{k.heads_q}:{k.heads_kv} b{k.batch}"
    phase = k.phase + (f" q{k.seq_q}" if k.seq_q is not None else "")
    return [str(number), k.machine, f"{k.dtype} {k.mode}", k.variant, shape, phase]


def rows(rec: Recommendation) -> list[list[str]]:
    """One row per length of each bucket; a bucket's own columns on its first row only."""
    out = []
    for number, b in enumerate(rec.buckets, start=1):
        for i, p in enumerate(b.points):
            head = bucket_columns(number, b) if i == 0 else [""] * 6
            out.append(head + [str(p.length), winner_text(p), margin_text(p), tie_text(p)])
    return out


def notes(rec: Recommendation) -> list[str]:
    """Per bucket: its crossovers and every backend excluded, and why."""
    out = []
    for number, b in enumerate(rec.buckets, start=1):
        out.append(f"#{number}: by length: " + "; ".join(range_text(r) for r in b.ranges))
        out += [f"#{number}: crossover between {c.after} and {c.before}: "
                f"{c.old or 'none'} → {c.new or 'none'}" for c in b.crossovers]
        out += [f"#{number}: {e.backend} never recommended here ({e.kind}): {e.reason}"
                for e in b.excluded]
        out += exclusion_notes(number, b)
    return out


def range_text(r: Range) -> str:
    """'1024–16384 torch-sdpa (ties: torch-sdpa-cudnn)'."""
    span = str(r.start) if r.start == r.end else f"{r.start}–{r.end}"
    ties = f" (ties: {', '.join(r.tied)})" if r.tied else ""
    return f"{span} {r.winner or 'none eligible'}{ties}"


def exclusion_notes(number: int, b: Bucket) -> list[str]:
    """A backend left out at some lengths, by kind; the unsupported ones together, by name."""
    lengths = {p.case_id: p.length for p in b.points}
    grouped: dict[tuple[str, str], list[Any]] = {}
    for p in b.points:
        for e in p.excluded:
            grouped.setdefault((e.backend, e.kind), []).append(e)
    unsupported = sorted({backend for backend, kind in grouped if kind == "unsupported"})
    out = [f"#{number}: unsupported here: {', '.join(unsupported)}"] if unsupported else []
    for (backend, kind), excl in grouped.items():
        if kind != "unsupported":
            where = ", ".join(str(lengths[e.case_id]) for e in excl)
            out.append(f"#{number}: {backend} left out at {where} ({kind}): {excl[0].reason}")
    return out


def markdown(rec: Recommendation) -> str:
    """The table and its notes in Markdown."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(md_escape(c) if c else " " for c in cells) + " |"

    lines = [line(HEADERS), "|" + "---|" * len(HEADERS)] + [line(r) for r in rows(rec)]
    return "\n".join(lines + [""] + [f"- {md_escape(n)}" for n in notes(rec)]) + "\n"


def print_table(rec: Recommendation) -> None:
    """The table on the terminal (rich), then the notes."""
    from rich.table import Table as RichTable

    from attnbench.report.tables import console

    table = RichTable(title="recommendation", title_justify="left")
    for h in HEADERS:
        table.add_column(h, justify="right" if h in ("#", "length") else "left")
    for r in rows(rec):
        table.add_row(*map(plain, r))
    out = console()
    out.print(table)
    for n in notes(rec):
        out.print(plain(n))


def recommendation_section(runs: list[Run]) -> list[Any]:
    """The report's Recommendation section: the same table and notes, default options."""
    rec = recommend(runs)
    if not rec.buckets:
        return []
    if not any(p.winner for b in rec.buckets for p in b.points):
        return [Heading(2, "Recommendation"), Text(NOTHING_TIMED)]
    body = [[Cell(c, best=(i == 7 and c not in ("", "none eligible"))) for i, c in enumerate(r)]
            for r in rows(rec)]
    return [Heading(2, "Recommendation"), Text(INTRO), Table(HEADERS, body),
            *[Text(n) for n in notes(rec)]]


def run_recommend(paths: list[str], options: Options, fmt: str = "table",
                  json_path: str | None = None) -> int:
    """The recommend command: read the runs, print the table, write the JSON when asked."""
    from attnbench.report.recommend_json import write_json

    runs = read_runs(paths)
    rec = recommend(runs, options)
    if not rec.buckets:
        raise UsageError(f"{', '.join(paths)}: no records, nothing to recommend")
    known = {r["backend"] for run in runs for r in run.records}
    for name in options.prefer:
        if name not in known:
            print(f"note: --prefer names {plain(name)}, which no record of these runs has",
                  file=sys.stderr)
    if fmt == "markdown":
        sys.stdout.write(markdown(rec))
    else:
        print_table(rec)
    if json_path:
        print(f"json: {write_json(rec, Path(json_path))}")
    return 0
