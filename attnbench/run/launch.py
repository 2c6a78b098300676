"""A run or check as the command line asks for it: scenarios, plan, options, run.json, the sweep."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.run.config import run_config
from attnbench.run.executors.ray_setup import executor_from_args
from attnbench.sanitize import plain
from attnbench.scenario import resolve_scenario


def launch_sweep(args: argparse.Namespace, argv: list[str], defaults: argparse.Namespace
                 ) -> Any:
    """Run the `run` or `check` command's sweep; its RunResult. defaults: the command's flags
    as the parser defaults them (for --resume, which tells given flags from defaults)."""
    from attnbench.measure import environment
    from attnbench.measure.timing import TimerConfig
    from attnbench.run.catalog import load_catalog
    from attnbench.run.plan import make_plan, resolve_devices
    from attnbench.worker.execute import Options

    timed = args.command == "run"
    old_meta = _adopt_resumed(args, defaults)
    if getattr(args, "require_deterministic", False) and (args.repeat or 1) < 2:
        raise UsageError("--require-deterministic needs --repeat N with N >= 2")
    if getattr(args, "frontier_max", None) is not None and not getattr(args, "frontier", False):
        raise UsageError("--frontier-max needs --frontier")
    run_id = _out_folder(args)
    names = args.scenario or ["default" if timed else "smoke"]
    early = _shipped_scenarios(names, old_meta)  # a bad file fails before plugins load
    executor = executor_from_args(args)  # bad executor flags too
    catalog = load_catalog(args.plugin, run_limit=args.timeout,  # this process imports none
                           probe=list(args.backend) or None)  # only named backends are checked
    for plugin, reason in catalog.failures:
        print(f"attnbench: plugin {plugin} failed: {reason}", file=sys.stderr)
    given = {plain(p) for p in args.plugin or []}  # as the failures name them
    named = [(p, r) for p, r in catalog.failures if p in given]  # the --plugin ones
    scenarios = [early.get(n) or resolve_scenario(n, catalog.scenario_dirs) for n in names]
    plan = make_plan(catalog, scenarios, args.backend, resolve_devices(args.device), args.dtype)
    if not plan.backends:
        raise UsageError("no backend is available to run")
    opts = Options(seed=args.seed, time_it=timed, timer=TimerConfig(budget_s=args.budget),
                   threads=args.threads, memory=timed,  # check: agreement only, no gc-heavy peaks
                   repeat=args.repeat or 1, warm=plan.describe()["devices"])
    meta = {"command": "attnbench " + shlex.join(argv), "config": run_config(args, scenarios, opts),
            "environment": environment.fingerprint(args.plugin or [], catalog.module_files),
            **({"run_id": run_id} if run_id else {}),
            **({"plugin_failures": [list(f) for f in catalog.failures]} if catalog.failures
               else {})}
    if old_meta is not None:
        from attnbench.run.resume import check

        meta["resume_notes"] = check(old_meta, meta, plan.describe(), args.allow_code_change)
    result = _run(args, plan, opts, meta, executor)
    result.plugin_failures = named
    return result


def _shipped_scenarios(names: list[str], resumed: dict[str, Any] | None) -> dict[str, Any]:
    """The scenarios given as files or shipped names, read now; plugin-provided names later.
    A resumed run's scenario file that is gone is taken from the copy its run.json keeps."""
    from attnbench.scenario import scenario_from_spec, shipped_scenario_dir

    kept = {s.get("path"): s.get("spec") for s in
            ((resumed or {}).get("config") or {}).get("scenarios") or [] if isinstance(s, dict)}
    out = {}
    for n in names:
        if n in kept and n.endswith(".toml") and not os.path.lexists(n):
            print(plain(f"attnbench: scenario file {n} is gone: its copy in run.json is used"),
                  file=sys.stderr)  # the path is run.json's text: anyone's
            out[n] = scenario_from_spec(kept[n], n)
        elif n.endswith(".toml") or "/" in n or (shipped_scenario_dir() / f"{n}.toml").is_file():
            out[n] = resolve_scenario(n)
    return out


def _out_folder(args: argparse.Namespace) -> str | None:
    """Settle args.out; return the new run's id when attnbench names the folder.

    A folder that already holds a run is refused unless --resume (continue it) or --overwrite.
    """
    from attnbench.results_writer import is_run_folder, new_run_id

    if args.resume:
        if args.overwrite:
            raise UsageError("--overwrite and --resume contradict each other: --resume keeps "
                             "the run's records, --overwrite deletes them")
        return None
    if not args.out:
        run_id = new_run_id()
        args.out = os.path.abspath(os.path.join("results", run_id))
        return run_id
    if is_run_folder(args.out) and not args.overwrite:
        raise UsageError(f"--out {args.out} already holds a run; continue it with --resume "
                         f"{args.out}, or delete it and start afresh with --overwrite")
    return None


def _adopt_resumed(args: argparse.Namespace, defaults: argparse.Namespace
                   ) -> dict[str, Any] | None:
    """With --resume, take the stored config (flags must agree)."""
    if not args.resume:
        return None
    if getattr(args, "frontier", False):
        raise UsageError("--resume does not combine with --frontier")
    from attnbench.run.resume import adopt

    return adopt(args, defaults)


def _run(args: argparse.Namespace, plan: Any, opts: Any, meta: dict[str, Any],
         executor: Any) -> Any:
    """Run the plan as the flags say: run_plan, or the --frontier sweep; the RunResult."""
    from attnbench.run.runner import RunConfig, run_plan

    config = RunConfig(out_dir=Path(args.out) if args.out else None, opts=opts, meta=meta,
                       resume=bool(args.resume), overwrite=getattr(args, "overwrite", False),
                       timeout_s=args.timeout,
                       frontier_max=getattr(args, "frontier_max", None),
                       wait_idle_s=getattr(args, "wait_idle", None),
                       executor=executor, adopt_orphans=True)
    if getattr(args, "frontier", False):
        from attnbench.run.frontier import run_frontier

        return run_frontier(plan, config)
    return run_plan(plan, config)
