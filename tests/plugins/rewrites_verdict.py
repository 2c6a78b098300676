"""A test observer that rewrites every record it is shown and then tries to end the run.

It sets status "ok" and a passing agreement on the copy it gets, then raises SystemExit on the
first record, KeyboardInterrupt on the second and RuntimeError on the others.
"""

from __future__ import annotations

from attnbench import hookimpl

SEEN: list[str] = []


@hookimpl
def attnbench_record_written(record):
    SEEN.append(record["case_id"])
    record["status"] = "ok"
    record.setdefault("agreement", {})["passed"] = True
    for out in record["agreement"].get("outputs", []):
        out["passed"] = True
    if len(SEEN) == 1:
        raise SystemExit("observer ends the run")
    if len(SEEN) == 2:
        raise KeyboardInterrupt("observer pretends to be Ctrl-C")
    raise RuntimeError("observer fails")
