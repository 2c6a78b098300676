"""Case (one attention problem), Scenario (a TOML file of cases) and their expansion."""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from attnbench.errors import ScenarioError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DTYPES = ("float64", "float32", "float16", "bfloat16")
MASKS = ("none", "causal")
MODES = ("fwd", "bwd", "fwd_bwd")
DEVICES = ("cpu", "cuda")
INT_KEYS = ("batch", "heads", "heads_q", "heads_kv", "seq_len", "seq_q", "seq_kv", "head_dim")
CHOICES = {"dtype": DTYPES, "mask": MASKS, "mode": MODES}
CASE_KEYS = (*INT_KEYS, *CHOICES, "scale")
TOP_KEYS = ("name", "description", "base", "sweep", "device", "variant")


@dataclass(frozen=True)
class Case:
    """One attention problem: shapes, dtype, device, mask and pass direction."""

    batch: int
    heads_q: int
    heads_kv: int
    seq_q: int
    seq_kv: int
    head_dim: int
    dtype: str = "float32"
    device: str = "cpu"
    mask: str = "none"
    mode: str = "fwd"
    scale: float | None = None

    @property
    def id(self) -> str:
        s = f"-s{self.scale:g}" if self.scale is not None else ""
        return (
            f"b{self.batch}-h{self.heads_q}:{self.heads_kv}-q{self.seq_q}-k{self.seq_kv}"
            f"-d{self.head_dim}{s}-{self.dtype}-{self.mask}-{self.mode}"
        )

    @property
    def softmax_scale(self) -> float:
        return self.scale if self.scale is not None else 1.0 / math.sqrt(self.head_dim)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Scenario:
    """A named set of cases read from a TOML file."""

    name: str
    description: str
    path: str
    spec: dict[str, Any]

    def cases(self, device: str) -> list[Case]:
        """Expand the scenario for a device (applying its [device.<name>] overrides)."""
        out: list[Case] = []
        for variant in self.spec.get("variant") or [{}]:
            for case in _expand(self.spec, variant, device, self.path):
                if case not in out:
                    out.append(case)
        return out


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
    _validate(spec, str(p))
    name = spec.get("name", p.stem)
    scenario = Scenario(name, spec.get("description", ""), str(p), spec)
    for device in DEVICES:  # expand once per device so every bad value surfaces now
        scenario.cases(device)
    return scenario


def _validate(spec: dict[str, Any], path: str) -> None:
    for key in spec:
        if key not in TOP_KEYS:
            raise ScenarioError(f"{path}: unknown key {key!r} (allowed: {', '.join(TOP_KEYS)})")
    for key in ("name", "description"):
        if key in spec and not isinstance(spec[key], str):
            raise ScenarioError(f"{path}: key {key!r}: must be a string")
    for table in ("base", "sweep", "device"):
        if table in spec and not isinstance(spec[table], dict):
            raise ScenarioError(f"{path}: key {table!r}: must be a table")
    _check_table(spec.get("base", {}), path, "base", lists=False)
    _check_table(spec.get("sweep", {}), path, "sweep", lists=True)
    _check_devices(spec.get("device", {}), path, "device")
    variants = spec.get("variant", [])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ScenarioError(f"{path}: key 'variant': must be an array of tables ([[variant]])")
    for i, v in enumerate(variants):
        if "name" in v and not isinstance(v["name"], str):
            raise ScenarioError(f"{path}: key 'variant[{i}].name': must be a string")
        plain = {k: x for k, x in v.items() if k not in ("name", "device")}
        _check_table(plain, path, f"variant[{i}]", None)
        _check_devices(v.get("device", {}), path, f"variant[{i}].device")


def _check_devices(devices: Any, path: str, where: str) -> None:
    if not isinstance(devices, dict):
        raise ScenarioError(f"{path}: key {where!r}: must be a table")
    for dev, table in devices.items():
        if dev not in DEVICES:
            raise ScenarioError(f"{path}: key '{where}.{dev}': unknown device (use cpu or cuda)")
        if not isinstance(table, dict):
            raise ScenarioError(f"{path}: key '{where}.{dev}': must be a table")
        _check_table(table, path, f"{where}.{dev}", lists=None)


