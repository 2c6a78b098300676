"""The record of one (case, backend), made in the parent from the worker's report and the verdict.

The worker's report is a claim (its process holds plugin code): every measurement is checked for
type and range before it enters a record, and the status follows rules the worker cannot move:
a verified mismatch stays a mismatch whatever happened after it; an `Unsupported` raised after an
output was produced is an error; a throughput above what the device can do is a failure.
"""

from __future__ import annotations

import math
from typing import Any

from attnbench.case import Case
from attnbench.measure.roof import core_roof
from attnbench.plugin.backend import name_of
from attnbench.plugin.facts import check_facts
from attnbench.record import Record, Status, new_record
from attnbench.verify.determinism import checked_by_parent

# A timed case faster than this many times the device's best measured matmul roof did not do
# the work it claims: attention's matmuls cannot beat a large square matmul of the same device.
IMPOSSIBLE_OVER_ROOF = 2.0
CLAIMED = ("first_call_ms", "prepare_ms", "timing", "memory", "determinism", "flags", "notes",
           "timed_calls_offered")


def from_result(scenario: str, case: Case, backend: Any, result: dict[str, Any],
                agreement: dict[str, Any] | None) -> Record:
    """The record of a worker's result (its `result` reply field) and the parent's verdict."""
    if isinstance(result.get("unsupported"), list):
        return new_record(scenario, case, backend, Status.UNSUPPORTED,
                          reasons=[str(r) for r in result["unsupported"]])
    fields, dropped = _claims(result)
    failure = result.get("failure") if isinstance(result.get("failure"), dict) else None
    if agreement is None:  # nothing to verify: the failure says what happened
        return _failed(scenario, case, backend, failure, fields)
    if "determinism" in fields:  # the worker's claim against the arrays the parent read
        fields["determinism"] = checked_by_parent(fields["determinism"],
                                                  agreement.get("timed_calls"))
    changed = result.get("changed_inputs")
    if isinstance(changed, list) and changed:
        agreement["problems"] = [str(p) for p in changed]
        agreement["passed"] = False
    status = Status.OK if agreement["passed"] else Status.MISMATCH
    extra: dict[str, Any] = {}
    if failure is not None:
        status, extra = _after_output(status, failure, fields)
    rec = new_record(scenario, case, backend, status, agreement=agreement, **fields, **extra)
    if dropped:
        rec["notes"] = [*rec.get("notes", []), f"not recorded, not valid: {', '.join(dropped)}"]
    _throughput(rec)
    return rec


def _failed(scenario: str, case: Case, backend: Any, failure: dict[str, Any] | None,
            fields: dict[str, Any]) -> Record:
    if failure is None:
        return new_record(scenario, case, backend, Status.ERROR,
                          error="the worker reported neither an output nor a failure")
    status, text = failure.get("status"), str(failure.get("error", ""))
    if status == "unsupported":
        return new_record(scenario, case, backend, Status.UNSUPPORTED, reasons=[text])
    if failure.get("phase") == "unsupported()":  # the capability check itself raised
        text = f"{name_of(backend)}: unsupported() raised {text}"
    return new_record(scenario, case, backend, Status.OOM if status == "oom" else Status.ERROR,
                      error=text, traceback=str(failure.get("traceback", "")), **fields)


def _after_output(status: Status, failure: dict[str, Any], fields: dict[str, Any]
                  ) -> tuple[Status, dict[str, Any]]:
    """A step that raised after the output was verified: the verdict it leaves."""
    phase = str(failure.get("phase", "a later step"))
    text = str(failure.get("error", ""))
    note = f"{phase} raised after the output was produced: {text}"
    extra: dict[str, Any] = {"traceback": str(failure.get("traceback", ""))}
    if status == Status.MISMATCH:  # once measured, a mismatch stays a mismatch
        fields["notes"] = [*fields.get("notes", []), note]
        return status, extra
    if failure.get("status") == "unsupported":
        extra["error"] = (f"raised Unsupported in {phase}, after its first call had returned "
                          f"an output: a backend decides what it supports before computing "
                          f"({text})")
        return Status.ERROR, extra
    extra["error"] = note
    return (Status.OOM if failure.get("status") == "oom" else Status.ERROR), extra


