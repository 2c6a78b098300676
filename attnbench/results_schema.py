"""What a readable run.json and record hold: the schema version and the type of each field read."""

from __future__ import annotations

import math
from typing import Any

from attnbench.record import fields_problem

SCHEMA_VERSION = 1

# run.json fields that readers use, and the JSON type each must have when present
META_TYPES: dict[str, type | tuple[type, ...]] = {
    "run_id": str, "started": str, "command": str, "config": dict, "environment": dict,
    "plan": dict, "roofs": dict, "finished": bool, "resumes": list, "wall_s": (int, float),
}
NESTED_TYPES: dict[tuple[str, str], type | tuple[type, ...]] = {
    ("config", "scenarios"): list, ("environment", "versions"): dict,
    ("environment", "gpu"): (dict, type(None))}


def invalid_meta(meta: dict[str, Any]) -> str | None:
    """Why a run.json object cannot be read (a field of the wrong type), or None."""
    for key, kinds in META_TYPES.items():
        if key in meta and not _is(meta[key], kinds):
            return f"field {key!r} has the wrong type ({type(meta[key]).__name__})"
    for (outer, inner), kinds in NESTED_TYPES.items():
        value = meta.get(outer) or {}
        if isinstance(value, dict) and inner in value and not _is(value[inner], kinds):
            return f"field '{outer}.{inner}' has the wrong type ({type(value[inner]).__name__})"
    for device, roofs in (meta.get("roofs") or {}).items():
        if not isinstance(roofs, dict):
            return f"field 'roofs.{device}' has the wrong type ({type(roofs).__name__})"
    for i, s in enumerate((meta.get("config") or {}).get("scenarios") or []):
        if not (isinstance(s, dict) and isinstance(s.get("path"), str)
                and isinstance(s.get("spec"), dict)):
            return f"field 'config.scenarios[{i}]' is not a scenario (path and spec)"
    return None


def _is(value: Any, kinds: type | tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and (kinds is bool or not isinstance(value, bool))


# numbers (or null) that reports compute with, at the top of a record and in its sub-objects
NUMBERS = {(): ("scale", "softmax_scale", "io_bytes", "score_bytes", "gflops_per_s",
                "roof_flops_per_s", "roof_fraction", "gbytes_per_s", "arithmetic_intensity",
                "roof_bytes_per_s", "bandwidth_fraction", "roofline_flops_per_s",
                "roofline_fraction"),
           ("timing",): ("median_ms", "iqr_ms", "p20_ms", "p80_ms", "min_ms", "mean_ms",
                         "std_ms", "iqr_over_median"),
           ("memory",): ("peak_bytes", "base_bytes")}
# of those, the ones no real record has negative, infinite or NaN (a timing, a size, a rate);
# a median of 0 neither: ratios and logs of it are taken
NON_NEGATIVE = {(): ("io_bytes", "score_bytes", "gflops_per_s", "roof_flops_per_s",
                     "roof_fraction", "gbytes_per_s", "arithmetic_intensity", "roof_bytes_per_s",
                     "bandwidth_fraction", "roofline_flops_per_s", "roofline_fraction"),
                ("timing",): NUMBERS[("timing",)], ("memory",): NUMBERS[("memory",)]}
OUTPUT_NUMBERS = ("max_abs_err", "mean_abs_err", "rel_l2_err", "bound", "baseline_max_abs_err",
                  "error_over_bound")
# the other sub-fields readers use, and their JSON kinds (record.KINDS)
SUB_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "agreement": {"passed": ("bool", "null"), "problems": ("strs", "null"),
                  "rows_checked": ("str", "int", "null"), "check_seed": ("int", "null")},
    "timing": {"noisy": ("bool", "null")},
    "memory": {"method": ("str", "null")},
    "determinism": {"repeats": ("int", "null"), "bitwise_identical": ("bool", "null"),
                    "max_abs_diff": ("num", "null"), "differing": ("strs", "null")},
}
OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {"name": ("str", "null"), "passed": ("bool", "null"),
                 "nonfinite": ("int", "null"), "error": ("str", "null"),
                 "rule": ("str", "null"), "fallback_reason": ("str", "null"),
                 "shape": ("ints", "null")}


def shape_problem(rec: dict[str, Any]) -> str | None:
    """Why a record's nested fields cannot be computed with (beyond record.invalid_reason)."""
    for where, names in NUMBERS.items():
        obj = rec.get(where[0]) if where else rec
        if not isinstance(obj, dict):
            continue
        for name in names:
            if not _number_or_none(obj.get(name)):
                return f"field {'.'.join((*where, name))!r} is not a number"
            if name in NON_NEGATIVE[where] and not _measure_or_none(obj.get(name)):
                return (f"field {'.'.join((*where, name))!r} is {obj.get(name)!r}, "
                        "not a finite number >= 0")
    timing = rec.get("timing")
    if isinstance(timing, dict) and timing.get("median_ms") == 0:
        return "field 'timing.median_ms' is 0, not a time"
    samples = timing.get("samples_ms") if isinstance(timing, dict) else None
    if samples is not None and not (isinstance(samples, list)
                                    and all(_measure_or_none(x) and x is not None
                                            for x in samples)):
        return "field 'timing.samples_ms' is not a list of finite numbers >= 0"
    if samples == [] and isinstance(timing, dict) and timing.get("median_ms") is not None:
        return "field 'timing.samples_ms' is empty beside a median (its samples were dropped)"
    outputs = (rec.get("agreement") or {}).get("outputs")
    if outputs is not None and not (isinstance(outputs, list)
                                    and all(isinstance(o, dict) for o in outputs)):
        return "field 'agreement.outputs' is not a list of objects"
    for i, o in enumerate(outputs or []):
        bad = next((n for n in OUTPUT_NUMBERS if not _number_or_none(o.get(n))), None)
        if bad:
            return f"field 'agreement.outputs[{i}].{bad}' is not a number"
        problem = fields_problem(o, OUTPUT_FIELDS, f"agreement.outputs[{i}].")
        if problem:
            return problem
        missing = [n for n in ("max_abs_err", "bound") if o.get(n) is None]
        if missing and not o.get("error"):  # compared outputs carry their error and bound
            return (f"field 'agreement.outputs[{i}].{missing[0]}' is null in an output "
                    "without an error")
    for name, spec in SUB_FIELDS.items():
        sub = rec.get(name)
        problem = fields_problem(sub, spec, f"{name}.") if isinstance(sub, dict) else None
        if problem:
            return problem
    return None


def _number_or_none(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def _measure_or_none(x: Any) -> bool:
    """None, or a finite number >= 0 (NaN and infinities fail both tests)."""
    return x is None or (_number_or_none(x) and 0 <= x < math.inf)
