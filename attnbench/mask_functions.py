"""Mask functions for the mask_mod key (attnbench/mask_mod.py), each a factory of its sizes.

Each returns fn(b, h, q_idx, kv_idx) → booleans made of comparisons and integer arithmetic
only, so the same function runs on NumPy arrays (the oracle) and on torch tensors (flex's
mask_mod). Name one in a scenario as "attnbench.mask_functions:prefix_lm(8)".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MaskFn = Callable[[Any, Any, Any, Any], Any]


def prefix_lm(prefix: int) -> MaskFn:
    """Prefix-LM: every query sees the first `prefix` keys, and the keys up to its own position
    (use with mask = "none": the causal part is in the function)."""
    def visible(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return (kv_idx < prefix) | (kv_idx <= q_idx)

    return visible


def dilated(step: int) -> MaskFn:
    """Dilated attention: a query sees the keys whose distance from it is a multiple of step."""
    def visible(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return (q_idx - kv_idx) % step == 0

    return visible


def random_blocks(block: int, keep_percent: int, seed: int = 0) -> MaskFn:
    """Random block-sparse: (query block, key block) pairs kept with about keep_percent %
    chance from a hash of the pair, the seed and the batch element; diagonal blocks always
    kept."""
    def visible(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        qb, kb = q_idx // block, kv_idx // block
        mixed = (qb * 73856093 + kb * 19349663 + (b + 1) * 83492791 + seed * 2654435) % 100
        return (mixed < keep_percent) | (qb == kb)

    return visible


def sequence_parity(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
    """A function, not a factory: even batch elements see only even keys, odd ones every key
    (a mask that differs between batch elements)."""
    return (kv_idx % 2 == 0) | (b % 2 == 1)
