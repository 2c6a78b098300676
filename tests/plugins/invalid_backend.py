"""A test plugin returning one invalid backend; ATTNBENCH_TEST_DEFECT says which defect."""

from __future__ import annotations

import os
import time

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, hookimpl


class Defective(NumpyNaive):
    name = "test-defective"


def _raising(self):
    raise RuntimeError("the name property fails on purpose")


def _sleeping(self):
    time.sleep(3600)


DEFECTS = {  # defect -> class attributes that make it
    "name-type": {"name": 42},
    "name-chars": {"name": "bad name[/]"},
    "framework": {"framework": "jax"},
    "capabilities-none": {"capabilities": None},
    "dtype": {"capabilities": Capabilities(dtypes=("float8",))},
    "head-dim": {"capabilities": Capabilities(head_dim_min=0)},
    "per-device": {"capabilities": Capabilities(per_device={"cuda": {"dtypes": ("float16",)}})},
    "per-device-key": {"capabilities": Capabilities(per_device={"cpu": {"colour": "red"}})},
    "min-versions": {"capabilities": Capabilities(min_versions={"numpy": "latest"})},
    "why-not": {"capabilities": Capabilities(why_not={"flash": "no reason"})},
    "raises": {"name": property(_raising)},
    "sleeps": {"name": property(_sleeping)},
}


@hookimpl
def attnbench_backends() -> list[Backend]:
    defect = os.environ.get("ATTNBENCH_TEST_DEFECT", "framework")
    return [type("Defective", (Defective,), DEFECTS[defect])()]
