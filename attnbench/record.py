"""The record: one (case, backend) result, its Status, the one place it is built, its helpers."""

from __future__ import annotations

import functools
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

from attnbench.record_fields import Memory as Memory  # the typed record, re-exported
from attnbench.record_fields import Record as Record
from attnbench.record_fields import Timing as Timing
from attnbench.record_fields import WorkerInfo as WorkerInfo

if TYPE_CHECKING:
    from attnbench.case import Case
    from attnbench.plugin.backend import Backend


class Status(str, Enum):
    """What happened to one (case, backend); stored in records as its plain string value."""

    OK = "ok"  # ran and agreed with the oracle
    MISMATCH = "mismatch"  # ran and disagreed (or modified its inputs, or wrong dtype)
    UNSUPPORTED = "unsupported"  # the backend cannot run the case here, with reasons
    ERROR = "error"  # the backend raised
    OOM = "oom"  # the backend ran out of memory
    TIMEOUT = "timeout"  # the worker overran its time and was killed
    CRASHED = "crashed"  # the worker died (signal, exit) or broke the protocol

    __hash__ = str.__hash__  # Status.OK and "ok" are one key in sets and dicts

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


VERIFIED = frozenset({Status.OK, Status.MISMATCH})  # the output was compared with the oracle
# What fails `check` (exit 1): a wrong answer, or a backend that could not give one. oom counts:
# an input that cannot fit is refused before the run, so an oom is the backend's own.
CHECK_FAILED = frozenset({Status.MISMATCH, Status.ERROR, Status.CRASHED, Status.TIMEOUT,
                          Status.OOM})
NOT_OK = CHECK_FAILED  # listed as failures in reports; a new one is a regression
STOPPED = frozenset({Status.OOM, Status.TIMEOUT, Status.CRASHED, Status.ERROR})  # size limits
STATUS_VALUES = frozenset(s.value for s in Status)


REQUIRED = {"scenario": str, "case_id": str, "backend": str, "device": str, "status": str}
OPTIONAL_TYPES: dict[str, type | tuple[type, ...]] = {
    "batch": int, "heads_q": int, "heads_kv": int, "seq_q": int, "seq_kv": int, "head_dim": int,
    "dtype": str, "mask": str, "mode": str, "reasons": list, "agreement": dict, "timing": dict,
    "memory": dict, "worker": dict, "flags": list, "error": (str, type(None)),
    "flops": (int, float), "first_call_ms": (int, float, type(None)),
    "prepare_ms": (int, float),
}
MAX_TEXT = 64 * 1024  # error texts and tracebacks keep their head and tail beyond this


def new_record(scenario: str, case: Case, backend: Backend, status: Status | str,
               **fields: Any) -> Record:
    """The one constructor of a record: case fields, work model, status and what is given."""
    from attnbench.plugin.backend import name_of
    from attnbench.verify import inputs

    rec: dict[str, Any] = {
        "scenario": scenario, "case_id": case.id, "backend": name_of(backend),
        **case.to_dict(), "softmax_scale": case.softmax_scale, "framework": backend.framework,
        "flops": inputs.flops(case), "io_bytes": inputs.io_bytes(case),
        "score_bytes": inputs.score_bytes(case), "status": Status(status).value, "reasons": [],
        "error": None, **fields,
    }
    if case.mask_mod is not None:  # reports draw the mask from it, never running the function
        rec["mask_picture"] = dict(_picture_field(case))
    for key in ("error", "traceback", "log_tail"):
        if isinstance(rec.get(key), str):
            rec[key] = cap_text(rec[key])
    rec["reasons"] = [cap_text(str(r)) for r in rec.get("reasons") or []]
    return cast(Record, rec)


@functools.lru_cache(maxsize=16)
def _picture_field(case: Case) -> dict[str, Any]:
    """The record field drawing batch element 0's mask (a case with a mask function)."""
    from attnbench import mask_mod, variants

    return mask_mod.encode(variants.mask_picture(case, 0))


def cap_text(text: str, limit: int = MAX_TEXT) -> str:
    """A text cut to about limit characters, keeping its head and tail."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


def invalid_reason(obj: Any) -> str | None:
    """Why a JSON value is not a record this attnbench can read, or None when it is one."""
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}, not a JSON object"
    for key, kind in REQUIRED.items():
        if not isinstance(obj.get(key), kind):
            return f"field {key!r} is missing or not a {kind.__name__}"
    if obj["status"] not in STATUS_VALUES:
        return f"unknown status {obj['status']!r}"
    for key, kinds in OPTIONAL_TYPES.items():
        value = obj.get(key)
        if key in obj and (not isinstance(value, kinds) or isinstance(value, bool)):
            return f"field {key!r} has the wrong type ({type(value).__name__})"
    return case_field_problem(obj) or fields_problem(obj, TOP_FIELDS)


# JSON kinds a field may have: "int", "num" (int or float), "str", "bool", "null", "list",
# "dict", "ints" (a list of integers), "strs" (a list of strings); bool is never an int here
KINDS = {"int": "an integer", "num": "a number", "str": "a string", "bool": "true or false",
         "null": "null", "list": "a list", "dict": "an object", "ints": "a list of integers",
         "strs": "a list of strings"}
TOP_FIELDS = {"reasons": ("strs",), "flags": ("strs",), "framework": ("str",),
              "traceback": ("str", "null"), "log_tail": ("str", "null"),
              "determinism": ("dict", "null"), "node": ("dict", "null"),
              "contention": ("dict", "null"), "frontier_stop": ("str", "null"),
              "bound_by": ("str", "null"), "mask_picture": ("dict", "null")}


def fits(value: Any, kinds: tuple[str, ...]) -> bool:
    """Whether a JSON value is one of the kinds (see KINDS)."""
    def one(kind: str) -> bool:
        if kind in ("ints", "strs"):
            item = int if kind == "ints" else str
            return isinstance(value, list) and all(
                isinstance(x, item) and not isinstance(x, bool) for x in value)
        if kind == "null":
            return value is None
        if kind == "bool":
            return isinstance(value, bool)
        types: dict[str, type | tuple[type, ...]] = {
            "int": int, "num": (int, float), "str": str, "list": list, "dict": dict}
        return isinstance(value, types[kind]) and not isinstance(value, bool)
    return any(one(k) for k in kinds)


def fields_problem(obj: dict[str, Any], spec: dict[str, tuple[str, ...]],
                   where: str = "") -> str | None:
    """Why a field of obj (those spec names, when present) is not of its kinds, or None."""
    for name, kinds in spec.items():
        if name in obj and not fits(obj[name], kinds):
            return (f"field '{where}{name}' is not "
                    f"{' or '.join(KINDS[k] for k in kinds)} ({_shown(obj[name])})")
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def case_field_problem(obj: dict[str, Any]) -> str | None:
    """Why a record's case fields (window_left, q_lens, softcap...) do not have the types of
    attnbench.case.Case's fields, or None."""
    return fields_problem(obj, _case_kinds())


