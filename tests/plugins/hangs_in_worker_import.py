"""A test plugin whose import never returns in its backend's worker (fine in the catalog)."""

from __future__ import annotations

import os
import time

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

if os.environ.get("ATTNBENCH_PROCESS_ROLE") == "backend":  # its backend's worker only
    while True:
        time.sleep(3600)


class HangsOnImport(NumpyNaive):
    name = "test-hangs-on-import"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [HangsOnImport()]
