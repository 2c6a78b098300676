"""The verdict on what a worker shipped, made in the parent: first call and timed calls alike.

The worker wrote the first call's output (and gradients) and the outputs of two timed calls (the
last one and one drawn at random) as files, which the parent read back at once (worker/arrays);
this module compares each with the float64 oracle under the case's pass rule. A timed call's
array that is bitwise identical to the first call's is counted as verified; one that differs is
compared with the oracle itself, so a backend right on its first call and wrong when timed is a
mismatch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attnbench.plugin.outputs import LSE_CONTRACT
from attnbench.verify import agreement, grad, layouts
from attnbench.verify.casedata import CaseData, expected_shape
from attnbench.verify.determinism import differences
from attnbench.verify.diagnose import diagnose
from attnbench.verify.lse import judge_lse

TIMED_TAGS = ("last", "drawn")  # the timed calls a worker ships (worker/shipping.Keeper)


Shipped = dict[str, Any]  # "call.name" -> (values, dtype) or why refused (arrays.receive_all)


def judge(data: CaseData, framework: str, arrays: Shipped) -> dict[str, Any] | None:
    """The record's agreement entry from the arrays a worker shipped, as read by the parent
    (framework: the backend's, which picks the same-dtype baseline); None when none."""
    if not isinstance(arrays, dict) or "first.out" not in arrays:
        return None
    case = data.case
    first = _call(arrays, "first")
    entries = [_output_entry(data, framework, first.get("out"), "out")]
    if case.lse:
        entries.append(_lse_entry(data, framework, first.get("lse")))
    grad_note, grad_seed = None, None
    if case.mode != "fwd":
        checked = _grad_entries(data, first)
        entries += checked["entries"]
        grad_note, grad_seed = checked["note"], checked["seed"]
    agree: dict[str, Any] = {
        "outputs": entries, "rows_checked": "all" if len(data.rows) == case.seq_q
        else int(len(data.rows)), "oracle": "float64 numpy", "check_seed": data.check_seed,
        "out_dtype": _dtype(first.get("out"))}
    if grad_note is not None:
        agree["grads_checked"], agree["grad_seed"] = grad_note, grad_seed
    agree["timed_calls"] = _timed(data, framework, arrays, first, agree)
    agree["passed"] = all(o.get("passed") for o in agree["outputs"])
    return agree


Loaded = dict[str, tuple[np.ndarray, str] | str]  # name -> (values, dtype) or why refused


def _call(arrays: Shipped, tag: str) -> Loaded:
    """The arrays of one call ("first", "last", "drawn") by name ("out", "dq", ...)."""
    out: Loaded = {}
    for key, got in arrays.items():
        call, _, name = str(key).partition(".")
        if call == tag:
            out[name] = got
    return out


def _dtype(got: Any) -> str | None:
    return got[1] if isinstance(got, tuple) else None


def _output_entry(data: CaseData, framework: str, got: Any, name: str) -> dict[str, Any]:
    """One output's agreement entry (a refused array fails with the reason)."""
    if not isinstance(got, tuple):
        return {"name": name, "passed": False, "shape": [], "error": str(got or "no output")}
    values, dtype = got
    case = data.case
    select = agreement.rows_of(data.rows, case.seq_q)
    if case.layout == "packed":  # compared in the padded layout, zeros past each length
        padded = select

        def select(x: Any) -> np.ndarray:
            return padded(layouts.padded_output(agreement.to_numpy64(x), case))
    rule = data.rule(framework)
    entry = agreement.compare(name, values, expected_shape(case), select, data.ref, rule, dtype)
    if not entry.get("passed") and "error" not in entry and rule.model is not None:
        entry["diagnosis"] = _diagnosis(data, rule, select(values))
    return entry


def _lse_entry(data: CaseData, framework: str, got: Any) -> dict[str, Any]:
    """The lse's agreement entry (verify/lse.py) with the same-dtype baseline's ratio; a
    missing or refused one fails with why."""
    if not isinstance(got, tuple):
        return {"name": "lse", "passed": False, "shape": [],
                "error": str(got or f"no lse: {LSE_CONTRACT}")}
    entry = judge_lse(got[0], got[1], data.lse, data.rows, data.case)
    return {**entry, **data.lse_calibration(framework)}


def _diagnosis(data: CaseData, rule: agreement.Rule, got: np.ndarray) -> dict[str, Any]:
    """Where a failed output is wrong (verify/diagnose.py); a diagnosis that itself fails
    says so instead of hiding the verdict."""
    assert rule.model is not None
    try:
        return diagnose(data.case, data.arrays, data.rows, rule.model, rule.allowance, got)
    except Exception as exc:  # the verdict stands without a diagnosis
        return {"pattern": f"not diagnosed: {type(exc).__name__}: {exc}"[:300]}


def _grad_entries(data: CaseData, call: Loaded) -> dict[str, Any]:
    """dq, dk, dv entries of one call (a refused gradient fails with the reason), the note on
    which rows were compared and the seed that drew them (None when all were)."""
    grads: dict[str, np.ndarray | None] = {}
    dtypes: dict[str, str] = {}
    refused: list[dict[str, Any]] = []
    for n in grad.GRAD_NAMES:
        got = call.get(n)
        if isinstance(got, tuple):
            grads[n], dtypes[n] = got
        else:
            grads[n] = None
            if got is not None:
                refused.append({"name": n, "passed": False, "shape": [], "error": got})
    plan, ref = data.grad_check()
    entries = grad.grad_entries(data.case, ref, grads, dtypes)
    names = {r["name"] for r in refused}
    return {"entries": [e for e in entries if e["name"] not in names] + refused,
            "note": grad.coverage(data.case, plan),
            "seed": None if plan.full else data.grad_seed}


def _timed(data: CaseData, framework: str, arrays: Shipped, first: Loaded,
           agree: dict[str, Any]) -> dict[str, Any]:
    """Verify the timed calls' arrays: identical to the first call's, or checked themselves."""
    summary: dict[str, Any] = {"checked": 0, "identical_to_first": 0, "compared": 0}
    # what every timed call must give: the first call's arrays (bwd: its gradients only)
    expected = [n for n in first if n != "out" or data.case.mode != "bwd"]
    for tag in TIMED_TAGS:
        call = _call(arrays, tag)
        if not call:
            continue
        summary["checked"] += 1
        if all(_identical(call.get(n), first.get(n)) for n in expected):
            summary["identical_to_first"] += 1
            continue
        _note_differing(summary, call, first, expected)
        summary["compared"] += 1
        for entry in _call_entries(data, framework, call, expected):
            if not entry.get("passed"):
                entry["name"] = f"{entry['name']} (a timed call: the {tag})"
                agree["outputs"].append(entry)
    return summary


def _note_differing(summary: dict[str, Any], call: Loaded, first: Loaded, expected: list[str]
                    ) -> None:
    """The arrays of a timed call that differ bitwise from the first call's, with the largest
    difference (the parent's own evidence on --repeat's determinism, verify/determinism.py)."""
    read = [n for n in expected if isinstance(call.get(n), tuple)
            and isinstance(first.get(n), tuple) and not _identical(call[n], first[n])]
    if not read:
        return
    diffs = differences({n: _values(first[n]).astype(np.float64) for n in read},
                        {n: _values(call[n]).astype(np.float64) for n in read})
    got = summary.setdefault("differing_from_first", {})
    for name, d in diffs.items():
        got[name] = max(got.get(name, 0.0), d)


def _identical(a: Any, b: Any) -> bool:
    return (isinstance(a, tuple) and isinstance(b, tuple) and a[1] == b[1]
            and a[0].shape == b[0].shape and a[0].tobytes() == b[0].tobytes())


def _call_entries(data: CaseData, framework: str, call: Loaded, expected: list[str]
                  ) -> list[dict[str, Any]]:
    """Entries of a timed call's arrays: each one the first call gave (its output unless bwd,
    its gradients), a missing one failing ("no output", "no gradient")."""
    entries = [_output_entry(data, framework, call.get("out"), "out")] \
        if "out" in expected else []
    if "lse" in expected:
        entries.append(_lse_entry(data, framework, call.get("lse")))
    if any(n in expected for n in grad.GRAD_NAMES):
        entries += _grad_entries(data, call)["entries"]
    return entries


def _values(entry: tuple[np.ndarray, str] | str) -> np.ndarray:
    """The values of a shipped array that was read (the callers checked it was)."""
    if isinstance(entry, str):
        raise TypeError(f"an array refused, not read: {entry}")
    return entry[0]
