"""Builds the plugin manager: built-ins, entry points, --plugin files and modules."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from attnbench.errors import UsageError
from attnbench.plugin import guard, hookspecs
from attnbench.plugin.backend import Backend, pin_name
from attnbench.plugin.validate import InvalidBackend, check_backend
from attnbench.pyfile import exec_file
from attnbench.sanitize import plain

BUILTIN_MODULES = (
    "attnbench.backends.numpy_naive",
    "attnbench.backends.numba_cpu",
    "attnbench.backends.numpy_flash",
    "attnbench.backends.torch_naive",
    "attnbench.backends.torch_sdpa",
    "attnbench.backends.xformers_mea",
    "attnbench.backends.flash_attn_func",
    "attnbench.backends.flex_attention",
)
AUTOLOAD_OFF_ENV = "ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD"


@dataclass
class Registry:
    """The loaded backends, which plugin gave each, and the plugins that failed."""

    pm: pluggy.PluginManager
    backends: dict[str, Backend] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    plugin_specs: tuple[str, ...] = ()  # --plugin specs, so a worker can rebuild the same registry
    autoload: bool = False  # whether entry points were loaded
    extra_scenario_dirs: list[str] = field(default_factory=list)
    plugin_origins: dict[str, dict[str, str]] = field(default_factory=dict)  # plugin -> origin

    def origin_of(self, backend: str) -> dict[str, str]:
        """How a worker loads only the plugin that gave this backend (load_origin)."""
        return self.plugin_origins[self.origins[backend]]

    def get(self, name: str) -> Backend:
        if name not in self.backends:
            known = ", ".join(sorted(self.backends)) or "none"
            raise UsageError(f"unknown backend {name!r} (known: {known})")
        return self.backends[name]

    def scenario_dirs(self) -> list[str]:
        """Folders of scenario files the plugins add (asked once, when the registry is built)."""
        return list(self.extra_scenario_dirs)


def autoload_enabled() -> bool:
    return os.environ.get(AUTOLOAD_OFF_ENV, "") in ("", "0")


def build_registry(
    plugins: tuple[str, ...] | list[str] = (), autoload: bool | None = None,
    only: dict[str, str] | list[dict[str, str]] | None = None,
) -> Registry:
    """Register built-ins, then entry points (unless disabled), then --plugin specs; with
    `only` (an origin, as Registry.origin_of gives, or a list of them), those plugins and
    nothing else."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm, plugin_specs=tuple(plugins))
    reg.autoload = autoload_enabled() if autoload is None else autoload
    if only is not None:
        for origin in only if isinstance(only, list) else [only]:
            _register_origin(reg, origin)
    else:
        for origin in plugin_origins(plugins, reg.autoload):
            _register_origin(reg, origin)
    _collect_backends(reg)
    _collect_scenario_dirs(reg)
    return reg


def plugin_origins(plugins: tuple[str, ...] | list[str] = (), autoload: bool = False
                   ) -> list[dict[str, str]]:
    """Every plugin's origin, without importing any: the built-in modules, then the installed
    entry points (with autoload), then the --plugin specs, in registration order."""
    out = [{"kind": "builtin", "module": m} for m in BUILTIN_MODULES]
    if autoload:
        out += [{"kind": "entry_point", "name": ep.name, "value": ep.value}
                for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT)]
    return out + [{"kind": "spec", "spec": spec} for spec in plugins]


def origin_label(origin: dict[str, str]) -> str:
    """The plugin's name as records and `list` show it, from its origin."""
    if origin.get("kind") == "builtin":
        return str(origin.get("module"))
    if origin.get("kind") == "entry_point":
        return f"{origin.get('name')} ({origin.get('value')})"
    return str(origin.get("spec"))


def _register_origin(reg: Registry, origin: dict[str, str]) -> None:
    """Register the one plugin an origin names (a worker imports only its backend's plugin)."""
    kind = origin.get("kind")
    if kind == "builtin" and origin.get("module") in BUILTIN_MODULES:
        module = origin["module"]
        _register(reg, module, lambda: importlib.import_module(module), origin)
    elif kind == "entry_point":
        eps = [ep for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT)
               if ep.name == origin.get("name") and ep.value == origin.get("value")]
        if not eps:
            _fail(reg, str(origin.get("name")), "entry point no longer installed")
            return
        _register(reg, origin_label(origin), eps[0].load, origin)
    elif kind == "spec" and isinstance(origin.get("spec"), str):
        spec = origin["spec"]
        _register(reg, spec, lambda: import_plugin(spec), origin)
    else:
        _fail(reg, str(origin), "not a plugin origin attnbench knows")


