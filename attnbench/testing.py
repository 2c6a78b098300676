"""attnbench in a kernel author's own pytest suite: the cases of a scenario as parameters, and
an assertion that an attention function matches the float64 oracle within attnbench's bound.

    from attnbench.testing import cases, assert_matches_oracle

    @pytest.mark.parametrize("case", cases("smoke", "variants", dtype="float32"))
    def test_my_kernel(case):
        assert_matches_oracle(my_attention, case)

`my_attention(inputs)` takes an `attnbench.Inputs` (q, k, v, scale, the case and its variant
helpers) and returns the output ((out, lse) for a case with lse = true). Nothing here imports
torch unless the framework asked is "torch" (or a case is bfloat16, whose inputs torch rounds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from attnbench.case import Case
from attnbench.plugin.capabilities import Capabilities, capability_reasons
from attnbench.plugin.outputs import split_result
from attnbench.record import failure_text
from attnbench.scenario import resolve_scenario
from attnbench.verify.agreement import dtype_name, to_numpy64
from attnbench.verify.casedata import CaseData
from attnbench.verify.inputs import make_inputs
from attnbench.verify.judge import judge


def cases(*scenarios: str, dtype: str | Iterable[str] | None = None, device: str = "cpu",
          mode: str | None = None) -> list[Any]:
    """Every case of the named (or .toml) scenarios on a device as pytest parameters, each
    with its case id as the test id; only the given dtype(s) and mode when set."""
    import pytest

    dtypes = {dtype} if isinstance(dtype, str) else (set(dtype) if dtype is not None else None)
    out: dict[Case, None] = {}
    for name in scenarios:
        for case in resolve_scenario(name).cases(device):
            if (dtypes is None or case.dtype in dtypes) and (mode is None or case.mode == mode):
                out[case] = None
    return [pytest.param(c, id=c.id) for c in out]


def unsupported(case: Case, capabilities: Capabilities, name: str = "the kernel") -> list[str]:
    """Sentences naming what a case asks beyond the capabilities ([] when it fits)."""
    return capability_reasons(name, capabilities, case)


def check_output(attention: Callable[[Any], Any], case: Case, framework: str = "numpy",
                 seed: int = 0) -> dict[str, Any]:
    """Run attention on the case's seeded inputs once and judge its output as `attnbench
    check` does: the record's agreement entry (passed, error_over_bound, diagnosis, ...)."""
    data = CaseData(case, seed)
    inputs = make_inputs(case, data.arrays, framework)
    out, lse, problem = split_result(attention(inputs), case)
    shipped: dict[str, Any] = {"first.out": (out, dtype_name(out))}
    if case.lse:  # (values, dtype) as a worker ships them, or why there is no lse
        shipped["first.lse"] = problem or (to_numpy64(lse), dtype_name(lse))
    agreement = judge(data, framework, shipped)
    assert agreement is not None  # an output was given
    return agreement


def assert_matches_oracle(attention: Callable[[Any], Any], case: Case,
                          framework: str = "numpy", seed: int = 0) -> None:
    """Fail (AssertionError) unless attention's output on the case's seeded inputs is within
    attnbench's bound of the float64 oracle; the message says by how much, where (the
    diagnosis: one head, rows past a length, ...) and at which element."""
    agreement = check_output(attention, case, framework, seed)
    if agreement["passed"]:
        return
    rec = {"agreement": agreement}
    out = agreement["outputs"][0]
    where = out.get("worst")
    raise AssertionError(f"{case.id}: {failure_text(rec)}"
                         + (f"\n  worst: {where}" if where else "")
                         + error_map_text(out.get("diagnosis")))


MAX_MAP_HEADS = 8


def error_map_text(diagnosis: Any) -> str:
    """The diagnosis's row map as text, a line per head ('.' within the bound, 'o' up to 10x
    over it, 'X' beyond), one character per band of query rows."""
    row_map = diagnosis.get("row_map") if isinstance(diagnosis, dict) else None
    if not isinstance(row_map, dict) or not row_map.get("ratio"):
        return ""
    rows = row_map.get("rows") or []
    lines = [f"\n  error map (a character per band of query rows from {rows[0] if rows else 0}"
             f" to {row_map.get('last_row')}: '.' within the bound, 'o' up to 10x, 'X' more):"]
    for h, bands in enumerate(row_map["ratio"][:MAX_MAP_HEADS]):
        marks = "".join("." if r <= 1 else "o" if r <= 10 else "X" for r in bands)
        lines.append(f"    head {h:>3}: {marks}")
    if len(row_map["ratio"]) > MAX_MAP_HEADS:
        lines.append(f"    ... {len(row_map['ratio']) - MAX_MAP_HEADS} more heads")
    return "\n".join(lines)
