"""Terminal tables: the summary after run/check and the backend list."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from attnbench.case import VARIANTS
from attnbench.record import VERIFIED, Status, error_ratio, failure_text
from attnbench.report.groups import field_label, variant_label, variant_value
from attnbench.sanitize import plain

MARK = {"ok": "✓", "mismatch": "✗ mismatch", "unsupported": "–", "error": "error",
        "oom": "oom", "timeout": "timeout", "crashed": "crashed"}
BUILTIN_PREFIX = "attnbench.backends."
LABEL_FIELDS = ("batch", "heads_q", "heads_kv", "seq_q", "seq_kv", "head_dim", "dtype", "mask",
                "mode", "scale")
# labelled as in the report (groups.py)
VARIANT_LABEL_FIELDS = ("window", "q_lens", "kv_lens", "doc_lens", "layout", "alibi", "bias",
                        "softcap", "head_dim_v", "sinks", "lse", "mask_mod", "kv_quant",
                        "inputs", "poison", "strides")


def console() -> Console:
    """A console that prints text as it is: plugin and error strings are not rich markup."""
    width = None if Console().is_terminal else 200
    return Console(width=width, highlight=False, markup=False)


def case_labels(records: list[dict[str, Any]]) -> dict[str, str]:
    """Short row labels: only the case fields that vary among these records."""
    varying = [f for f in LABEL_FIELDS if len({r.get(f) for r in records}) > 1]
    extra = [f for f in VARIANT_LABEL_FIELDS
             if len({variant_value(f, r, "") for r in records}) > 1]
    varying = varying or ([] if extra else ["seq_kv"])
    out = {}
    for r in records:
        parts = [field_label(f, r.get(f)) for f in varying]
        parts += [variant_label(f, variant_value(f, r, "")) for f in extra]
        out[r["case_id"]] = " ".join(p for p in parts if p) or "plain"
    return out


def cell(rec: dict[str, Any], timed: bool) -> str:
    status = rec["status"]
    med = rec.get("timing", {}).get("median_ms")
    if status in VERIFIED and timed and med is not None:
        return f"{med:.3f} {'✓' if status == 'ok' else '✗'}{repeat_mark(rec)}"
    if status in VERIFIED:
        ratio = error_ratio(rec)
        text = f"{MARK[status]} {ratio:.2f}" if ratio is not None else MARK[status]
        return text + repeat_mark(rec)
    return MARK.get(status, plain(status))


def repeat_mark(rec: dict[str, Any]) -> str:
    """' ≡' when the repeated calls were bitwise identical, ' ≠2e-07' (largest difference) when
    not, '' without a repeat check."""
    det = rec.get("determinism")
    if not isinstance(det, dict):
        return ""
    return " ≡" if det.get("bitwise_identical") else f" ≠{det.get('max_abs_diff', 0):.1g}"


def determinism_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per backend, how many of its repeat-checked records were bitwise identical."""
    per: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if isinstance(r.get("determinism"), dict):
            per.setdefault(r["backend"], []).append(r["determinism"])
    lines = []
    for backend, dets in per.items():
        same = sum(bool(d.get("bitwise_identical")) for d in dets)
        calls = ", ".join(sorted({str(d.get("repeats")) for d in dets}))
        text = f"{plain(backend)}: bitwise identical in {same} of {len(dets)} record(s) " \
               f"({calls} calls each)"
        if same < len(dets):
            worst = max(float(d.get("max_abs_diff") or 0) for d in dets)
            names = sorted({n for d in dets for n in d.get("differing") or []})
            text += f"; NOT deterministic: largest difference {worst:.3g} in {', '.join(names)}"
        lines.append("determinism: " + text)
    return lines