def _register(reg: Registry, name: str, loader: Any, origin: dict[str, str]) -> None:
    loaded = guard.call("import", loader)  # a plugin's import may raise anything, or hang
    if isinstance(loaded.error, UsageError):
        raise loaded.error
    if not loaded.ok:
        _fail(reg, name, str(loaded.failure))  # "import raised ..." or "... did not return"
        return
    plugin = loaded.value
    if reg.pm.is_registered(plugin):
        return
    reg.plugin_origins[name] = origin
    try:
        reg.pm.register(plugin, name=name)
        reg.pm.check_pending()
    except pluggy.PluginValidationError as exc:
        reg.pm.unregister(plugin)
        _fail(reg, name, f"invalid plugin: {exc}")


def _fail(reg: Registry, plugin: str, reason: str) -> None:
    """Note a plugin that failed, as one line of printable text (it is shown as it is)."""
    reg.failures.append((plain(plugin), plain(reason)))


def import_plugin(spec: str) -> ModuleType:
    """Import a plugin from a .py file path or a module name."""
    path = Path(spec)
    if spec.endswith(".py") or os.sep in spec:
        if not path.is_file():
            raise UsageError(f"plugin {spec!r}: " + ("a folder, not a .py file" if path.is_dir()
                                                     else "no such file"))
        return _import_file(path.resolve())
    found = importlib.util.find_spec(spec.split(".")[0])
    if found is None:
        raise UsageError(f"plugin {spec!r}: " + ("a file that is not Python (.py), and no module "
                                                 "of that name" if path.is_file()
                                                 else "no such file or module"))
    if found.origin in (None, "namespace"):  # a folder without __init__.py: nothing to import
        raise UsageError(f"plugin {spec!r}: a folder with no __init__.py, not a plugin module")
    return importlib.import_module(spec)


_file_locks: dict[str, threading.Lock] = {}  # module name -> held while that file imports
_file_locks_guard = threading.Lock()


def _import_file(path: Path) -> ModuleType:
    """Import a plugin file once per process. A build that finds the file being imported by
    another (registries built from two threads) waits for it: a half-run module in
    sys.modules has no hooks yet, and registering it would lose its backends silently."""
    mod_name = f"attnbench_plugin_{path.stem}"
    with _file_locks_guard:
        lock = _file_locks.setdefault(mod_name, threading.Lock())
    with lock:
        loaded = sys.modules.get(mod_name)
        if loaded is not None and getattr(loaded, "__file__", None) == str(path):
            return loaded
        return exec_file(mod_name, path)


def _hook_results(reg: Registry, hook: Any, what: str) -> list[tuple[str, list[Any]]]:
    """(plugin, list returned) for each implementation of a hook, in registration order;
    an implementation that raises, hangs or returns no iterable is a failure of its plugin."""
    out = []
    for impl in hook.get_hookimpls():
        got = guard.call(what, lambda f=impl.function: list(f() or []))
        if got.ok:
            out.append((impl.plugin_name, got.value))
        else:
            _fail(reg, impl.plugin_name, str(got.failure))
    return out


def _collect_backends(reg: Registry) -> None:
    for plugin, found in _hook_results(reg, reg.pm.hook.attnbench_backends,
                                       "attnbench_backends()"):
        for backend in found:
            _add_backend(reg, backend, plugin)


def _collect_scenario_dirs(reg: Registry) -> None:
    for plugin, dirs in _hook_results(reg, reg.pm.hook.attnbench_scenario_dirs,
                                      "attnbench_scenario_dirs()"):
        bad = [d for d in dirs if not isinstance(d, (str, os.PathLike))]
        if bad:
            _fail(reg, plugin, f"attnbench_scenario_dirs() returned {bad[0]!r}, not a path")
        reg.extra_scenario_dirs += [os.fspath(d) for d in dirs
                                    if isinstance(d, (str, os.PathLike))]


def _add_backend(reg: Registry, backend: Any, plugin: str) -> None:
    """Register one backend once check_backend accepts it; else a one-line UsageError."""
    checked = guard.call("reading the backend's attributes", check_backend, backend)
    if isinstance(checked.error, InvalidBackend):
        raise UsageError(plain(f"plugin {plugin!r}: {checked.error}"))
    if not checked.ok:
        raise UsageError(plain(f"plugin {plugin!r}: {checked.failure}"))
    name = checked.value
    if name in reg.backends:
        raise UsageError(plain(f"backend name {name!r} is provided twice: by "
                               f"{reg.origins[name]!r} and by {plugin!r}"))
    pin_name(backend, name)
    reg.backends[name] = backend
    reg.origins[name] = plugin