def _check_table(table: dict[str, Any], path: str, where: str, lists: bool | None) -> None:
    """Check keys and value types; lists=True needs lists, False forbids them, None allows both."""
    for key, value in table.items():
        label = f"{where}.{key}"
        if key not in CASE_KEYS:
            raise ScenarioError(f"{path}: unknown key {label!r} (allowed: {', '.join(CASE_KEYS)})")
        if lists is True and not isinstance(value, list):
            raise ScenarioError(f"{path}: key {label!r}: a sweep value must be a list")
        if lists is False and isinstance(value, list):
            raise ScenarioError(f"{path}: key {label!r}: a base value must not be a list")
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            raise ScenarioError(f"{path}: key {label!r}: empty list")
        for x in values:
            _check_value(key, x, path, label)


def _check_value(key: str, x: Any, path: str, label: str) -> None:
    if key in INT_KEYS:
        if not isinstance(x, int) or isinstance(x, bool):
            raise ScenarioError(f"{path}: key {label!r}: expected an integer, got {x!r}")
        if x <= 0:
            raise ScenarioError(f"{path}: key {label!r}: must be positive, got {x}")
    elif key in CHOICES:
        if x not in CHOICES[key]:
            allowed = ", ".join(CHOICES[key])
            raise ScenarioError(f"{path}: key {label!r}: unknown {key} {x!r} (use {allowed})")
    elif key == "scale":
        if not isinstance(x, (int, float)) or isinstance(x, bool) or x <= 0:
            raise ScenarioError(f"{path}: key {label!r}: expected a positive number, got {x!r}")


def _layer(base: dict, sweep: dict, table: dict) -> tuple[dict, dict]:
    """Overlay a table: scalars replace base and sweep values, lists replace sweep values."""
    base, sweep = dict(base), dict(sweep)
    for key, value in table.items():
        if key in ("name", "device"):
            continue
        _split_shorthand(key, base, sweep)
        for alias in _aliases(key):
            base.pop(alias, None)
            sweep.pop(alias, None)
        (sweep if isinstance(value, list) else base)[key] = value
    return base, sweep


def _split_shorthand(key: str, base: dict, sweep: dict) -> None:
    """Setting seq_q (or heads_kv) over seq_len (heads) keeps the other half at its value."""
    for short, pair in (("heads", ("heads_q", "heads_kv")), ("seq_len", ("seq_q", "seq_kv"))):
        if key in pair:
            other = pair[1 - pair.index(key)]
            for table in (base, sweep):
                if short in table:
                    table.setdefault(other, table.pop(short))


def _aliases(key: str) -> tuple[str, ...]:
    groups = (("heads", "heads_q", "heads_kv"), ("seq_len", "seq_q", "seq_kv"))
    for group in groups:
        if key == group[0]:
            return group
        if key in group:
            return (group[0], key)
    return (key,)


def _expand(spec: dict, variant: dict, device: str, path: str) -> list[Case]:
    base, sweep = spec.get("base", {}), spec.get("sweep", {})
    base, sweep = _layer(base, sweep, spec.get("device", {}).get(device, {}))
    base, sweep = _layer(base, sweep, variant)
    base, sweep = _layer(base, sweep, variant.get("device", {}).get(device, {}))
    keys = list(sweep)
    out = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        out.append(_make_case({**base, **dict(zip(keys, combo, strict=True))}, device, path))
    return out


def _make_case(v: dict[str, Any], device: str, path: str) -> Case:
    for short, pair in (("heads", ("heads_q", "heads_kv")), ("seq_len", ("seq_q", "seq_kv"))):
        if short in v:
            for long in pair:
                v.setdefault(long, v[short])
    for key in ("batch", "heads_q", "heads_kv", "seq_q", "seq_kv", "head_dim"):
        if key not in v:
            raise ScenarioError(f"{path}: key {key!r}: missing (set it in [base] or [sweep])")
    if v["heads_q"] % v["heads_kv"]:
        raise ScenarioError(
            f"{path}: key 'heads_q': {v['heads_q']} is not a multiple of heads_kv={v['heads_kv']}"
        )
    return Case(
        batch=v["batch"], heads_q=v["heads_q"], heads_kv=v["heads_kv"], seq_q=v["seq_q"],
        seq_kv=v["seq_kv"], head_dim=v["head_dim"], dtype=v.get("dtype", "float32"),
        device=device, mask=v.get("mask", "none"), mode=v.get("mode", "fwd"),
        scale=float(v["scale"]) if "scale" in v else None,
    )


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
