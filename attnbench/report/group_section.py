"""One group's section of the report: its cases × backends table, its plots and mask picture."""

from __future__ import annotations

from typing import Any

from attnbench.record import Status, median_ms
from attnbench.report import masks
from attnbench.report.groups import Group, field_label
from attnbench.report.plot_kit import Plot
from attnbench.report.render import Cell, Heading, Image, Table, Text

STATUS_MARK = {Status.OK: "✓", Status.MISMATCH: "✗"}


def case_label(g: Group, rec: dict[str, Any]) -> str:
    """Row label of a case: the x-axis value then its variant."""
    return " ".join(filter(None, [field_label(g.axis, rec.get(g.axis)), g.variant(rec)]))


def cell_text(rec: dict[str, Any] | None, base_ms: float | None) -> str:
    """'12.345 ms ×2.10 ✓', 'mismatch 3.1 ms ✗', 'oom', 'unsupported' ..."""
    if rec is None:
        return ""
    status, med = rec.get("status", "?"), median_ms(rec)
    if status in STATUS_MARK and med is not None:
        speed = f" ×{base_ms / med:.2f}" if base_ms and med else ""
        return f"{med:.3f} ms{speed} {STATUS_MARK[status]}"
    return str(status) if status not in STATUS_MARK else f"{status} (not timed)"


def group_table(g: Group, baseline: str) -> Table:
    """Cases as rows, backends as columns: median ms, speedup over the baseline, status."""
    backends, variants = g.backends(), g.variants()
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    order: dict[str, tuple[Any, ...]] = {}
    for r in g.records:
        by_case.setdefault(r["case_id"], {})[r["backend"]] = r
        order[r["case_id"]] = (variants.index(g.variant(r)), r.get(g.axis) or 0)
    rows = []
    for case_id in sorted(by_case, key=lambda c: order[c]):
        recs = by_case[case_id]
        base_rec = recs.get(baseline) or {}
        base = median_ms(base_rec) if base_rec.get("status") == Status.OK else None  # as csv, plots
        timed = {b: median_ms(r) for b, r in recs.items() if r.get("status") == Status.OK}
        timed = {b: m for b, m in timed.items() if m is not None}
        best = min(timed, key=lambda b: timed[b]) if len(timed) > 1 else None
        first = next(iter(recs.values()))
        rows.append([Cell(case_label(g, first))] + [
            Cell(cell_text(recs.get(b), base) + (" ★" if b == best else ""), b == best)
            for b in backends])
    caption = (f"median per call; ×N = speedup over {baseline}; ✓ agrees with the oracle, "
               "✗ mismatch; ★ fastest agreeing backend of the row")
    return Table(["case"] + backends, rows, caption)


def group_section(g: Group, made: list[Plot], baseline: str,
                  mask: Plot | None = None) -> list[Any]:
    """The group's heading, mask picture, table of cases and plots."""
    blocks: list[Any] = [Heading(2, g.title)]
    if mask is not None:  # floats beside the table in HTML
        blocks.append(Image(mask.png, f"{g.scenario} on {g.device}: {masks.CAPTION}", "mask"))
    if g.variant_fields:
        blocks.append(Text("cases also vary in: " + ", ".join(g.variant_fields)))
    blocks.append(group_table(g, baseline))
    blocks += [Image(p.png, f"{g.scenario} on {g.device}: {p.title}") for p in made]
    if not any(r.get("status") == Status.OK for r in g.records):
        blocks.append(Text(f"no backend ran {g.scenario} on {g.device} successfully.", True))
    return blocks
