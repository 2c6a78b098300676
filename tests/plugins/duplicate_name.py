"""A test plugin whose backend takes a name a built-in already has (numpy-naive)."""

from __future__ import annotations

from attnbench import Backend, hookimpl


class Impostor(Backend):
    name = "numpy-naive"
    framework = "numpy"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Impostor()]
