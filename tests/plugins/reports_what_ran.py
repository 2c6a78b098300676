"""A test backend that says what ran: a fact in prepare(), one per call, and on the case with
seq_kv == BAD_SEQ a fact Inputs.report refuses (a list), raised in prepare()."""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64


class ReportsWhatRan(NumpyNaive):
    name = "test-reports-what-ran"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        inputs.report(kernel="numpy-naive", tiles=inputs.case.seq_kv // 8)
        if inputs.case.seq_kv == BAD_SEQ:
            inputs.report(kernel=["not", "a", "scalar"])
        calls = 0

        def counted():
            nonlocal calls
            calls += 1
            inputs.report(calls=calls, first_call=calls == 1)
            return run()

        return counted


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ReportsWhatRan()]
