"""Where a mismatched output is wrong: error maps (head × row, key block) and a pattern label.

Made in the parent for an output that failed its bound, from the same float64 inputs and oracle:

- the row map: the worst error/bound per head and band of compared query rows (the batch
  folded in), ≤ MAX_ROW_BINS bands;
- the key map: for ≤ MAX_KEY_BLOCKS blocks of keys, the share of the error left when the oracle
  leaves that block out (≈ 0: the output is the attention without those keys), on the worst
  rows, within KEY_MAP_FLOPS of oracle work;
- labels for the patterns found, each checked, not guessed: every row scaled by one factor (a
  least-squares fit leaves < EXPLAINED of the error), NaN/Inf rows, padding rows or rows that
  see no key not 0, rows from a length on, one head or some heads, a key block left out, keys
  past the lengths read (the oracle with the padding visible explains the output).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from attnbench import variants
from attnbench.case import Case
from attnbench.verify.bound import Allowance, element_ratios
from attnbench.verify.reference import oracle
from attnbench.verify.rounding import Model

MAX_ROW_BINS = 32
MAX_KEY_BLOCKS = 16
MAX_ROWS = 128  # the worst rows the key map and the length hypotheses are computed on
KEY_MAP_FLOPS = 2**32  # matmul FLOPs the key map may spend (float64 oracle, ~2 s)
EXPLAINED = 0.05  # an alternative explains the output when ≤ 5 % of the error is left
MOST = 0.9  # "every row" / "rows from r on": at least this share of them fail
CAP = 1e9  # error/bound above this is stored as this (inf at NaN: JSON has no inf)


def diagnose(case: Case, arrays: dict[str, np.ndarray], rows: np.ndarray, model: Model,
             allowance: Allowance | None, got: np.ndarray) -> dict[str, Any]:
    """The maps and the pattern of a failed output; got: its compared rows in float64, in the
    padded layout, (batch, heads, len(rows), dv)."""
    per_row = element_ratios(got, model, allowance).max(axis=3, initial=0.0)  # (B, H, R)
    failing = per_row > 1.0
    worst = _worst_rows(per_row)
    labels = _scaled(got, model.ref) + _nonfinite(case, got, rows)
    labels += _row_labels(case, rows, failing)
    key_map = _key_map(case, arrays, rows, worst, got, model.ref)
    labels += _key_labels(case, arrays, rows, worst, got, model.ref, key_map)
    if not labels:
        labels = [_scattered(failing, rows)]
    out = {"pattern": "; ".join(labels), "labels": labels, "row_map": _row_map(per_row, rows)}
    if key_map is not None:
        out["key_map"] = key_map
    return out


def _cap(x: float) -> float:
    return float(f"{min(float(x), CAP):.3g}")


def _row_map(per_row: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    """{"rows": first query row of each band, "last_row", "ratio": [head][band] worst}."""
    n = per_row.shape[2]
    bins = min(MAX_ROW_BINS, n)
    edges = np.linspace(0, n, bins + 1).astype(int)
    head_row = per_row.max(axis=0, initial=0.0)  # (H, R)
    bands = list(zip(edges[:-1], edges[1:], strict=True))
    ratio = [[_cap(head_row[h, a:b].max(initial=0.0)) for a, b in bands]
             for h in range(head_row.shape[0])]
    return {"rows": [int(rows[a]) for a in edges[:-1]], "last_row": int(rows[-1]) if n else 0,
            "ratio": ratio}


def _worst_rows(per_row: np.ndarray) -> np.ndarray:
    """Positions (in the compared rows) of the MAX_ROWS rows with the worst error."""
    by_row = per_row.max(axis=(0, 1), initial=0.0)
    order = np.argsort(-by_row, kind="stable")[:MAX_ROWS]
    return np.sort(order[by_row[order] > 1.0])


def _fit_left(got: np.ndarray, alt: np.ndarray, ref: np.ndarray) -> float:
    """The error against alt as a share of the error against ref (finite elements)."""
    finite = np.isfinite(got)
    base = np.abs(np.where(finite, got - ref, 0.0)).max(initial=0.0)
    left = np.abs(np.where(finite, got - alt, 0.0)).max(initial=0.0)
    return float(left / base) if base > 0 else 1.0


def _scaled(got: np.ndarray, ref: np.ndarray) -> list[str]:
    """"every row scaled by c" when one factor explains the whole output."""
    finite = np.isfinite(got)
    g, r = np.where(finite, got, 0.0), np.where(finite, ref, 0.0)
    rr = float((r * r).sum())
    if rr == 0:
        return []
    c = float((g * r).sum()) / rr
    if abs(c - 1) > 1e-6 and _fit_left(got, c * ref, ref) <= EXPLAINED:
        return [f"every row scaled by {c:.6g}"]
    return []


def _nonfinite(case: Case, got: np.ndarray, rows: np.ndarray) -> list[str]:
    """NaN/Inf rows; on inputs with NaN where no row may read (poisoned padding, the other
    channels of a sliced projection) they say the backend read there."""
    bad = ~np.isfinite(got).all(axis=(0, 1, 3))
    if not bad.any():
        return []
    at = rows[bad]
    read = ""
    if case.poison:
        read = ": it read the NaN-poisoned padding"
    elif case.strides == "sliced":
        read = ": it read the NaN channels beside its sliced inputs"
    return [f"NaN/Inf in {int(bad.sum())} of {len(rows)} compared rows (first at row "
            f"{int(at[0])}){read}"]


def _row_labels(case: Case, rows: np.ndarray, failing: np.ndarray) -> list[str]:
    """Padding rows, empty rows, rows from a length on, and heads, from the failing map."""
    if not failing.any():
        return []
    out = []
    empty = np.stack([_empty(case, b, rows) for b in range(case.batch)])  # (B, R)
    fail_rows: np.ndarray = np.asarray(failing.any(axis=1))  # (B, R)
    padding = _padding_rows(case, rows)
    if padding.any() and fail_rows[padding].all() and not fail_rows[~padding].any():
        out.append("padding rows (past q_lens) are not 0")
    elif empty.any() and not fail_rows[~empty].any():
        out.append("rows that see no key are not 0")
    else:
        any_row: np.ndarray = np.asarray(fail_rows.any(axis=0))
        first = int(np.argmax(any_row))
        if first > 0 and any_row[first:].mean() >= MOST:
            out.append(f"rows from query row {int(rows[first])} on")
        elif any_row.mean() >= MOST:
            out.append("every row")
    heads = np.flatnonzero(failing.any(axis=(0, 2)))
    if 0 < len(heads) < case.heads_q:
        out.append(f"one head (head {heads[0]})" if len(heads) == 1 else
                   f"heads {', '.join(map(str, heads[:8]))}{' …' if len(heads) > 8 else ''}"
                   f" of {case.heads_q}")
    return out


def _empty(case: Case, b: int, rows: np.ndarray) -> np.ndarray:
    return np.asarray(variants.row_counts(case, b)[rows] == 0)


def _padding_rows(case: Case, rows: np.ndarray) -> np.ndarray:
    """(B, R): True on the compared rows past each batch element's query length."""
    q_lens, _ = variants.lengths(case)
    return rows[None, :] >= q_lens[:, None]