_CASE_KINDS: dict[str, tuple[str, ...]] = {}


def _case_kinds() -> dict[str, tuple[str, ...]]:
    """Case's fields as JSON kinds, from its type hints (int, float, str, bool, tuple[int,
    ...], each maybe `| None`): a field added to Case is checked without a change here."""
    if not _CASE_KINDS:
        import typing

        from attnbench.case import Case

        names = {int: "int", float: "num", str: "str", bool: "bool", type(None): "null"}
        for name, hint in typing.get_type_hints(Case).items():
            kinds = ["ints" if typing.get_origin(a) is tuple else names.get(a, "?")
                     for a in typing.get_args(hint) or (hint,)]
            if "?" not in kinds:  # a type with no JSON kind here: not checked
                _CASE_KINDS[name] = tuple(kinds)
    return _CASE_KINDS


def record_key(record: dict[str, Any]) -> tuple[str, str, str, str]:
    """What makes a record unique in a run: scenario, case id, device, backend."""
    return key(record["scenario"], record["case_id"], record["device"], record["backend"])


def key(scenario: str, case_id: str, device: str, backend: str) -> tuple[str, str, str, str]:
    """The record key of a record not yet made (what resume skips)."""
    return (scenario, case_id, device, backend)


def median_ms(rec: dict[str, Any]) -> float | None:
    """The record's median time in ms, when it was timed."""
    value = (rec.get("timing") or {}).get("median_ms")
    return float(value) if isinstance(value, (int, float)) else None


def peak_bytes(rec: dict[str, Any]) -> float | None:
    """The record's measured peak memory in bytes, when it has one."""
    mem = rec.get("memory")
    value = mem.get("peak_bytes") if isinstance(mem, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def error_ratio(rec: dict[str, Any]) -> float | None:
    """Worst max_abs_err / bound over the record's outputs; None without agreement metrics."""
    outputs = (rec.get("agreement") or {}).get("outputs") or []
    ratios = []
    for o in outputs:
        err, bound = o.get("max_abs_err"), o.get("bound")
        if o.get("nonfinite") or o.get("error"):  # NaN/Inf or a wrong shape: fails outright
            ratios.append(float("inf"))
        elif isinstance(o.get("error_over_bound"), (int, float)):  # the worst check's ratio
            ratios.append(float(o["error_over_bound"]))
        elif "error_over_bound" in o and o.get("passed") is False:  # null: over a zero bound
            ratios.append(float("inf"))
        elif isinstance(err, (int, float)) and isinstance(bound, (int, float)) and bound > 0:
            ratios.append(err / bound if err == err else float("inf"))
    return max(ratios) if ratios else None


def failure_text(rec: dict[str, Any]) -> str:
    """Why a record is not ok: its error, else every output that failed, else its reasons."""
    if rec.get("error"):
        return str(rec["error"])
    agreement = rec.get("agreement") or {}
    bad = [o for o in agreement.get("outputs") or [] if not o.get("passed")]
    texts = [str(t) for t in agreement.get("problems") or []]
    return "; ".join(texts + [_output_failure(o) for o in bad]) or "; ".join(
        rec.get("reasons") or [])


def _output_failure(o: dict[str, Any]) -> str:
    if o.get("error"):
        return f"{o.get('name')}: {o['error']}"
    ratio, where = o.get("error_over_bound"), o.get("worst")
    # an output names its worst check and element; a gradient's bound is per element
    at = f" at the worst {where}" if where in ("element", "row") else (
        f" ({where})" if isinstance(where, str) else "")
    worst = f"error/bound {ratio:.3g}{at}, " if isinstance(ratio, (int, float)) else ""
    diagnosis = o.get("diagnosis")
    found = diagnosis.get("pattern") if isinstance(diagnosis, dict) else None
    pattern = f"; where: {found}" if found else ""
    return (f"{o.get('name')}: {worst}max_abs_err {o.get('max_abs_err'):.3g}, bound "
            f"{o.get('bound'):.3g} ({o.get('rule')}), nonfinite {o.get('nonfinite')}{pattern}")
