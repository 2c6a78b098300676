"""Hook specifications of the attnbench plugin API (specs only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

PROJECT = "attnbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:
    from attnbench.plugin.backend import Backend


@hookspec
def attnbench_backends() -> Iterable[Backend]:  # type: ignore[empty-body]  # a spec
    """Return the backends this plugin provides.

    Called once when the plugin manager is built: in the catalog process (for
    `list`, `run`, `check`), in the worker of each of this plugin's backends
    and in the observer process; never in attnbench's own process, which makes
    the verdicts and imports no plugin. Return an iterable of `attnbench.Backend`
    instances; names must be unique across all plugins. Each backend is
    checked when it registers (name `[A-Za-z0-9][A-Za-z0-9._+-]{0,63}`,
    framework "numpy" or "torch", typed capabilities); an invalid one stops
    the command with a one-line error naming the plugin. A hook that raises
    is reported as a failed plugin and the others keep working. Example:

        @hookimpl
        def attnbench_backends():
            return [NumpyChunked()]  # a subclass of attnbench.Backend
    """


@hookspec
def attnbench_scenario_dirs() -> Iterable[str]:  # type: ignore[empty-body]  # a spec
    """Return extra folders that hold scenario files (`*.toml`).

    Called once when the plugin manager is built; the folders are searched
    when a scenario is looked up by name, and shipped scenarios win on a name
    clash. Return an iterable of paths (str or os.PathLike). Example:

        @hookimpl
        def attnbench_scenario_dirs():
            return [str(Path(__file__).parent / "scenarios")]
    """


@hookspec
def attnbench_record_written(record: dict[str, Any]) -> None:
    """Observe a record after the runner has written it to `records.jsonl`.

    Called once per (case, backend) record, after the record is flushed, in
    the run's observer process (a process of its own that imports the
    plugins; the run's own process imports none), on a copy of the record.
    The return value is ignored; an exception is reported and the run goes
    on; the process, with any thread or process a hook started, is killed
    when the run ends. Example:

        @hookimpl
        def attnbench_record_written(record):
            if record["status"] != "ok":
                print("not ok:", record["backend"], record["case_id"])
    """
