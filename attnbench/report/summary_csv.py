"""summary.csv: one row per record with its headline numbers, cells safe from formulas."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from attnbench.record import Status, error_ratio, median_ms, peak_bytes
from attnbench.report.groups import Group
from attnbench.sanitize import csv_cell

CSV_VARIANT_FIELDS = ["window_left", "window_right", "q_lens", "kv_lens", "doc_lens", "layout",
                      "page_size", "alibi", "bias", "softcap", "head_dim_v", "sinks", "lse",
                      "mask_mod", "kv_quant", "kv_scale", "inputs", "poison", "strides"]
CSV_FIELDS = ["run", "scenario", "device", "backend", "case_id", "variant", "batch", "heads_q",
              "heads_kv", "seq_q", "seq_kv", "head_dim", "dtype", "mask", "mode",
              *CSV_VARIANT_FIELDS, "status", "median_ms", "iqr_ms", "prepare_ms", "first_call_ms",
              "gflops_per_s", "roof_fraction", "gbytes_per_s", "arithmetic_intensity",
              "bandwidth_fraction", "roofline_fraction", "bound_by", "peak_bytes",
              "error_over_bound", "speedup_vs_baseline", "repeats", "bitwise_identical",
              "repeat_max_abs_diff"]


def write_csv(path: Path, groups: list[Group], baseline: str) -> None:
    """One row per record with the headline numbers."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for g in groups:
            base = {r["case_id"]: median_ms(r) for r in g.records
                    if r["backend"] == baseline and r.get("status") == Status.OK}
            for r in g.records:
                med, b = median_ms(r), base.get(r["case_id"])
                row = {**r, "run": g.run.label, "variant": g.variant(r), "median_ms": med,
                       "iqr_ms": (r.get("timing") or {}).get("iqr_ms"),
                       "peak_bytes": peak_bytes(r), "error_over_bound": error_ratio(r),
                       "speedup_vs_baseline": b / med if b and med else None,
                       **determinism_columns(r)}
                for k in ("q_lens", "kv_lens", "doc_lens"):  # lengths: "512 300 0"
                    if isinstance(row.get(k), list):
                        row[k] = " ".join(map(str, row[k]))
                w.writerow({k: csv_cell(row.get(k)) for k in CSV_FIELDS})  # no formulas


def determinism_columns(r: dict[str, Any]) -> dict[str, Any]:
    """The CSV columns of a record's repeat check (empty without one)."""
    det = r.get("determinism")
    if not isinstance(det, dict):
        return {}
    return {"repeats": det.get("repeats"), "bitwise_identical": det.get("bitwise_identical"),
            "repeat_max_abs_diff": det.get("max_abs_diff")}
