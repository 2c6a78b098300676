"""Hook specifications of the attnbench plugin API (specs only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

PROJECT = "attnbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:
    from attnbench.backend import Backend


@hookspec
def attnbench_backends() -> Iterable[Backend]:
    """Return the backends this plugin provides.

    Called once when the plugin manager is built (for `list`, `run`, `check`
    and in every worker process). Return an iterable of `attnbench.Backend`
    instances; names must be unique across all plugins.
    """


@hookspec
def attnbench_scenario_dirs() -> Iterable[str]:
    """Return extra folders that hold scenario files (`*.toml`).

    Called when a scenario is looked up by name; shipped scenarios win on a
    name clash. Return an iterable of paths.
    """


@hookspec
def attnbench_record_written(record: dict[str, Any]) -> None:
    """Observe a record after the runner has written it to `records.jsonl`.

    Called in the runner process once per (case, backend) record, after the
    record is flushed. The return value is ignored; an exception is reported
    and the run goes on.
    """
