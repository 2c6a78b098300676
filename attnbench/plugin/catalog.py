"""The catalog: what every plugin offers, described in plain data by a process of its own.

attnbench's own process (which writes records and verdicts) imports no plugin: a plugin that
runs there could rewrite a verdict. It learns the backends from catalog processes (workers
with the role "catalog"), one per plugin (the built-ins share one), each importing only its
plugin and describing its backends as JSON: name, framework, description, capabilities, why it
is unavailable and why not on each device; which plugin each came from is what the parent
asked that process to load. A case's own unsupported() is asked in the backend's worker.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.plugin import guard
from attnbench.plugin.capabilities import DEVICE_FIELDS, Capabilities
from attnbench.plugin.validate import NAME, capabilities_problem
from attnbench.sanitize import plain

DEVICES = ("cpu", "cuda")
CATALOG_TIMEOUT_S = 300.0  # importing torch and every plugin on a cold disk
TUPLE_FIELDS = ("devices", "dtypes", "masks", "modes", "variants")
NOT_PROBED = ("its availability was not checked: the run named other backends (-b), and a "
              "check can cost seconds (importing torch)")


@dataclass(frozen=True)
class BackendInfo:
    """A backend as the parent knows it: data only, never the plugin's object."""

    name: str
    framework: str
    capabilities: Capabilities
    origin: Mapping[str, str]  # how a worker loads only this backend's plugin
    plugin: str = ""  # the plugin's name as `list` shows it
    description: str = ""
    availability: tuple[str, ...] = ()  # why it cannot run at all here
    device_reasons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    broken: bool = False  # availability() or device_reasons() raised or hung
    probed: bool = True  # False: the run named other backends, so its checks were not called

    def reasons_on(self, device: str) -> list[str]:
        """Why it cannot run on a device here ([] when it can)."""
        if not self.probed:
            return [NOT_PROBED]
        return list(self.availability) + list(self.device_reasons.get(device, ()))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "framework": self.framework,
                "capabilities": capabilities_to_dict(self.capabilities),
                "origin": dict(self.origin), "plugin": self.plugin,
                "description": self.description, "availability": list(self.availability),
                "device_reasons": {d: list(r) for d, r in self.device_reasons.items()},
                "broken": self.broken, "probed": self.probed}

    @classmethod
    def from_dict(cls, d: Any) -> BackendInfo:
        """A catalog entry back, checked field by field (UsageError naming what is wrong)."""
        if not isinstance(d, dict):
            raise UsageError(f"the catalog holds a {type(d).__name__}, not a backend entry")
        name = d.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise UsageError(f"the catalog names a backend {plain(repr(name))[:60]}")
        caps = capabilities_from_dict(d.get("capabilities"), name)
        origin = d.get("origin")
        if not isinstance(origin, dict) or not all(isinstance(v, str) for v in origin.values()):
            raise UsageError(f"backend {name!r}: the catalog gives no plugin origin")
        return cls(name, str(d.get("framework")), caps, origin, plain(str(d.get("plugin", ""))),
                   str(d.get("description") or ""), _texts(d.get("availability")),
                   {str(k): _texts(v) for k, v in (d.get("device_reasons") or {}).items()},
                   d.get("broken") is True, d.get("probed") is not False)


def _texts(x: Any) -> tuple[str, ...]:
    return tuple(str(t) for t in x) if isinstance(x, list) else ()


def capabilities_to_dict(caps: Capabilities) -> dict[str, Any]:
    """Capabilities as plain JSON (tuples as lists)."""
    out: dict[str, Any] = {}
    for f in fields(Capabilities):
        value = getattr(caps, f.name)
        if f.name == "per_device":
            value = {d: {k: list(v) if isinstance(v, tuple) else v for k, v in over.items()}
                     for d, over in value.items()}
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[f.name] = value
    return out


def capabilities_from_dict(d: Any, name: str) -> Capabilities:
    """Capabilities from plain JSON, validated as a backend's are when it registers."""
    if not isinstance(d, dict) or set(d) - {f.name for f in fields(Capabilities)}:
        raise UsageError(f"backend {name!r}: the catalog's capabilities are not valid")
    d = {k: tuple(v) if k in TUPLE_FIELDS and isinstance(v, list) else v for k, v in d.items()}
    per = d.get("per_device") or {}
    if isinstance(per, dict):
        d["per_device"] = {dev: {k: tuple(v) if k in TUPLE_FIELDS and isinstance(v, list) else v
                                 for k, v in over.items() if k in DEVICE_FIELDS}
                           for dev, over in per.items() if isinstance(over, dict)}
    try:
        caps = Capabilities(**d)
    except TypeError as exc:
        raise UsageError(f"backend {name!r}: the catalog's capabilities: {exc}") from None
    problem = capabilities_problem(caps)
    if problem:
        raise UsageError(f"backend {name!r}: {problem}")
    return caps


