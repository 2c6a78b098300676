"""What a backend's callable returns: its output, or (out, lse) when the case asks for the lse."""

from __future__ import annotations

from typing import Any

from attnbench.case import Case

LSE_DTYPES = ("float32", "float64")
LSE_CONTRACT = ("with lse = true the callable returns a tuple (out, lse): lse of shape (batch, "
                "heads_q, seq_q), float32 or float64, the natural log of each row's softmax "
                "denominator (the scaled, masked scores with their softcap, ALiBi and bias "
                "terms; with sinks e^σ_h too), −inf for a row that sees no key")


def lse_shape(case: Case) -> tuple[int, int, int]:
    """The shape of the lse a backend returns: (batch, heads_q, seq_q)."""
    return (case.batch, case.heads_q, case.seq_q)


def split_result(result: Any, case: Case) -> tuple[Any, Any, str | None]:
    """(out, lse, problem) of what the callable returned: lse None without lse = true; where the
    result breaks LSE_CONTRACT, problem says how (out is still whatever output it gave)."""
    if not case.lse:
        return result, None, None
    if not isinstance(result, tuple) or len(result) != 2:
        what = (f"a tuple of {len(result)}" if isinstance(result, tuple)
                else f"a bare {type(result).__name__}")
        out = result[0] if isinstance(result, tuple) and result else result
        return out, None, f"the callable returned {what}, not (out, lse): {LSE_CONTRACT}"
    out, lse = result
    shape = tuple(getattr(lse, "shape", ()))
    if shape != lse_shape(case):
        return out, None, (f"its lse is {type(lse).__name__} of shape {shape}, not "
                           f"{lse_shape(case)}: {LSE_CONTRACT}")
    return out, lse, None


def main_output(result: Any, case: Case) -> Any:
    """The output part of what the callable returned (the whole result without lse)."""
    return split_result(result, case)[0]
