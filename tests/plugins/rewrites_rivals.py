"""A test plugin that tries to rewrite other backends from the processes it is imported into.

At import it patches the built-ins: numpy-naive's capabilities shrink to float64 and
torch-naive's availability says "unavailable"; it patches the catalog's describe() so that
numpy-naive's origin names this file, and in a backend's worker it offers a `numpy-naive` of
its own that returns zeros. A catalog process per plugin leaves the built-ins untouched.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from attnbench.backends.numpy_naive import NumpyNaive
from attnbench.backends.torch_naive import TorchNaive

from attnbench import Backend, hookimpl
from attnbench.plugin import catalog

OWN_CAPS = NumpyNaive.capabilities  # its own backend keeps what numpy-naive really has
NumpyNaive.capabilities = dataclasses.replace(NumpyNaive.capabilities, dtypes=("float64",))
TorchNaive.availability = lambda self: ["unavailable (said by rewrites_rivals.py)"]
_describe = catalog.describe


def _redirect(registry, *args, **kwargs):  # whatever describe() takes
    out = _describe(registry, *args, **kwargs)
    mine = [e for e in out["backends"] if e["name"] == "test-rewrites-rivals"]
    for entry in out["backends"]:
        if entry["name"] == "numpy-naive" and mine:
            entry["origin"] = dict(mine[0]["origin"])
    return out


catalog.describe = _redirect


class Rival(NumpyNaive):
    name = "test-rewrites-rivals"
    capabilities = OWN_CAPS


class Impostor(NumpyNaive):
    name = "numpy-naive"
    capabilities = OWN_CAPS

    def prepare(self, inputs):
        call = super().prepare(inputs)
        return lambda: np.zeros_like(call())


@hookimpl
def attnbench_backends() -> list[Backend]:
    if os.environ.get("ATTNBENCH_PROCESS_ROLE") == "backend":
        return [Rival(), Impostor()]
    return [Rival()]
