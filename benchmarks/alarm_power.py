"""The smallest size at which each planted bug is caught, from false_alarms.py --details.

    .venv/bin/python benchmarks/alarm_power.py DETAILS.jsonl

Over the plain cases (no variant: prefill, decode, cross lengths) of the half types: per bug,
the smallest number of keys L at which it is caught in some case, the cases of at least that L
where it is not caught (below rounding or missed, as false_alarms.py classifies them), and the
cases of any size where its effect exceeds rounding and it passes ("missed").
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

BUGS = ["output x1.01", "one key dropped", "zeros", "mean of v", "10% noise",
        "rows >= 512 ignore q.k"]
DTYPES = ["bfloat16", "float16"]
PLAIN = ("plain", "decode", "cross")


def sizes(case_id: str) -> tuple[int, int]:
    """(seq_q, seq_kv) from a case id."""
    m = re.search(r"-q(\d+)-k(\d+)-", case_id)
    assert m, case_id
    return int(m[1]), int(m[2])


def applies(r: dict[str, Any], bug: str) -> bool:
    """Plain cases; the rows-from-512 bug on causal prefills only (as a model would run it)."""
    if r["label"] not in PLAIN or bug not in r["bugs"]:
        return False
    return bug != "rows >= 512 ignore q.k" or ("-causal" in r["case"] and r["label"] == "plain")


def power(results: list[dict[str, Any]], bug: str, dtype: str) -> dict[str, Any]:
    mine = [r for r in results if r["dtype"] == dtype and applies(r, bug)]
    caught = [sizes(r["case"])[1] for r in mine if r["bugs"][bug]["class"] == "caught"]
    smallest = min(caught) if caught else None
    not_caught = [(r["case"], r["bugs"][bug]["class"]) for r in mine
                  if r["bugs"][bug]["class"] != "caught"]
    above = [c for c in not_caught if smallest is not None and sizes(c[0])[1] >= smallest]
    return {"cases": len(mine), "caught": len(caught), "smallest_L": smallest,
            "not_caught_at_or_above": above,
            "missed": [c for c, k in not_caught if k == "missed"],
            "below": [c for c, k in not_caught if k == "below"]}


def main(argv: list[str] | None = None) -> int:
    path = Path((argv or sys.argv[1:])[0])
    results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    table = {f"{bug} {dt}": power(results, bug, dt) for bug in BUGS for dt in DTYPES}
    print("| bug | " + " | ".join(DTYPES) + " |\n|---|" + "---|" * len(DTYPES))
    for bug in BUGS:
        cells = []
        for dt in DTYPES:
            p = table[f"{bug} {dt}"]
            cells.append(f"L = {p['smallest_L']}: {p['caught']}/{p['cases']} caught, "
                         f"{len(p['missed'])} missed, {len(p['below'])} below")
        print(f"| {bug} | " + " | ".join(cells) + " |")
    print(json.dumps(table, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
