"""A test backend whose description, reasons and error text carry HTML and Markdown markup."""

from __future__ import annotations

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

EVIL = "<script>alert('pwned')</script> <img src=x onerror=alert(1)> | *bold* _it_ `tick` [l](u)"


class Markup(NumpyNaive):
    name = "test-markup"
    description = "markup " + EVIL

    def unsupported(self, case):
        if case.seq_kv == 16:
            return [f"{EVIL} (unsupported on purpose)"]
        return super().unsupported(case)

    def prepare(self, inputs):
        def boom():
            raise RuntimeError(EVIL)

        return boom


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Markup()]
