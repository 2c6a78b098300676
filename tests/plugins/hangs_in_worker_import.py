"""A test plugin whose import never returns inside a worker process (it loads fine elsewhere)."""

from __future__ import annotations

import sys
import time

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

if getattr(sys.modules["__main__"].__spec__, "name", "") == "attnbench.worker.child":
    while True:
        time.sleep(3600)


class HangsOnImport(NumpyNaive):
    name = "test-hangs-on-import"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [HangsOnImport()]