def _key_blocks(seq_kv: int) -> list[tuple[int, int]]:
    """≤ MAX_KEY_BLOCKS blocks of keys [start, stop), power-of-two sized, at least 16 keys."""
    size = 16
    while -(-seq_kv // size) > MAX_KEY_BLOCKS:
        size *= 2
    return [(a, min(a + size, seq_kv)) for a in range(0, seq_kv, size)]


def _key_map(case: Case, arrays: dict[str, np.ndarray], rows: np.ndarray, worst: np.ndarray,
             got: np.ndarray, ref: np.ndarray) -> dict[str, Any] | None:
    """For each key block, the share of the error left when the oracle leaves it out."""
    blocks = _key_blocks(case.seq_kv)
    cost = 2 * case.batch * case.heads_q * len(worst) * case.seq_kv * (case.head_dim + case.dv)
    if not len(worst) or len(blocks) < 2 or cost * len(blocks) > KEY_MAP_FLOPS:
        return None
    sub_rows, g, r = rows[worst], got[:, :, worst], ref[:, :, worst]
    left = []
    for a, b in blocks:
        hidden = np.zeros(case.seq_kv, dtype=bool)
        hidden[a:b] = True
        left.append(_cap(_fit_left(g, oracle(arrays, case, sub_rows, hidden), r)))
    return {"blocks": [[a, b] for a, b in blocks], "error_left": left}


def _key_labels(case: Case, arrays: dict[str, np.ndarray], rows: np.ndarray,
                worst: np.ndarray, got: np.ndarray, ref: np.ndarray,
                key_map: dict[str, Any] | None) -> list[str]:
    """A key block left out, or keys past the lengths read, when that explains the output."""
    out = []
    if key_map is not None:
        left = key_map["error_left"]
        i = int(np.argmin(left))
        if left[i] <= EXPLAINED:
            a, b = key_map["blocks"][i]
            last = " (the last key block)" if b == case.seq_kv else ""
            out.append(f"keys {a}..{b - 1} left out{last}")
    if len(worst) and (case.q_lens is not None or case.kv_lens is not None):
        wrong_cases = ((dataclasses.replace(case, kv_lens=None),
                        "keys past kv_lens read (the padding)"),
                       (dataclasses.replace(case, q_lens=None, kv_lens=None),
                        "the lengths ignored (every sequence taken at full length)"))
        for alt_case, what in wrong_cases:
            try:
                alt = oracle(arrays, alt_case, rows[worst])
            except (ValueError, TypeError):
                continue
            if _fit_left(got[:, :, worst], alt, ref[:, :, worst]) <= EXPLAINED:
                out.append(what)
                break
    return out


def _scattered(failing: np.ndarray, rows: np.ndarray) -> str:
    fail_rows = failing.any(axis=(0, 1))
    heads = failing.any(axis=(0, 2))
    if not fail_rows.any():
        return "no element over its bound: a fitted scale or a head's L2 error is"
    return (f"{int(fail_rows.sum())} of {len(rows)} compared rows in {int(heads.sum())} of "
            f"{failing.shape[1]} heads")
