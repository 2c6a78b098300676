"""Loading the catalog of backends in a run: one catalog process per plugin (the built-ins
share one), started side by side; this process imports no plugin and assigns each backend its
origin, so a plugin can describe only its own backends (plugin/catalog.py: the catalog itself)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.plugin.catalog import CATALOG_TIMEOUT_S, Catalog
from attnbench.sanitize import plain


def load_catalog(plugins: list[str] | tuple[str, ...], autoload: bool | None = None,
                  log_dir: Path | None = None, run_limit: float | None = None,
                  probe: list[str] | None = None) -> Catalog:
    """Ask catalog processes, one per plugin (the built-ins share one), started side by side:
    a plugin describes only its own backends, so it cannot rewrite another's capabilities,
    availability or origin (this process imports none). probe: the backends a run names, the
    only ones whose availability is checked (None: every one; plugin/catalog.describe)."""
    import tempfile

    from attnbench.plugin.registry import autoload_enabled, plugin_origins

    auto = autoload_enabled() if autoload is None else autoload
    origins = plugin_origins(plugins, auto)
    groups = [[o for o in origins if o["kind"] == "builtin"]]
    groups += [[o] for o in origins if o["kind"] != "builtin"]
    with tempfile.TemporaryDirectory(prefix="attnbench-catalog-") as tmp:
        answers = _ask_catalogs(groups, log_dir or Path(tmp), run_limit, probe)
    cat = Catalog(plugin_specs=tuple(plugins), autoload=auto)
    for group, data in zip(groups, answers, strict=True):
        _merge(cat, group, data)
    if probe is not None:  # whatever a catalog process says, only those asked for were checked
        cat.backends = {n: b if n in probe else replace(b, probed=False)
                        for n, b in cat.backends.items()}
    return cat


def _ask_catalogs(groups: list[list[dict[str, str]]], log_dir: Path,
                  run_limit: float | None, probe: list[str] | None) -> list[dict[str, Any]]:
    """Each group's catalog answer, from processes launched together (UsageError if one
    fails: it names the plugin)."""
    from attnbench.plugin.registry import origin_label
    from attnbench.worker.parent import WorkerDied, WorkerProcess, WorkerTimeout

    workers = [WorkerProcess({"role": "catalog", "origins": g, "run_limit": run_limit},
                             log_dir / ("catalog.log" if i == 0 else f"catalog-{i}.log"))
               for i, g in enumerate(groups)]
    answers = []
    try:
        for w in workers:
            w.launch()
        for group, w in zip(groups, workers, strict=True):
            try:
                w.ready(CATALOG_TIMEOUT_S)
                answers.append(w.request({"catalog": True, "probe": probe}, CATALOG_TIMEOUT_S).data)
            except (WorkerDied, WorkerTimeout) as exc:
                tail = (getattr(exc, "log_tail", "") or "").strip().splitlines()[-1:]
                who = "built-in backends" if len(group) > 1 else origin_label(group[0])
                raise UsageError(f"the plugin catalog process ({who}) failed: {exc}"
                                 + (f" ({plain(tail[0])[:200]})" if tail else "")) from None
    except WorkerDied as exc:  # a process could not even be launched
        raise UsageError(f"the plugin catalog process failed: {exc}") from None
    finally:
        for w in workers:
            w.stop()
    return answers


def _merge(cat: Catalog, group: list[dict[str, str]], data: dict[str, Any]) -> None:
    """Add one catalog process's answer; the origin of each backend is the one this process
    asked for (a plugin cannot point a backend at another plugin's code)."""
    from attnbench.plugin.registry import origin_label

    if isinstance(data.get("usage_error"), str):
        raise UsageError(plain(data["usage_error"]))
    part = Catalog.from_dict(data.get("catalog"))
    for name, info in part.backends.items():
        origin = dict(info.origin) if len(group) > 1 else group[0]
        if origin not in group:
            raise UsageError(f"backend {name!r}: its catalog names an origin it was not asked "
                             f"for ({plain(str(origin))[:80]})")
        if name in cat.backends:
            raise UsageError(f"backend name {name!r} is provided twice: by "
                             f"{cat.backends[name].plugin!r} and by {origin_label(origin)!r}")
        cat.backends[name] = replace(info, origin=origin, plugin=origin_label(origin))
    cat.failures += part.failures
    cat.scenario_dirs += part.scenario_dirs
    cat.observers += part.observers
    files = data.get("module_files")
    if len(group) == 1 and group[0].get("kind") == "spec" and isinstance(files, list):
        spec = str(group[0].get("spec"))
        own = str(Path(spec).resolve()) if spec.endswith(".py") else ""
        cat.module_files[spec] = [str(f) for f in files if isinstance(f, str) and f != own]
