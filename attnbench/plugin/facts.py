"""What a backend says ran (Inputs.report): facts checked and capped, for the record's `ran`."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, cast

Fact = bool | int | float | str | None  # what one fact may be
MAX_FACTS = 16  # names per case in Inputs.report
MAX_FACT_TEXT = 300  # characters of a string fact
FACT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def check_fact(name: Any, value: Any) -> Fact:
    """A reported fact as stored: validated, a NumPy scalar as its Python value, a string cut
    to MAX_FACT_TEXT characters (ending in '…'); ValueError naming the fact otherwise."""
    if not isinstance(name, str) or not FACT_NAME.fullmatch(name):
        raise ValueError(f"Inputs.report: fact name {str(name)[:40]!r} is not "
                         f"[a-z][a-z0-9_]* of at most 32 characters")
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # np.bool_, np.int64, np.float32 ...
    kind = type(value)  # exact types: a subclass (an enum, a str with its own methods) is not JSON
    if value is None or kind is bool:
        return cast(Fact, value)  # the exact type, checked (a subclass is refused below)
    if kind is int:
        if not -2**63 <= value < 2**63:
            raise ValueError(f"Inputs.report: fact {name!r} is beyond 64-bit integers")
        return cast(int, value)
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"Inputs.report: fact {name!r} is {value}, not a finite number")
        return cast(float, value)
    if kind is str:
        text = cast(str, value)
        return text if len(text) <= MAX_FACT_TEXT else text[:MAX_FACT_TEXT - 1] + "…"
    raise ValueError(f"Inputs.report: fact {name!r} is a {type(value).__name__}; give a bool, "
                     f"int, float, str or None")


def check_facts(facts: Any) -> dict[str, Fact]:
    """A whole `ran` mapping checked as Inputs.report checks each fact (for a reader that
    receives it from another process): at most MAX_FACTS, each valid, or ValueError."""
    if not isinstance(facts, Mapping):
        raise ValueError(f"reported facts are a {type(facts).__name__}, not a mapping")
    if len(facts) > MAX_FACTS:
        raise ValueError(f"reported facts: {len(facts)} names, more than {MAX_FACTS}")
    return {name: check_fact(name, value) for name, value in facts.items()}

