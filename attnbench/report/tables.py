"""Terminal tables: the summary after run/check and the backend list."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from attnbench.record import error_ratio, failure_text
from attnbench.report.groups import field_label

MARK = {"ok": "✓", "mismatch": "✗ mismatch", "unsupported": "–", "error": "error",
        "oom": "oom", "timeout": "timeout", "crashed": "crashed"}
LABEL_FIELDS = ("batch", "heads_q", "heads_kv", "seq_q", "seq_kv", "head_dim", "dtype", "mask",
                "mode", "scale")


def console() -> Console:
    """A console that prints text as it is: plugin and error strings are not rich markup."""
    width = None if Console().is_terminal else 200
    return Console(width=width, highlight=False, markup=False)


def case_labels(records: list[dict[str, Any]]) -> dict[str, str]:
    """Short row labels: only the case fields that vary among these records."""
    varying = [f for f in LABEL_FIELDS if len({r.get(f) for r in records}) > 1] or ["seq_kv"]
    out = {}
    for r in records:
        parts = [field_label(f, r.get(f)) for f in varying]
        out[r["case_id"]] = " ".join(parts)
    return out


def cell(rec: dict[str, Any], timed: bool) -> str:
    status = rec["status"]
    med = rec.get("timing", {}).get("median_ms")
    if status in ("ok", "mismatch") and timed and med is not None:
        return f"{med:.3f} {'✓' if status == 'ok' else '✗'}"
    if status in ("ok", "mismatch"):
        ratio = error_ratio(rec)
        return f"{MARK[status]} {ratio:.2f}" if ratio is not None else MARK[status]
    return MARK.get(status, status)


def summary(records: list[dict[str, Any]], timed: bool) -> list[Table]:
    """One table per (scenario, device): cases as rows, backends as columns."""
    tables = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["scenario"], r["device"]), []).append(r)
    for (scenario, device), recs in groups.items():
        what = "median ms, ✓ agrees" if timed else "agreement, error/bound"
        table = Table(title=f"{scenario} on {device} ({what})", title_justify="left")
        labels = case_labels(recs)
        backends = list(dict.fromkeys(r["backend"] for r in recs))
        table.add_column("case")
        for b in backends:
            table.add_column(b, justify="right")
        rows: dict[str, dict[str, str]] = {}
        for r in recs:
            rows.setdefault(r["case_id"], {})[r["backend"]] = cell(r, timed)
        for case_id, cells in rows.items():
            table.add_row(labels[case_id], *(cells.get(b, "") for b in backends))
        tables.append(table)
    return tables


def failures(records: list[dict[str, Any]]) -> Table | None:
    """Records that did not pass, with their reason."""
    bad = [r for r in records if r["status"] not in ("ok", "unsupported")]
    if not bad:
        return None
    table = Table(title="Not ok", title_justify="left")
    for col in ("backend", "case", "status", "detail"):
        table.add_column(col)
    for r in bad:
        table.add_row(r["backend"], r["case_id"], r["status"], failure_text(r)[:300])
    return table


def backend_list(registry: Any) -> Table:
    """Every backend: where it runs, what it supports, and why not when it cannot run."""
    table = Table(title="Backends", title_justify="left")
    for col in ("backend", "framework", "status", "dtypes", "modes", "plugin"):
        table.add_column(col)
    for name, b in registry.backends.items():
        reasons = b.availability()
        devices = [] if reasons else b.capabilities.devices
        runnable = [d for d in devices if not b.device_reasons(d)]
        if runnable:
            status = "available on " + ", ".join(runnable)
        else:
            why = reasons or [r for d in b.capabilities.devices for r in b.device_reasons(d)]
            status = "unavailable: " + "; ".join(why)
        table.add_row(name, b.framework, status, ",".join(b.capabilities.dtypes),
                      ",".join(b.capabilities.modes), registry.origins[name])
    return table