def _claims(result: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The worker's measurements that are well formed, and the names of those that are not."""
    fields: dict[str, Any] = {}
    dropped = []
    for name in CLAIMED:
        if name not in result:
            continue
        value = result[name]
        if _valid(name, value):
            fields[name] = value
        else:
            dropped.append(name)
    ran = result.get("reported")
    if ran:
        try:
            fields["ran"] = check_facts(ran)
        except ValueError:
            dropped.append("ran")
        setup = fields.get("ran", {}).get("setup_ms")
        if _finite(setup) and setup >= 0:  # set-up apart from the call (mask, plan, compile)
            fields["setup_ms"] = setup
    return fields, dropped


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


MAX_SAMPLES = 100_000  # the timers take at most 10,000 samples (CUDA: 500 a batch)
MAX_ITEMS = 64


def _valid(name: str, value: Any) -> bool:
    if name in ("first_call_ms", "prepare_ms"):
        return _finite(value) and value >= 0
    if name == "timed_calls_offered":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if name in ("flags", "notes"):
        return isinstance(value, list) and len(value) <= MAX_ITEMS and all(
            isinstance(x, str) and len(x) <= 2000 for x in value)
    if name == "timing":
        samples = value.get("samples_ms") if isinstance(value, dict) else None
        return (isinstance(value, dict) and _finite(value.get("median_ms"))
                and value["median_ms"] > 0 and isinstance(samples, list)
                and 0 < len(samples) <= MAX_SAMPLES and all(_finite(x) for x in samples)
                and _plain(value, depth=2))
    return isinstance(value, dict) and _plain(value, depth=2)


def _plain(value: Any, depth: int) -> bool:
    """A small JSON value: numbers, short strings, and at most `depth` levels of dicts/lists."""
    if value is None or isinstance(value, bool) or _finite(value):
        return True
    if isinstance(value, str):
        return len(value) <= 2000
    if depth < 0:
        return False
    if isinstance(value, dict):
        return len(value) <= MAX_ITEMS and all(
            isinstance(k, str) and _plain(v, depth - 1) for k, v in value.items())
    if isinstance(value, list):
        return len(value) <= MAX_SAMPLES and all(_plain(v, depth - 1) for v in value)
    return False


def _throughput(rec: Record) -> None:
    median = (rec.get("timing") or {}).get("median_ms")
    if _finite(median) and median > 0:
        rec["gflops_per_s"] = rec["flops"] / (median * 1e6)
        rec["gbytes_per_s"] = rec["io_bytes"] / (median * 1e6)
    if _finite(rec.get("io_bytes")) and rec["io_bytes"] > 0:
        rec["arithmetic_intensity"] = rec["flops"] / rec["io_bytes"]


def judge_throughput(rec: dict[str, Any], roofs: dict[str, Any]) -> None:
    """A record faster than the device can be is a failure (status error), saying why.

    What the device can be: its best matmul roof, or on the CPU the cores times one core's
    rate where that is higher (measure/core_roof.py: a busy machine's multi-threaded roof can
    fall 100x below what the cores do, a single thread's rate does not)."""
    gflops = rec.get("gflops_per_s")
    per = roofs.get(str(rec.get("device"))) if isinstance(roofs, dict) else None
    known = [v for v in (per or {}).values() if _finite(v) and v > 0]
    roof, cores = max(known, default=0.0), core_roof(per)
    limit = max(roof, cores or 0.0)
    if not _finite(gflops) or limit <= 0 or rec.get("status") not in (Status.OK, "ok"):
        return
    if gflops * 1e9 > IMPOSSIBLE_OVER_ROOF * limit:
        rec["status"] = Status.ERROR.value
        rec["error"] = (f"impossible throughput: {gflops:.4g} GFLOP/s is "
                        f"{gflops * 1e9 / limit:.3g} x the most the device was measured to do "
                        f"({limit / 1e9:.4g} GFLOP/s: {_limit_source(roof, cores)}): the calls "
                        "timed cannot have done the case's work")
        rec["flags"] = [*rec.get("flags", []), "impossible_throughput"]


def _limit_source(roof: float, cores: float | None) -> str:
    if cores is not None and cores > roof:
        above = f", above its matmul roof of {roof / 1e9:.4g}" if roof > 0 else ""
        return f"its cores times one core's matmul rate{above}"
    return "its best matmul roof"
