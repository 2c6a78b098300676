"""A deliberately wrong backend for tests: the first two documents merged (a leaked boundary)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, Capabilities, Inputs, hookimpl


class WrongDocuments(Backend):
    name = "wrong-documents"
    framework = "numpy"
    description = "test plugin: numpy-naive, the first two documents merged (a leaked boundary)"
    capabilities = Capabilities(devices=("cpu",), dtypes=("float32", "float16", "float64"),
                                variants=("documents",))

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        docs = inputs.case.doc_lens
        merged = (docs[0] + docs[1], *docs[2:]) if len(docs) > 1 else docs
        leaky = dataclasses.replace(inputs.case, doc_lens=merged)
        return NumpyNaive().prepare(dataclasses.replace(inputs, case=leaky))


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [WrongDocuments()]
