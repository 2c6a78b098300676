"""What the rounding model costs beside the plain float64 oracle, on the rows `check` compares.

    .venv/bin/python benchmarks/model_cost.py [--threads N] [--repeat R]

For each case: the seconds of verify/reference.oracle (the oracle alone) and of
verify/rounding.oracle_and_model (the oracle and the model in one blocked pass), the best of R
runs, and their ratio. Run it on an idle machine; the numbers in docs/agreement.md came from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from threadpoolctl import threadpool_limits

from attnbench.case import Case
from attnbench.verify.inputs import reference_arrays
from attnbench.verify.reference import check_rows, oracle
from attnbench.verify.rounding import oracle_and_model

CASES = [
    Case(1, 8, 8, 2048, 2048, 64, dtype="float32", mask="causal"),
    Case(1, 8, 8, 4096, 4096, 64, dtype="bfloat16"),
    Case(1, 32, 8, 1, 16384, 128, dtype="bfloat16"),
    Case(1, 8, 8, 1024, 1024, 128, dtype="float16", alibi=True, softcap=30.0),
]


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    out = []
    with threadpool_limits(args.threads):
        for case in CASES:
            arrays, rows = reference_arrays(case, 0), check_rows(case, 0)
            plain = best(lambda a=arrays, c=case, r=rows: oracle(a, c, r), args.repeat)
            model = best(lambda a=arrays, c=case, r=rows: oracle_and_model(a, c, r),
                         args.repeat)
            out.append({"case": case.id, "rows": int(len(rows)), "oracle_s": round(plain, 3),
                        "oracle_and_model_s": round(model, 3), "ratio": round(model / plain, 2)})
            print(json.dumps(out[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
