"""Resume: take an interrupted run's config from its run.json and refuse what would not compare."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.results import read_run

# command-line flag (argparse dest) -> key in run.json's config
FLAGS = {"scenario": "scenarios", "backend": "backends", "device": "devices", "dtype": "dtypes",
         "seed": "seed", "budget": "budget_s", "plugin": "plugins", "timeout": "timeout_s",
         "threads": "threads"}
# fingerprint keys that must not change: a new value would mix incomparable numbers
CODE_KEYS = ("host", "cpu", "python", "versions", "git_commit")


def adopt(args: argparse.Namespace, defaults: argparse.Namespace) -> dict[str, Any]:
    """Fill args from the run's stored config; a flag given with another value is an error.

    Returns the run's meta (run.json). args.out becomes the run folder.
    """
    run_dir = Path(args.resume)
    meta, _ = read_run(run_dir)
    config = meta.get("config") or {}
    if "config" not in meta:
        raise UsageError(f"cannot resume {run_dir}: its run.json has no config")
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
    args.out = str(run_dir)
    return meta


def _stored_flag(config: dict[str, Any], key: str) -> Any:
    if key == "scenarios":
        return [s["path"] for s in config.get("scenarios", [])]
    return config.get(key)


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
        if a != b and key == "git_commit" and allow_code_change:
            notes.append(_diff(key, a, b))
        elif a != b:
            hint = " (or --allow-code-change)" if key == "git_commit" else ""
            raise UsageError(f"{where}: {_diff(key, a, b)}; its numbers would not compare "
                             f"with new ones, start a new run instead{hint}")
    gpu_a, gpu_b = (old_env.get("gpu") or {}).get("name"), (new_env.get("gpu") or {}).get("name")
    if gpu_a != gpu_b:
        raise UsageError(f"{where}: {_diff('GPU', gpu_a, gpu_b)}")
    return notes


def _diff(key: str, a: Any, b: Any) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return f"{k} version was {a.get(k)}, now {b.get(k)}"
    return f"{key} was {a}, now {b}"
