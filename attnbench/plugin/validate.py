"""Checks a backend before it is registered: its name, framework and typed capabilities."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from attnbench.case import DEVICES, DTYPES, MASKS, MODES, VARIANTS
from attnbench.plugin.backend import Backend
from attnbench.plugin.capabilities import DEVICE_FIELDS, Capabilities
from attnbench.plugin.probes import parse_version

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
FRAMEWORKS = ("numpy", "torch")
CHOICES = {"devices": DEVICES, "dtypes": DTYPES, "masks": MASKS, "modes": MODES}


class InvalidBackend(ValueError):
    """A backend that cannot be registered; the message says which attribute and why."""


def check_backend(backend: Any) -> str:
    """The backend's name once every attribute the runner reads is valid; else InvalidBackend.

    Reads name, framework, description, requires and capabilities (a property that raises
    is reported as such: the caller runs this under the guard).
    """
    if not isinstance(backend, Backend):
        raise InvalidBackend(f"returned {_short(backend)}, not an attnbench.Backend")
    name = backend.name
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidBackend(f"backend name {_short(name)} is not 1-64 characters of letters, "
                             "digits and ._+- starting with a letter or digit")
    where = f"backend {name!r}"
    if backend.framework not in FRAMEWORKS:
        raise InvalidBackend(f"{where}: framework {_short(backend.framework)} is not one of "
                             f"{', '.join(FRAMEWORKS)}")
    if not isinstance(backend.description, str):
        raise InvalidBackend(f"{where}: description is {_short(backend.description)}, not a str")
    requires = backend.requires
    if not isinstance(requires, (tuple, list)) or not all(isinstance(m, str) for m in requires):
        raise InvalidBackend(f"{where}: requires must be a tuple of module names")
    problem = capabilities_problem(backend.capabilities)
    if problem:
        raise InvalidBackend(f"{where}: {problem}")
    return name


def capabilities_problem(caps: Any) -> str | None:
    """Why a Capabilities value is unusable, or None."""
    if not isinstance(caps, Capabilities):
        return f"capabilities is {_short(caps)}, not an attnbench.Capabilities"
    problem = _fields_problem(caps, "capabilities", ("devices", *DEVICE_FIELDS), vars(caps))
    if problem or not caps.devices:
        return problem or "capabilities.devices is empty"
    if not isinstance(caps.per_device, Mapping):
        return f"capabilities.per_device is {_short(caps.per_device)}, not a mapping"
    for device, over in caps.per_device.items():
        where = f"capabilities.per_device[{device!r}]"
        if device not in caps.devices:
            return f"{where}: {_short(device)} is not one of the devices {caps.devices}"
        if not isinstance(over, Mapping) or not all(k in DEVICE_FIELDS for k in over):
            return f"{where} must map some of {', '.join(DEVICE_FIELDS)} to values"
        problem = _fields_problem(caps.on(device), where, tuple(over), over)
        if problem:
            return problem
    return _why_not_problem(caps.why_not) or _versions_problem(caps.min_versions)


def _why_not_problem(why: Any) -> str | None:
    """Why capabilities.why_not is unusable (a mapping of variant names to sentences), or None."""
    if not isinstance(why, Mapping) or not all(
            k in VARIANTS and isinstance(v, str) for k, v in why.items()):
        return (f"capabilities.why_not is {_short(why)}: need a mapping of "
                f"{', '.join(VARIANTS)} to sentences")
    return None


def _fields_problem(caps: Capabilities, where: str, names: tuple[str, ...],
                    given: Mapping[str, Any]) -> str | None:
    """The first of the named fields that has the wrong type or an unknown value."""
    for name in names:
        value, label = given[name], f"{where}.{name}"
        if name in CHOICES:
            known = CHOICES[name]
            if not isinstance(value, tuple) or not value or not all(
                    isinstance(x, str) and x in known for x in value):
                return f"{label} is {_short(value)}: need a non-empty tuple of {', '.join(known)}"
        elif name == "variants":  # may be empty: no variant supported
            if not isinstance(value, tuple) or not all(
                    isinstance(x, str) and x in VARIANTS for x in value):
                return f"{label} is {_short(value)}: need a tuple of {', '.join(VARIANTS)}"
        elif name in ("gqa", "cross"):
            if not isinstance(value, bool):
                return f"{label} is {_short(value)}, not True or False"
        elif not _is_int(value, allow_none=name == "head_dim_max") or (
                value is not None and value < 1):
            return f"{label} is {_short(value)}, not a positive int"
    lo, hi = caps.head_dim_min, caps.head_dim_max
    if isinstance(lo, int) and isinstance(hi, int) and _is_int(lo) and _is_int(hi) and hi < lo:
        return f"{where}: head_dim_max {hi} is below head_dim_min {lo}"
    return None


def _versions_problem(versions: Any) -> str | None:
    if not isinstance(versions, Mapping):
        return f"capabilities.min_versions is {_short(versions)}, not a mapping"
    for module, version in versions.items():
        if not isinstance(module, str) or not isinstance(version, str) or not parse_version(
                version):
            return (f"capabilities.min_versions[{_short(module)}] = {_short(version)}: need a "
                    "module name and a version such as '2.1'")
    return None


def _is_int(value: Any, allow_none: bool = False) -> bool:
    return (value is None and allow_none) or (isinstance(value, int)
                                              and not isinstance(value, bool))


def _short(value: Any) -> str:
    """A value's repr cut to 60 characters (it is the plugin's, it may be long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
