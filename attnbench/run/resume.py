"""Resume: take an interrupted run's config from its run.json and refuse what would not compare."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.results import read_meta

# command-line flag (argparse dest) -> key in run.json's config
FLAGS = {"scenario": "scenarios", "backend": "backends", "device": "devices", "dtype": "dtypes",
         "seed": "seed", "budget": "budget_s", "plugin": "plugins", "timeout": "timeout_s",
         "threads": "threads", "executor": "executor", "ray_cpus_per_task": "ray_cpus_per_task",
         "ray_resource": "ray_resources",
         "repeat": "repeat"}
# flags taken from the stored config only when not given (a cluster's address may change)
ADOPTED = {"ray_address": "ray_address"}
# the JSON type each stored flag must have (a run.json edited by hand is refused, not run)
FLAG_TYPES: dict[str, type | tuple[type, ...]] = {
    "backends": list, "devices": list, "dtypes": list, "plugins": list, "seed": int,
    "budget_s": (int, float), "timeout_s": (int, float, type(None)), "threads": (int, type(None)),
    "executor": (str, type(None)), "ray_cpus_per_task": (int, type(None)), "ray_resources": list,
    "ray_address": (str, type(None)),
    "repeat": (int, type(None)),
}
# fingerprint keys that must not change: a new value would mix incomparable numbers
CODE_KEYS = ("host", "cpu", "python", "versions", "git_commit", "plugin_files")
CHANGEABLE = ("git_commit", "plugin_files")  # code: --allow-code-change lets it through


def adopt(args: argparse.Namespace, defaults: argparse.Namespace) -> dict[str, Any]:
    """Fill args from the run's stored config; a flag given with another value is an error.

    Returns the run's meta (run.json). args.out becomes the run folder.
    """
    run_dir = Path(args.resume)
    meta = read_meta(run_dir)
    config = meta.get("config") or {}
    if "config" not in meta:
        raise UsageError(f"cannot resume {run_dir}: its run.json has no config")
    if "frontier" in meta:  # resuming it would run the ordinary plan and call it finished
        raise UsageError(f"cannot resume {run_dir}: it is a --frontier run, and --resume "
                         "cannot continue one; start the --frontier run again into a new --out")
    _check_config(run_dir, config)
    if args.out and Path(args.out).resolve() != run_dir.resolve():
        raise UsageError(f"--out {args.out} and --resume {run_dir} name different folders")
    if bool(config.get("timed", True)) != (args.command == "run"):
        was = "run" if config.get("timed", True) else "check"
        raise UsageError(f"cannot resume {run_dir} with {args.command}: it was started by {was}")
    for dest, key in FLAGS.items():
        if not hasattr(args, dest):
            continue
        stored = _stored_flag(config, key)
        given = getattr(args, dest)
        if given != getattr(defaults, dest, None) and given != stored:
            raise UsageError(f"cannot resume {run_dir}: --{dest} {_show(given)} differs from "
                             f"the run's {_show(stored)}; start a new run instead")
        setattr(args, dest, stored)
    for dest, key in ADOPTED.items():
        if hasattr(args, dest) and getattr(args, dest) is None:
            setattr(args, dest, config.get(key))
    args.out = str(run_dir)
    return meta


def _check_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Refuse stored flags of the wrong JSON type (lists of strings where lists are kept)."""
    for key, kinds in FLAG_TYPES.items():
        if key not in config:
            continue
        value = config[key]
        bad = not isinstance(value, kinds) or isinstance(value, bool) or (
            isinstance(value, list) and not all(isinstance(x, str) for x in value))
        if bad:
            raise UsageError(f"cannot resume {run_dir}: its run.json's config.{key} has the "
                             f"wrong type ({type(value).__name__})")
    if "timed" in config and not isinstance(config["timed"], bool):
        raise UsageError(f"cannot resume {run_dir}: its run.json's config.timed has the wrong "
                         f"type ({type(config['timed']).__name__})")
    if config.get("executor") not in (None, "local", "ray"):
        raise UsageError(f"cannot resume {run_dir}: its run.json's config.executor is "
                         f"{str(config['executor'])[:40]!r}, not local or ray")


def _stored_flag(config: dict[str, Any], key: str) -> Any:
    if key == "scenarios":
        return [s["path"] for s in config.get("scenarios", [])]
    if key == "executor":  # runs from before executors ran locally
        return config.get(key) or "local"
    return config.get(key, [] if FLAG_TYPES.get(key) is list else None)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(none)"
    return str(value)


def check(old: dict[str, Any], new: dict[str, Any], plan: dict[str, Any],
          allow_code_change: bool = False) -> list[str]:
    """Refuse to resume when scenarios, plan or code version differ from the stored run.

    allow_code_change lets a changed attnbench commit through (libraries, host and Python
    never); the difference is returned, to be stored with the resume.
    """
    where = f"cannot resume {old.get('run_id', 'this run')}"
    old_specs = {s["path"]: s["spec"] for s in old["config"].get("scenarios", [])}
    for s in new["config"].get("scenarios", []):
        if old_specs.get(s["path"]) != s["spec"]:
            raise UsageError(f"{where}: scenario file {s['path']} changed since the run started")
    old_plan = old.get("plan") or {}
    for key in ("backends", "devices", "cases"):
        if key in old_plan and old_plan[key] != plan[key]:
            raise UsageError(f"{where}: its {key} were {_show(old_plan[key])[:200]}, "
                             f"now {_show(plan[key])[:200]}")
    old_env, new_env = old.get("environment") or {}, new.get("environment") or {}
    notes = []
    for key in CODE_KEYS:
        a, b = old_env.get(key), new_env.get(key)
        if key == "plugin_files":  # a run from before plugin files were fingerprinted: none
            a, b = a or {}, b or {}
        if a != b and key in CHANGEABLE and allow_code_change:
            notes.append(_diff(key, a, b))
        elif a != b:
            hint = " (or --allow-code-change)" if key in CHANGEABLE else ""
            raise UsageError(f"{where}: {_diff(key, a, b)}; its numbers would not compare "
                             f"with new ones, start a new run instead{hint}")
    gpu_a, gpu_b = (old_env.get("gpu") or {}).get("name"), (new_env.get("gpu") or {}).get("name")
    if gpu_a != gpu_b:
        raise UsageError(f"{where}: {_diff('GPU', gpu_a, gpu_b)}")
    return notes


def _diff(key: str, a: Any, b: Any) -> str:
    if key == "plugin_files" and isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return (f"plugin {k} changed since the run started ({_short(a.get(k))} → "
                        f"{_short(b.get(k))})")
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return f"{k} version was {a.get(k)}, now {b.get(k)}"
    return f"{key} was {a}, now {b}"


def _short(digest: Any) -> str:
    text = str(digest) if digest is not None else "not a plugin then"
    return text[:19] if text.startswith("sha256:") else text
