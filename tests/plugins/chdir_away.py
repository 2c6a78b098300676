"""A test plugin that changes the working folder when imported (in the parent and each worker)."""

from __future__ import annotations

import os
import tempfile

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

os.chdir(os.environ.get("ATTNBENCH_TEST_CHDIR") or tempfile.gettempdir())


class ChdirAway(NumpyNaive):
    name = "test-chdir-away"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ChdirAway()]
