"""Command line: attnbench list | run | check (thin: parses flags, calls the runner)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from attnbench.case import DTYPES, resolve_scenario
from attnbench.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> Any:
        raise UsageError(message)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="load a backend plugin from a .py file or a module name (repeatable)")


def add_sweep(p: argparse.ArgumentParser, default_scenario: str) -> None:
    p.add_argument("-s", "--scenario", action="append", default=[], metavar="NAME_OR_FILE",
                   help=f"scenario name or .toml path (repeatable; default {default_scenario})")
    p.add_argument("-b", "--backend", action="append", default=[], metavar="NAME",
                   help="backend to run (repeatable; default every available backend)")
    p.add_argument("--device", action="append", default=[], choices=["auto", "cpu", "cuda"],
                   help="device to run on (repeatable; default auto: cuda if present, else cpu)")
    p.add_argument("--dtype", action="append", default=[], choices=DTYPES,
                   help="run every case in this dtype instead of the scenario's (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    p.add_argument("--out", metavar="DIR", help="result folder (default results/<run-id>)")
    p.add_argument("--budget", type=float, default=2.0, metavar="SECONDS",
                   help="timing budget per case and backend (default 2.0)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="attnbench", description="Benchmark and compare attention backends.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = sub.add_parser("list", help="list every backend, available or not, and why")
    add_common(p)
    p.add_argument("--scenarios", action="store_true", help="list the shipped scenarios too")
    p = sub.add_parser("run", help="run scenarios: check agreement and time every backend")
    add_common(p)
    add_sweep(p, "default")
    p = sub.add_parser("check", help="check agreement only; exit 1 on any mismatch or failure")
    add_common(p)
    add_sweep(p, "smoke")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, argv)
    except UsageError as exc:
        print(f"attnbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("attnbench: interrupted", file=sys.stderr)
        return 130


def cmd_list(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench.case import scenario_names
    from attnbench.plugins import build_registry
    from attnbench.tables import backend_list, console

    registry = build_registry(args.plugin)
    out = console()
    out.print(backend_list(registry, ["cpu", "cuda"]))
    for plugin, reason in registry.failures:
        out.print(f"plugin {plugin} failed: {reason}")
    if args.scenarios:
        out.print("scenarios: " + ", ".join(scenario_names(registry.scenario_dirs())))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench import environment
    from attnbench.execute import Options
    from attnbench.plugins import build_registry
    from attnbench.runner import make_plan, resolve_devices, run_plan
    from attnbench.tables import console, failures, summary
    from attnbench.timing import TimerConfig

    timed = args.command == "run"
    registry = build_registry(args.plugin)
    out = console()
    for plugin, reason in registry.failures:
        print(f"attnbench: plugin {plugin} failed: {reason}", file=sys.stderr)
    names = args.scenario or ["default" if timed else "smoke"]
    scenarios = [resolve_scenario(n, registry.scenario_dirs()) for n in names]
    plan = make_plan(registry, scenarios, args.backend, resolve_devices(args.device), args.dtype)
    if not plan.backends:
        raise UsageError("no backend is available to run")
    if args.budget <= 0:
        raise UsageError(f"--budget must be positive, got {args.budget}")
    opts = Options(seed=args.seed, time_it=timed, timer=TimerConfig(budget_s=args.budget))
    meta = {"command": "attnbench " + shlex.join(argv), "config": _config(args, scenarios),
            "environment": environment.fingerprint()}
    result = run_plan(plan, Path(args.out) if args.out else None, opts, meta)
    for table in summary(result.records, timed):
        out.print(table)
    bad = failures(result.records)
    if bad is not None:
        out.print(bad)
    print(f"results: {result.out_dir}")
    if not timed and result.failed():
        print(f"check failed: {len(result.failed())} record(s) not ok", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _config(args: argparse.Namespace, scenarios: list[Any]) -> dict[str, Any]:
    return {"scenarios": [{"name": s.name, "path": s.path, "spec": s.spec} for s in scenarios],
            "backends": args.backend, "devices": args.device, "dtypes": args.dtype,
            "seed": args.seed, "budget_s": args.budget, "plugins": args.plugin,
            "timed": args.command == "run"}


COMMANDS = {"list": cmd_list, "run": cmd_sweep, "check": cmd_sweep}

if __name__ == "__main__":
    sys.exit(main())
