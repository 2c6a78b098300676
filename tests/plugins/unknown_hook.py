"""A test plugin that implements a hook the attnbench spec does not declare."""

from __future__ import annotations

from attnbench import Backend, hookimpl


class Unreachable(Backend):
    name = "unknown-hook-backend"
    framework = "numpy"


@hookimpl
def attnbench_no_such_hook() -> int:
    return 1


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [Unreachable()]
