"""A scenario's tables layered per device and variant, and swept into cases."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from attnbench import mask_mod
from attnbench.case import Case
from attnbench.case_checks import range_problem, variant_problem
from attnbench.errors import ScenarioError
from attnbench.scenario_keys import is_sweep
from attnbench.variants import random_documents, random_lengths

MAX_CASES = 100_000  # cases one table of a scenario may sweep (a day of runs at a second each)


def _layer(base: dict, sweep: dict, table: dict) -> tuple[dict, dict]:
    """Overlay a table: scalars replace base and sweep values, lists replace sweep values.
    In one table, heads_q/heads_kv and seq_q/seq_kv win over heads and seq_len whatever their
    order (the shorthand is laid first)."""
    base, sweep = dict(base), dict(sweep)
    for key, value in sorted(table.items(), key=lambda kv: kv[0] not in ("heads", "seq_len")):
        if key in ("name", "device"):
            continue
        _split_shorthand(key, base, sweep)
        for alias in _aliases(key):
            base.pop(alias, None)
            sweep.pop(alias, None)
        (sweep if is_sweep(key, value) else base)[key] = value
    return base, sweep


def _split_shorthand(key: str, base: dict, sweep: dict) -> None:
    """Setting seq_q (or heads_kv) over seq_len (heads) keeps the other half at its value."""
    for short, pair in (("heads", ("heads_q", "heads_kv")), ("seq_len", ("seq_q", "seq_kv"))):
        if key in pair:
            other = pair[1 - pair.index(key)]
            for table in (base, sweep):
                if short in table:
                    table.setdefault(other, table.pop(short))


def _aliases(key: str) -> tuple[str, ...]:
    groups = (("heads", "heads_q", "heads_kv"), ("seq_len", "seq_q", "seq_kv"))
    for group in groups:
        if key == group[0]:
            return group
        if key in group:
            return (group[0], key)
    return (key,)


def expand_cases(spec: dict, variant: dict, device: str, path: str) -> list[Case]:
    """The cases of one [[variant]] table (or none: {}) on one device."""
    base, sweep = spec.get("base", {}), spec.get("sweep", {})
    base, sweep = _layer(base, sweep, spec.get("device", {}).get(device, {}))
    base, sweep = _layer(base, sweep, variant)
    base, sweep = _layer(base, sweep, variant.get("device", {}).get(device, {}))
    keys = list(sweep)
    count = math.prod(len(sweep[k]) for k in keys)
    if count > MAX_CASES:
        raise ScenarioError(f"{path}: [sweep] makes {count:,} cases on {device}, more than the "
                            f"{MAX_CASES:,} one run takes: split it into smaller scenarios")
    out = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        out.append(_make_case({**base, **dict(zip(keys, combo, strict=True))}, device, path))
    return out


def _make_case(v: dict[str, Any], device: str, path: str) -> Case:
    for short, pair in (("heads", ("heads_q", "heads_kv")), ("seq_len", ("seq_q", "seq_kv"))):
        if short in v:
            for long in pair:
                v.setdefault(long, v[short])
    for key in ("batch", "heads_q", "heads_kv", "seq_q", "seq_kv", "head_dim"):
        if key not in v:
            raise ScenarioError(f"{path}: key {key!r}: missing (set it in [base] or [sweep])")
    if v["heads_q"] % v["heads_kv"]:
        raise ScenarioError(
            f"{path}: key 'heads_q': {v['heads_q']} is not a multiple of heads_kv={v['heads_kv']}"
        )
    case = Case(
        batch=v["batch"], heads_q=v["heads_q"], heads_kv=v["heads_kv"], seq_q=v["seq_q"],
        seq_kv=v["seq_kv"], head_dim=v["head_dim"], dtype=v.get("dtype", "float32"),
        device=device, mask=v.get("mask", "none"), mode=v.get("mode", "fwd"),
        scale=float(v["scale"]) if "scale" in v else None,
        window_left=v.get("window_left"), window_right=v.get("window_right"),
        q_lens=_lens(v, "q_lens", v["seq_q"]), kv_lens=_lens(v, "kv_lens", v["seq_kv"]),
        doc_lens=_docs(v, path), layout=v.get("layout", "padded"), page_size=v.get("page_size"),
        alibi=v.get("alibi", False), bias=v.get("bias", "none"),
        softcap=float(v["softcap"]) if "softcap" in v else None, head_dim_v=v.get("head_dim_v"),
        sinks=v.get("sinks", False), lse=v.get("lse", False),
        mask_mod=mask_mod.absolute(v["mask_mod"], Path(path).parent) if "mask_mod" in v else None,
        kv_quant=v.get("kv_quant", "none"), kv_scale=v.get("kv_scale", "tensor"),
        inputs=v.get("inputs", "normal"), poison=v.get("poison", False),
        strides=v.get("strides", "contiguous"),
    )
    problem = variant_problem(case) or range_problem(case)
    if problem:
        raise ScenarioError(f"{path}: {problem}")
    return case


def _lens(v: dict[str, Any], key: str, top: int) -> tuple[int, ...] | None:
    x = v.get(key)
    if x == "random":
        return random_lengths(key, v["batch"], top)
    return None if x is None else tuple(x)


def _docs(v: dict[str, Any], path: str) -> tuple[int, ...] | None:
    x = v.get("doc_lens")
    if isinstance(x, str):
        n = int(x.partition(":")[2])
        if n > v["seq_q"]:
            raise ScenarioError(f"{path}: key 'doc_lens': {n} documents do not fit "
                                f"seq_q={v['seq_q']}")
        return random_documents(n, v["seq_q"])
    return None if x is None else tuple(x)
