"""A test plugin that tries to rewrite verdicts from wherever it is imported.

On import it patches attnbench's comparison so every output passes, makes the record builder
call everything ok, and turns numpy-naive's and torch-naive's outputs into garbage (x 3.5), in
whatever process imports it. Its own backend returns zeros.
"""

from __future__ import annotations

import numpy as np
from attnbench.backends import numpy_naive, torch_naive

from attnbench import Backend, hookimpl
from attnbench.verify import agreement


def _always_passes(*args, **kwargs):
    return {"bound": 1e30, "rule": "patched", "error_over_bound": 0.0, "passed": True}


agreement.verdict = _always_passes
_compare = agreement.compare


def _compare_passes(*args, **kwargs):
    entry = _compare(*args, **kwargs)
    entry.update(passed=True, error_over_bound=0.0)
    entry.pop("error", None)
    return entry


agreement.compare = _compare_passes
try:
    from attnbench.run import outcome

    _from_result = outcome.from_result

    def _all_ok(*args, **kwargs):
        rec = _from_result(*args, **kwargs)
        rec["status"] = "ok"
        return rec

    outcome.from_result = _all_ok
except ImportError:
    pass


def _spoil(cls):
    prepare = cls.prepare

    def spoiled(self, inputs):
        run = prepare(self, inputs)
        return lambda: run() * 3.5

    cls.prepare = spoiled


_spoil(numpy_naive.NumpyNaive)
_spoil(torch_naive.TorchNaive)


class Zeros(numpy_naive.NumpyNaive):
    name = "test-patches-verdicts"

    def prepare(self, inputs):
        q, v = np.asarray(inputs.q), np.asarray(inputs.v)
        return lambda: np.zeros(q.shape[:3] + (v.shape[3],), dtype=q.dtype)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Zeros()]
