"""`--repeat N`: a case's call run N times in one worker; are outputs and gradients bitwise equal?

The prepared callable (in bwd and fwd_bwd modes the autograd step, which sets fresh gradients
each call) is called N − 1 more times on the same inputs after the checked first call; every
output and gradient is compared with the first call's, bit for bit (a float64 copy of a float16,
bfloat16 or float32 value is exact, so equal copies mean equal bits; +0 and −0 differ). A
nondeterministic backend (atomics in a backward, a split-K reduction order that changes) is
reported with its largest difference; only `check --require-deterministic` makes it a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from attnbench.verify.agreement import to_numpy64
from attnbench.verify.grad import GRAD_NAMES

MIN_REPEATS = 2


def snapshot(out: Any, grads: dict[str, Any] | None) -> dict[str, np.ndarray]:
    """float64 copies of an output (and its lse, out being (out, lse)) and its gradients (none
    when the gradient is missing)."""
    taken: dict[str, np.ndarray] = {}
    if isinstance(out, tuple) and len(out) == 2:  # a case with lse = true
        out, taken["lse"] = out[0], to_numpy64(out[1]).copy()
    taken["out"] = to_numpy64(out).copy()
    for name, g in (grads or {}).items():
        if g is not None:
            taken[name] = to_numpy64(g).copy()
    return taken


def current_grads(inputs: Any) -> dict[str, Any]:
    """The gradients autograd left on q, k and v after the last step."""
    return {n: getattr(inputs, x).grad for n, x in zip(GRAD_NAMES, ("q", "k", "v"), strict=True)}


def differences(first: dict[str, np.ndarray], again: dict[str, np.ndarray]) -> dict[str, float]:
    """Per name: 0.0 when bitwise equal, else the largest absolute difference (inf when shape,
    presence or NaN positions differ)."""
    out = {}
    for name in sorted(set(first) | set(again)):
        a, b = first.get(name), again.get(name)
        if a is None or b is None or a.shape != b.shape:
            out[name] = float("inf")
        elif a.tobytes() == b.tobytes():
            out[name] = 0.0
        else:
            out[name] = _max_diff(a, b)
    return out


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return float("inf")
    with np.errstate(invalid="ignore"):
        d = np.abs(np.where(nan_a, 0.0, a) - np.where(nan_b, 0.0, b))
    d = np.where(np.isnan(d), np.inf, d)  # inf − inf
    # bits differ but the values compare equal (+0 vs −0): the smallest positive difference
    return float(d.max()) if d.max() > 0 else float(np.finfo(np.float64).tiny)


def repeat_check(step: Callable[[], Any], first: dict[str, np.ndarray],
                 grads_after: Callable[[], dict[str, Any]] | None, repeats: int,
                 sync: Callable[[], None]) -> dict[str, Any]:
    """Call step repeats − 1 more times; the record's "determinism" entry."""
    worst: dict[str, float] = dict.fromkeys(first, 0.0)
    for _ in range(repeats - 1):
        out = step()
        sync()
        again = snapshot(out, grads_after() if grads_after else None)
        del out
        for name, d in differences(first, again).items():
            worst[name] = max(worst.get(name, 0.0), d)
    differing = [n for n, d in worst.items() if d > 0]
    return {"repeats": repeats, "bitwise_identical": not differing,
            "max_abs_diff": max(worst.values(), default=0.0), "compared": sorted(worst),
            "differing": differing}


def checked_by_parent(claim: Any, timed: Any) -> Any:
    """The worker's determinism claim, overruled where the parent's own evidence says otherwise:
    a timed call's array it read (verify/judge.py) that differs bitwise from the first call's
    makes the record not deterministic, whatever the worker reported."""
    differing = timed.get("differing_from_first") if isinstance(timed, dict) else None
    if not isinstance(claim, dict) or not isinstance(differing, dict) or not differing:
        return claim
    names = sorted(differing)
    worst = max([float(claim.get("max_abs_diff") or 0.0), *differing.values()])
    return {**claim, "bitwise_identical": False, "max_abs_diff": worst,
            "differing": sorted({*(claim.get("differing") or []), *names}),
            "overruled": f"the worker said {claim.get('bitwise_identical')!r}, but the timed "
                         f"calls' {', '.join(names)} the parent read differ bitwise from the "
                         "first call's"}


def nondeterministic(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records whose repeat check found a difference."""
    return [r for r in records if isinstance(r.get("determinism"), dict)
            and r["determinism"].get("bitwise_identical") is False]
