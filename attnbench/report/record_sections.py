"""Report sections over every record: agreement, margin to the bound, determinism, measurements."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from attnbench.measure.roof import unmeasured
from attnbench.record import NOT_OK, VERIFIED, Status, error_ratio, failure_text, peak_bytes
from attnbench.report.groups import Group
from attnbench.report.render import Cell, Heading, Table, Text


def agreement_section(groups: list[Group]) -> list[Any]:
    """Backend × scenario: how many cases passed, mismatched, were unsupported (and why)."""
    scenarios = sorted({g.scenario for g in groups})
    backends = sorted({r["backend"] for g in groups for r in g.records})
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for g in groups:
        for r in g.records:
            cells.setdefault((r["backend"], g.scenario), []).append(r)
    rows = [[Cell(b)] + [Cell(agreement_cell(cells.get((b, s), [])), wrap=True)
                         for s in scenarios] for b in backends]
    return [Heading(2, "Agreement"), Table(["backend"] + scenarios, rows)]


def margin_section(groups: list[Group]) -> list[Any]:
    """Per backend, the distribution of error/bound over its checked records: how close to the
    edge of the pass rule it runs (1 is the bound)."""
    ratios: dict[str, list[float]] = {}
    for g in groups:
        for r in g.records:
            e = error_ratio(r)
            if r.get("status") in VERIFIED and e is not None:
                ratios.setdefault(r["backend"], []).append(e)
    headers = ["backend", "records", "median", "p90", "max", "over 0.5"]
    rows = []
    for b, xs in sorted(ratios.items()):
        q = np.quantile(np.asarray(xs), [0.5, 0.9]) if all(map(np.isfinite, xs)) else None
        mid, p90 = (f"{q[0]:.2g}", f"{q[1]:.2g}") if q is not None else ("–", "–")
        rows.append([Cell(b), Cell(str(len(xs))), Cell(mid), Cell(p90), Cell(f"{max(xs):.2g}"),
                     Cell(str(sum(x > 0.5 for x in xs)))])
    intro = Text("error/bound of each checked output (the worst row's error over that row's "
                 "bound; a record passes at 1 or less), per backend over every record.")
    return [Heading(2, "How close to the bound"), intro, Table(headers, rows)] if rows else []


def determinism_section(groups: list[Group]) -> list[Any]:
    """Per backend and scenario, the records whose repeated calls (--repeat) were bitwise
    identical, and the largest difference where they were not."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for g in groups:
        for r in g.records:
            if isinstance(r.get("determinism"), dict):
                cells.setdefault((r["backend"], g.scenario), []).append(r["determinism"])
    if not cells:
        return []
    rows = []
    for (backend, scenario), dets in sorted(cells.items()):
        same = sum(bool(d.get("bitwise_identical")) for d in dets)
        worst = max(float(d.get("max_abs_diff") or 0) for d in dets)
        names = sorted({str(n) for d in dets for n in d.get("differing") or []})
        calls = ", ".join(sorted({str(d.get("repeats")) for d in dets}))
        rows.append([Cell(backend), Cell(scenario), Cell(calls), Cell(f"{same} of {len(dets)}"),
                     Cell("deterministic" if same == len(dets) else "NOT deterministic"),
                     Cell(_num(worst) if worst else "0"), Cell(", ".join(names) or "–")])
    intro = Text("check/run --repeat N: each case's prepared call run N times in one worker; "
                 "outputs (and gradients in bwd and fwd_bwd) compared bit for bit with the "
                 "first call's.")
    headers = ["backend", "scenario", "calls", "bitwise identical", "verdict",
               "largest difference", "differing"]
    return [Heading(2, "Determinism"), intro, Table(headers, rows)]