def summary(records: list[dict[str, Any]], timed: bool) -> list[Table]:
    """One table per (scenario, device): cases as rows, backends as columns."""
    tables = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["scenario"], r["device"]), []).append(r)
    for (scenario, device), recs in groups.items():
        what = "median ms, ✓ agrees" if timed else "agreement, error/bound"
        table = Table(title=plain(f"{scenario} on {device} ({what})"), title_justify="left")
        labels = case_labels(recs)
        backends = list(dict.fromkeys(r["backend"] for r in recs))
        table.add_column("case")
        for b in backends:
            table.add_column(plain(b), justify="right")
        rows: dict[str, dict[str, str]] = {}
        for r in recs:
            rows.setdefault(r["case_id"], {})[r["backend"]] = cell(r, timed)
        for case_id, cells in rows.items():
            table.add_row(plain(labels[case_id]), *(cells.get(b, "") for b in backends))
        tables.append(table)
    return tables


def failures(records: list[dict[str, Any]]) -> Table | None:
    """Records that did not pass, with their reason."""
    bad = [r for r in records if r["status"] not in (Status.OK, Status.UNSUPPORTED)]
    if not bad:
        return None
    table = Table(title="Not ok", title_justify="left")
    for col in ("backend", "case", "status", "detail"):
        table.add_column(col)
    for r in bad:
        table.add_row(plain(r["backend"]), plain(r["case_id"]), plain(r["status"]),
                      plain(failure_text(r)[:300]))
    return table


def backend_list(catalog: Any) -> Table:
    """Every backend of a catalog: where it runs, what it supports (per device where it
    differs), and why not when it cannot run (a plugin method that raised or hung is the
    reason: "unavailable: <method> raised ...")."""
    table = Table(title="Backends", title_justify="left")
    for col in ("backend", "framework", "status", "dtypes", "modes", "variants", "limits",
                "plugin", "description"):
        table.add_column(col, no_wrap=col == "backend", overflow="fold")
    for name, b in catalog.backends.items():
        caps = b.capabilities
        table.add_row(plain(name), plain(b.framework), plain(backend_status(b)),
                      per_device(caps, "dtypes"), per_device(caps, "modes"),
                      variants_text(caps), limits(caps),
                      "built-in" if b.plugin.startswith(BUILTIN_PREFIX) else plain(b.plugin),
                      plain(b.description))
    return table


def backend_status(b: Any) -> str:
    """'available on cpu, cuda' or 'unavailable: <reasons>' (b: a catalog's BackendInfo)."""
    runnable = [] if b.availability else [d for d in b.capabilities.devices
                                          if not b.reasons_on(d)]
    if runnable:
        return "available on " + ", ".join(runnable)
    why = list(b.availability) or [r for d in b.capabilities.devices for r in b.reasons_on(d)]
    return "unavailable: " + "; ".join(dict.fromkeys(why))


def per_device(caps: Any, name: str) -> str:
    """'fwd,bwd' when every device has the same; 'cpu: fwd / cuda: fwd,bwd' when not."""
    values = {d: ", ".join(getattr(caps.on(d), name)) for d in caps.devices}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return " / ".join(f"{d}: {v}" for d, v in values.items())


def variants_text(caps: Any) -> str:
    """The variants a backend declares: 'all', '-' for none, else their names (per device
    where they differ)."""
    def one(c: Any) -> str:
        names = [v for v in VARIANTS if v in c.variants]
        return "all" if len(names) == len(VARIANTS) else ", ".join(names) or "-"

    values = {d: one(caps.on(d)) for d in caps.devices}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return " / ".join(f"{d}: {v}" for d, v in values.items())


def limits(caps: Any) -> str:
    """head_dim range and multiple, no grouped heads, no seq_q != seq_kv, minimum versions."""
    def one(c: Any) -> str:
        parts = []
        if c.head_dim_min > 1 or c.head_dim_max is not None:
            parts.append(f"head_dim {c.head_dim_min}..{c.head_dim_max or ''}")
        if c.head_dim_multiple > 1:
            parts.append(f"head_dim % {c.head_dim_multiple}")
        parts += [t for t, on in (("no gqa", not c.gqa), ("q=k only", not c.cross)) if on]
        return ", ".join(parts)

    values = {d: one(caps.on(d)) for d in caps.devices}
    text = next(iter(values.values())) if len(set(values.values())) == 1 else " / ".join(
        f"{d}: {v or '-'}" for d, v in values.items())
    versions = [f"{m} >= {v}" for m, v in caps.min_versions.items()]
    return plain(", ".join(filter(None, [text, *versions])))