@dataclass
class Catalog:
    """Every backend the plugins offer, the plugins that failed, and what else they add."""

    backends: dict[str, BackendInfo] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    scenario_dirs: list[str] = field(default_factory=list)
    observers: list[str] = field(default_factory=list)  # plugins with attnbench_record_written
    plugin_specs: tuple[str, ...] = ()
    autoload: bool = False
    module_files: dict[str, list[str]] = field(default_factory=dict)  # plugin: its own modules

    def get(self, name: str) -> BackendInfo:
        if name not in self.backends:
            known = ", ".join(sorted(self.backends)) or "none"
            failed = (f"; {len(self.failures)} plugin(s) did not load, e.g. "
                      f"{self.failures[0][0]}: {self.failures[0][1]}" if self.failures else "")
            raise UsageError(f"unknown backend {name!r} (known: {known}{failed})")
        return self.backends[name]

    def plannable(self, info: BackendInfo, devices: list[str]) -> bool:
        """Whether a run without -b takes the backend: it can run on one of the devices, or it
        is broken (its availability check raised or hung), so that its cases are recorded as
        errors rather than silently left out."""
        return info.broken or any(d in info.capabilities.devices and not info.reasons_on(d)
                                  for d in devices)

    def to_dict(self) -> dict[str, Any]:
        return {"backends": [b.to_dict() for b in self.backends.values()],
                "failures": [list(f) for f in self.failures],
                "scenario_dirs": self.scenario_dirs, "observers": self.observers}

    @classmethod
    def from_dict(cls, d: Any, plugin_specs: tuple[str, ...] = (), autoload: bool = False
                  ) -> Catalog:
        if not isinstance(d, dict):
            raise UsageError("the plugin catalog process gave no catalog")
        cat = cls(plugin_specs=tuple(plugin_specs), autoload=autoload)
        for entry in d.get("backends") or []:
            info = BackendInfo.from_dict(entry)
            cat.backends[info.name] = info
        cat.failures = [(plain(str(p)), plain(str(r))) for p, r in d.get("failures") or []]
        cat.scenario_dirs = [str(x) for x in d.get("scenario_dirs") or []]
        cat.observers = [plain(str(x)) for x in d.get("observers") or []]
        return cat


def describe(registry: Any, probe: Collection[str] | None = None) -> dict[str, Any]:
    """The catalog of a registry built in this process (the catalog process's answer).

    probe: the backends whose availability() and device_reasons() are called (None: all); the
    others are described without them (probed False), as a run that names its backends needs
    no other's checks (the built-in ones import torch: 1.5 s of CPU)."""
    entries = []
    for name, b in registry.backends.items():
        entry = {"name": name, "framework": b.framework,
                 "capabilities": capabilities_to_dict(b.capabilities),
                 "origin": registry.origin_of(name), "plugin": registry.origins[name],
                 "description": b.description}
        checked = _checks(b) if probe is None or name in probe else {"probed": False}
        entries.append({**entry, **checked})
    observers = [impl.plugin_name for impl in
                 registry.pm.hook.attnbench_record_written.get_hookimpls()]
    return {"backends": entries, "failures": [list(f) for f in registry.failures],
            "scenario_dirs": registry.scenario_dirs(), "observers": observers}


def _checks(b: Any) -> dict[str, Any]:
    """A backend's availability() and device_reasons(), guarded (a raise or hang: broken)."""
    avail = guard.reasons("availability()", b.availability, owner=b)
    devices = {d: guard.reasons("device_reasons()", b.device_reasons, d, owner=b)
               for d in DEVICES if d in b.capabilities.devices}
    return {"availability": avail.value if avail.ok else [str(avail.failure)],
            "device_reasons": {d: o.value if o.ok else [str(o.failure)]
                               for d, o in devices.items()},
            "broken": not avail.ok or not all(o.ok for o in devices.values())}


def module_files() -> list[str]:
    """Source files of the modules loaded here that belong to no installed package, to no
    standard library and not to attnbench: a plugin file and the helper modules it imports
    (the catalog process's answer; resume fingerprints them)."""
    import site
    import sys

    import attnbench.backends as builtins  # a folder of its own (pyproject's package-dir)

    installed = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(),
                 site.getusersitepackages(), str(Path(__file__).resolve().parents[1]),
                 *builtins.__path__}
    roots = tuple(str(Path(p).resolve()) + "/" for p in installed if p)
    files = {str(Path(f).resolve()) for m in list(sys.modules.values())
             if isinstance(f := getattr(m, "__file__", None), str) and f.endswith(".py")}
    return sorted(f for f in files if not f.startswith(roots))


def from_registry(registry: Any) -> Catalog:
    """The catalog of a registry built in this process (tests, the Python API)."""
    return Catalog.from_dict(describe(registry), registry.plugin_specs, registry.autoload)
