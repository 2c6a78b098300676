"""Which gradient rows are compared: all of them within a FLOP budget, else a drawn sample.

Within GRAD_FLOP_BUDGET (the float64 oracle's matmul FLOPs, its floor included) every row of dq,
dk and dv is compared. Beyond it, half the budget goes to dq and half to dk and dv, never fewer
than MIN_ROWS rows nor one group, so nothing is ever skipped:

- dq: query rows in every (batch, head): the first, the last and rows drawn from the seed.
  dq_i depends on row i alone, so each costs one row of the oracle.
- dk, dv: key rows (the first, the last, each batch element's last key and drawn ones) of
  (batch, kv head) groups (the first, the last and drawn ones). dk_j and dv_j sum over every
  query row of the group, so a group costs at least its whole forward pass; groups are drawn
  before keys: a bug in one head is likelier to be seen than one in a few keys.

The seed is the caller's: it must be drawn after the backend has returned its gradients, from a
secret the backend never sees, so no backend can know which rows will be compared.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from attnbench import variants
from attnbench.case import Case

GRAD_FLOP_BUDGET = 2**35  # matmul FLOPs of the float64 gradient oracle and its floor
MIN_ROWS = 64  # rows (of dq) and keys (of dk, dv per group) compared at least


@dataclass(frozen=True)
class GradPlan:
    """The compared rows: dq's query rows (in every head), dk's and dv's keys and groups."""

    q_rows: np.ndarray
    groups: tuple[tuple[int, int], ...]  # (batch, kv head)
    k_rows: np.ndarray
    seed: int | None  # None: every row is compared, no draw
    n_groups: int  # of the case
    seq_q: int
    seq_kv: int

    @property
    def full(self) -> bool:
        """Every row of every gradient (dq then comes with dk and dv, from one pass)."""
        return self.seed is None

    @property
    def all_q_rows(self) -> bool:
        return len(self.q_rows) == self.seq_q

    @property
    def all_keys(self) -> bool:
        return len(self.k_rows) == self.seq_kv

    @property
    def all_groups(self) -> bool:
        return len(self.groups) == self.n_groups


def pair_flops(case: Case) -> dict[str, int]:
    """Matmul FLOPs per (query head, row, key) of the oracle's parts (grad_oracle)."""
    d, dv = case.head_dim, case.dv
    fwd = 2 * (2 * d + 2 * dv)  # scores, magnitudes, output, the spread of D's error
    cols = 2 * (2 * d + 4 * dv)  # dP, |dO||v|, dk and its floor, dv and its floor
    dq = 2 * 3 * d  # dq, its floor, Σ_j P_ij σ'_ij k_j
    return {"fwd": fwd, "cols": cols, "dq": fwd + 2 * 2 * dv + dq, "full": fwd + cols + dq}


def full_cost(case: Case) -> int:
    """FLOPs of the oracle on every row of every gradient."""
    return case.batch * case.heads_q * case.seq_q * case.seq_kv * pair_flops(case)["full"]


def grad_plan(case: Case, seed: int | None, budget: int | None = None) -> GradPlan:
    """Every row within the budget (GRAD_FLOP_BUDGET by default) or with no seed; else rows,
    keys and groups drawn from the seed."""
    budget = GRAD_FLOP_BUDGET if budget is None else budget
    every = [(b, h) for b in range(case.batch) for h in range(case.heads_kv)]
    if seed is None or full_cost(case) <= budget:
        return GradPlan(np.arange(case.seq_q), tuple(every), np.arange(case.seq_kv), None,
                        len(every), case.seq_q, case.seq_kv)
    rng = np.random.default_rng([seed % 2**63, zlib.crc32(case.id.encode())])
    flops, half = pair_flops(case), budget // 2
    per_row = case.batch * case.heads_q * case.seq_kv * flops["dq"]
    q_rows = _draw(rng, case.seq_q, half // per_row, [0, case.seq_q - 1])
    group = case.heads_q // case.heads_kv
    fwd = group * case.seq_q * case.seq_kv * flops["fwd"]
    per_key = group * case.seq_q * flops["cols"]
    fit = half // (fwd + MIN_ROWS * per_key)
    picked = _draw(rng, len(every), fit, [0, len(every) - 1], least=1)
    keys = (half // len(picked) - fwd) // per_key
    _, kv_lens = variants.lengths(case)
    edges = [0, case.seq_kv - 1, *[int(n) - 1 for n in kv_lens if n > 0]]
    k_rows = _draw(rng, case.seq_kv, keys, edges)
    return GradPlan(q_rows, tuple(every[i] for i in picked), k_rows, seed, len(every),
                    case.seq_q, case.seq_kv)


def _draw(rng: np.random.Generator, n: int, count: int, edges: list[int],
          least: int = MIN_ROWS) -> np.ndarray:
    """count of range(n) (at least `least`, at most n): the edges first, the rest drawn."""
    count = int(min(n, max(least, count)))
    if count >= n:
        return np.arange(n)
    fixed = np.unique(np.asarray(edges, dtype=np.int64))[:count]
    rest = np.setdiff1d(np.arange(n), fixed)
    drawn = rng.choice(rest, size=count - len(fixed), replace=False)
    return np.unique(np.concatenate([fixed, drawn]))
