"""A test backend that computes only the rows it expects to be compared, zeros elsewhere.

Beyond the oracle budget only some rows are compared. It guesses them as an earlier attnbench
drew them: the first, the last, and those of `check_rows` with the check seed it can find (the
run's run.json `config.check_seed`, found through the parent's --out, or 0); it also reads
the check seeds of every record already written in that folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl
from attnbench.verify.reference import attention_rows, check_rows


def _out_folder() -> Path | None:
    for pid in (os.getppid(), os.getpid()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for flag, value in zip(argv, argv[1:], strict=False):
            if flag == b"--out":
                return Path(value.decode())
    return None


def _seeds() -> set[int]:
    seeds = {0}
    out = _out_folder()
    if out is None:
        return seeds
    try:
        seed = json.loads((out / "run.json").read_text()).get("config", {}).get("check_seed")
        if isinstance(seed, int):
            seeds.add(seed)
    except (OSError, ValueError):
        pass
    try:
        for line in (out / "records.jsonl").read_text().splitlines():
            seed = (json.loads(line).get("agreement") or {}).get("check_seed")
            if isinstance(seed, int):
                seeds.add(seed)
    except (OSError, ValueError):
        pass
    return seeds


class PredictsRows(NumpyNaive):
    name = "test-predicts-rows"

    def prepare(self, inputs):
        case = inputs.case
        rows = np.unique(np.concatenate([check_rows(case, s) for s in _seeds()]))
        q, k, v = (np.asarray(x) for x in (inputs.q, inputs.k, inputs.v))

        def call():
            out = np.zeros(q.shape[:3] + (v.shape[3],), dtype=q.dtype)
            for b in range(case.batch):
                out[b:b + 1, :, rows] = attention_rows(q[b:b + 1], k[b:b + 1], v[b:b + 1],
                                                       case, rows, b)
            return out

        return call


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [PredictsRows()]
