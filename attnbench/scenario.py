"""Scenario: a named set of cases in a TOML file, read, checked and found by name."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnbench.case import DEVICES, Case
from attnbench.errors import ScenarioError
from attnbench.mask_eval import check_cases
from attnbench.scenario_expand import expand_cases
from attnbench.scenario_keys import check_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Scenario:
    """A named set of cases read from a TOML file."""

    name: str
    description: str
    path: str
    spec: dict[str, Any]

    def cases(self, device: str) -> list[Case]:
        """Expand the scenario for a device (applying its [device.<name>] overrides)."""
        out: dict[Case, None] = {}  # a dict keeps the order and drops repeats in O(1)
        for variant in self.spec.get("variant") or [{}]:
            out.update(dict.fromkeys(expand_cases(self.spec, variant, device, self.path)))
        return list(out)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError naming file, key and reason."""
    p = Path(path)
    try:
        spec = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such scenario file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    except OSError as exc:  # a folder, no permission
        raise ScenarioError(f"{p}: cannot read the scenario file: {exc.strerror}") from None
    return scenario_from_spec(spec, p)


def scenario_from_spec(spec: Any, path: str | Path) -> Scenario:
    """A scenario from its spec (a file's, or the copy a run.json keeps), validated."""
    p = Path(path)
    check_spec(spec, str(p))
    name = spec.get("name", p.stem)
    scenario = Scenario(name, spec.get("description", ""), str(p), spec)
    cases = [c for device in DEVICES for c in scenario.cases(device)]  # bad values surface now
    problem = check_cases(cases)  # mask functions, in a child process
    if problem:
        raise ScenarioError(f"{p}: {problem}")
    return scenario


def shipped_scenario_dir() -> Path:
    """The folder of the scenario files installed with attnbench."""
    import attnbench.scenarios

    return Path(attnbench.scenarios.__file__).parent


def scenario_names(extra_dirs: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Names of the shipped scenarios and of those in plugin-provided folders."""
    dirs = [shipped_scenario_dir(), *map(Path, extra_dirs)]
    return sorted({p.stem for d in dirs for p in d.glob("*.toml")})


def resolve_scenario(name_or_path: str, extra_dirs: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Load a scenario by shipped name, plugin folder name, or path to a .toml file."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return load_scenario(name_or_path)
    for d in [shipped_scenario_dir(), *map(Path, extra_dirs)]:
        candidate = d / f"{name_or_path}.toml"
        if candidate.is_file():
            return load_scenario(candidate)
    known = ", ".join(scenario_names(extra_dirs))
    raise ScenarioError(f"unknown scenario {name_or_path!r} (known: {known}; or give a .toml path)")
