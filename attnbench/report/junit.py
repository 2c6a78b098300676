"""JUnit XML for CI systems: one <testcase> per record, failures carrying their metrics."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from attnbench.record import Status
from attnbench.results_writer import writing

FAILURE = (Status.MISMATCH.value,)  # a wrong answer; error, oom, crashed, timeout are <error>
SKIPPED = (Status.UNSUPPORTED.value,)  # oom fails check (record.CHECK_FAILED): not a skip
BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: Any) -> str:
    """Text that XML 1.0 can hold (control characters dropped); escaping is ElementTree's job."""
    return BAD_XML.sub("", str(text))


def metrics(rec: dict[str, Any]) -> str:
    """The record's numbers as readable lines: agreement per output, timing, error text."""
    lines = [f"status: {rec.get('status')}", f"case: {rec.get('case_id')}"]
    for o in (rec.get("agreement") or {}).get("outputs") or []:
        lines.append(f"{o.get('name')}: max_abs_err={o.get('max_abs_err')} bound={o.get('bound')} "
                     f"rule={o.get('rule')} nonfinite={o.get('nonfinite')} "
                     f"passed={o.get('passed')}")
    timing = rec.get("timing") or {}
    if timing.get("median_ms") is not None:
        lines.append(f"median_ms={timing['median_ms']} iqr_ms={timing.get('iqr_ms')}")
    if rec.get("error"):
        lines.append(f"error: {rec['error']}")
    lines += [f"reason: {r}" for r in rec.get("reasons") or []]
    return clean("\n".join(lines))


def testcase(rec: dict[str, Any]) -> ET.Element:
    """One record as a <testcase>: classname scenario.backend, name the case id."""
    status = str(rec.get("status"))
    seconds = ((rec.get("timing") or {}).get("median_ms") or 0) / 1000
    el = ET.Element("testcase", classname=clean(f"{rec.get('scenario')}.{rec.get('backend')}"),
                    name=clean(rec.get("case_id")), time=f"{seconds:.6f}")
    first = (rec.get("reasons") or [rec.get("error") or status])[0]
    if status in FAILURE:
        child = ET.SubElement(el, "failure", message=clean(f"{status}: outputs disagree with "
                                                           "the float64 oracle"), type=status)
        child.text = metrics(rec)
    elif status not in (Status.OK.value, *SKIPPED):
        child = ET.SubElement(el, "error", message=clean(f"{status}: {first}")[:500], type=status)
        child.text = metrics(rec)
    elif status in SKIPPED:
        ET.SubElement(el, "skipped", message=clean(f"{status}: {first}")[:500])
    else:
        ET.SubElement(el, "system-out").text = metrics(rec)
    return el


def write_junit(records: Iterable[dict[str, Any]], path: str | Path,
                suite: str = "attnbench check") -> Path:
    """Write the records as one <testsuite> in a <testsuites> document."""
    recs = list(records)
    count = {k: sum(str(r.get("status")) in v for r in recs)
             for k, v in (("failures", FAILURE), ("skipped", SKIPPED))}
    errors = sum(str(r.get("status")) not in (Status.OK.value, *FAILURE, *SKIPPED) for r in recs)
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(recs)), errors=str(errors),
                       failures=str(count["failures"]), skipped=str(count["skipped"]))
    for r in recs:
        ts.append(testcase(r))
    out = Path(path)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return out