def agreement_cell(recs: list[dict[str, Any]]) -> str:
    if not recs:
        return "–"
    counts = Counter(r.get("status") for r in recs)
    names = {Status.OK: "passed", Status.MISMATCH: "mismatched"}
    parts = [f"{n} {names.get(str(s), str(s))}" for s, n in sorted(counts.items(), key=str)]
    reasons = list(dict.fromkeys(x for r in recs if r.get("status") == Status.UNSUPPORTED
                                 for x in r.get("reasons") or []))
    if reasons:
        more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
        parts.append(f"unsupported because: {reasons[0][:160]}{more}")
    worst = max((e for r in recs if (e := error_ratio(r)) is not None), default=None)
    if worst is not None:
        parts.append(f"worst error/bound {worst:.2g}")
    for field, text in (("fallback_reason", "fixed bounds used because"),
                        ("baseline_missing", "no same-dtype baseline to calibrate the model"),
                        ("baseline_fallback", "baseline allowance added because")):
        why = list(dict.fromkeys(o[field] for r in recs
                                 for o in (r.get("agreement") or {}).get("outputs") or []
                                 if isinstance(o, dict) and o.get(field)))
        if why:  # the pass rule fell back, or its calibration is missing: say why
            more = f" (+{len(why) - 1} more)" if len(why) > 1 else ""
            parts.append(f"{text}: {str(why[0])[:160]}{more}")
    return "; ".join(parts)


RECORD_HEADERS = ["run", "scenario", "backend", "case", "set-up ms", "first call ms", "median ms",
                  "IQR ms", "peak MiB", "naive scores MiB", "GFLOP/s", "GB/s", "% of roof",
                  "% of roofline", "error/bound"]


def records_section(groups: list[Group]) -> list[Any]:
    """Every measured record: first call, median, IQR, peak memory, GFLOP/s, roof fraction."""
    rows = [[Cell(v) for v in record_row(g, r)] for g in groups for r in g.records
            if r.get("status") in VERIFIED]
    if not rows:
        return []
    intro = Text("One row per measured record. first call: JIT, compile and page faults, kept "
                 "out of the median; IQR marked ~ when noisy (IQR/median ≥ 10 %); peak memory "
                 "beyond the inputs, next to what a naive score matrix would hold. GB/s: q, k, "
                 "v read and out written once over the median; % of roof: of the matmul roof; "
                 "% of roofline: of min(matmul roof, FLOPs/byte x copy bandwidth), with the "
                 "roof that bounds the case (memory below the ridge, compute above).")
    runs = {id(g.run): g.run for g in groups}.values()
    no_roof = [Text(f"no matmul roof for {device} {dtype} in run {run.label}: {why}")
               for run in runs for device, per in unmeasured(run.meta.get("roofs")).items()
               for dtype, why in per.items()]
    return [Heading(2, "Measurements"), intro, Table(RECORD_HEADERS, rows), *no_roof]


def record_row(g: Group, r: dict[str, Any]) -> list[str]:
    timing = r.get("timing") or {}
    peak, scores = peak_bytes(r), r.get("score_bytes")
    roof, err = r.get("roof_fraction"), error_ratio(r)
    return [g.run.label, g.scenario, r["backend"], str(r.get("case_id")),
            _num(r.get("prepare_ms")), _num(r.get("first_call_ms")),
            _num(timing.get("median_ms")),
            _num(timing.get("iqr_ms")) + (" ~" if timing.get("noisy") else ""),
            _num(peak / 2**20 if peak is not None else None),
            _num(scores / 2**20 if scores else None), _num(r.get("gflops_per_s")),
            _num(r.get("gbytes_per_s")), _num(100 * roof if roof is not None else None),
            roofline_cell(r), _num(err)]


def roofline_cell(r: dict[str, Any]) -> str:
    """The fraction of the roofline reached, and which roof bounds the case: "41 memory"."""
    fraction, bound = r.get("roofline_fraction"), r.get("bound_by")
    if not isinstance(fraction, (int, float)):
        return "–"
    return f"{100 * fraction:.3g}" + (f" {bound}" if bound in ("memory", "compute") else "")


def _num(x: float | None) -> str:
    """Three significant digits, or – when missing."""
    return "–" if x is None else f"{x:.3g}"


def failures_section(groups: list[Group]) -> list[Any]:
    """Every record that is not ok or unsupported, with its message."""
    rows = []
    for g in groups:
        for r in g.records:
            if r.get("status") in NOT_OK:
                rows.append([Cell(v) for v in (g.run.label, g.scenario, r["backend"],
                                               str(r.get("case_id")), str(r.get("status")))]
                            + [Cell(failure_text(r)[:500], wrap=True)])
    if not rows:
        return [Heading(2, "Not ok"), Text("every record is ok or unsupported.")]
    return [Heading(2, "Not ok"), Table(["run", "scenario", "backend", "case", "status",
                                         "message"], rows)]
