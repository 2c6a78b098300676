"""Command line: attnbench list | run | check | report | compare | recommend (thin: parses,
delegates)."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from attnbench.case import DTYPES
from attnbench.errors import UsageError
from attnbench.measure.threads import available_cores
from attnbench.record import CHECK_FAILED, VERIFIED
from attnbench.scenario import resolve_scenario

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_SEED = 2**32 - 1
MAX_BUDGET_S, MAX_TIMEOUT_S = 3600.0, 7 * 86400.0
MAX_THRESHOLD, MAX_MIN_ABS_MS = 1000.0, 3.6e6
MAX_FRONTIER = 2**24
MAX_REPEAT = 1000


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> Any:
        raise UsageError(message)


def number(kind: type, minimum: float, maximum: float, strict: bool = False) -> Any:
    """An argparse type: a finite int or float at least (or, strict, above) minimum, at most
    maximum (nan, inf and sizes no run could use are refused, not silently let through)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < minimum or (strict and value == minimum):
            bound = f"above {minimum}" if strict else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value

    return parse


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
    p.add_argument("--seed", type=number(int, 0, MAX_SEED), default=0,
                   help=f"seed of the inputs, 0 to {MAX_SEED} (default 0)")
    p.add_argument("--out", metavar="DIR",
                   help="result folder (default results/<run-id>); a folder that already holds "
                        "a run is refused unless --resume or --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out folder that holds a run: its records, "
                        "run.json, logs and report files are deleted first")
    p.add_argument("--budget", type=number(float, 0, MAX_BUDGET_S, strict=True), default=2.0,
                   metavar="SECONDS", help="timing budget per case and backend, at most "
                   f"{MAX_BUDGET_S:g} (default 2.0)")
    cores = available_cores()
    p.add_argument("--threads", type=number(int, 1, cores), default=None, metavar="N",
                   help="threads for torch, numba and BLAS in each worker (default: all cores); "
                        f"more than the {cores} cores here is refused (exit 2)")
    p.add_argument("--timeout", type=number(float, 0, MAX_TIMEOUT_S, strict=True), default=None,
                   metavar="SECONDS",
                   help="kill a case's worker after this long and record it as timeout "
                        "(default 300 s plus 10 timing budgets; at most a week)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="complete an interrupted run in RUN_DIR with its stored config, "
                        "skipping the records it already has")
    p.add_argument("--repeat", type=number(int, 1, MAX_REPEAT), default=1, metavar="N",
                   help="call each case N times in its worker and record whether the outputs "
                        "(and gradients) are bitwise identical across the calls (default 1: "
                        "no repeat check)")
    p.add_argument("--allow-code-change", action="store_true",
                   help="with --resume: go on although the attnbench git commit changed "
                        "(recorded in run.json; other library versions must still match)")
    add_executor(p)


def add_executor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "ray"], default=None,  # None: local
                   help="where cases run: local (this machine, default) or ray (a Ray cluster, "
                        "needs attnbench[ray]; records are written here all the same)")
    p.add_argument("--ray-address", metavar="ADDRESS", default=None,
                   help="with --executor ray: the cluster to join, auto (the one this machine "
                        "belongs to) or ray://host:port; default: start a local Ray")
    p.add_argument("--ray-cpus-per-task", type=number(int, 1, 4096), default=1, metavar="N",
                   help="with --executor ray: CPUs each task asks for (default 1); a CPU "
                        "task's worker runs N threads unless --threads says otherwise")
    p.add_argument("--ray-resource", action="append", default=[], metavar="LABEL[=AMOUNT]",
                   help="with --executor ray: a Ray resource every task asks for (repeatable), "
                        "e.g. accelerator_type:H100 to keep a sweep on one GPU type")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="attnbench", description="Benchmark and compare attention backends.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = sub.add_parser("list", help="list every backend, available or not, and why")
    add_common(p)
    p.add_argument("--scenarios", action="store_true", help="list the shipped scenarios too")
    p = sub.add_parser("run", help="run scenarios: check agreement and time every backend")
    add_common(p)
    add_sweep(p, "default")
    add_frontier(p)
    p.add_argument("--wait-idle", type=number(float, 0, MAX_TIMEOUT_S), nargs="?", const=600.0,
                   default=None, metavar="SECONDS",
                   help="before starting, wait (at most SECONDS, default 600) until the load is "
                        "under the core count and other processes leave the cores free; between "
                        "cases, pause (at most SECONDS each time) after a case that other "
                        "processes ran beside")
    p = sub.add_parser("check", help="check agreement only; exit 1 on any mismatch or failure")
    add_common(p)
    add_sweep(p, "smoke")
    p.add_argument("--junit-xml", metavar="FILE",
                   help="also write the records as JUnit XML (one test case per record)")
    p.add_argument("--require-deterministic", action="store_true",
                   help="with --repeat N (N >= 2): a record whose repeated calls are not "
                        "bitwise identical fails the check (by default it is only reported)")
    add_report_parsers(sub)
    return parser


def add_frontier(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frontier", action="store_true",
                   help="from each scenario's smallest case, keep doubling the sequence length "
                        "per backend until it fails (oom, timeout, crash, error) or reaches "
                        "--frontier-max; where each stopped goes to frontier.json")
    p.add_argument("--frontier-max", type=number(int, 1, MAX_FRONTIER), default=None, metavar="N",
                   help="largest key length --frontier tries (default 65536 on cpu, "
                        "262144 on cuda)")


def add_report_parsers(sub: Any) -> None:
    p = sub.add_parser("report", help="write report.md, report.html, summary.csv and plots")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s); several: side by side")
    p.add_argument("-o", "--out", metavar="DIR", help="output folder (default the first RUN)")
    p.add_argument("--baseline", default="torch-naive", metavar="BACKEND",
                   help="backend the speedups are relative to (default torch-naive)")
    p = sub.add_parser("compare", help="compare two runs case by case; exit 1 on a regression")
    p.add_argument("base", metavar="BASE", help="the reference run folder")
    p.add_argument("new", metavar="NEW", help="the run folder to judge")
    p.add_argument("--threshold", type=number(float, 0, MAX_THRESHOLD), default=None,
                   metavar="FRACTION", help="slowdown that counts, as a fraction of the base "
                   f"median, at most {MAX_THRESHOLD:g} (default 0.10 on cpu, 0.05 on cuda)")
    p.add_argument("--min-abs", type=number(float, 0, MAX_MIN_ABS_MS), default=None,
                   metavar="MS", help="smallest absolute change in ms that counts, at most "
                   f"{MAX_MIN_ABS_MS:g} (default 0.05 on cpu, 0.01 on cuda)")
    p.add_argument("--all", action="store_true", help="list every case, not only changed ones")
    p.add_argument("--strict", action="store_true",
                   help="gate timing regressions even when either run was made on a busy "
                        "machine (by default they are listed as unreliable, not gated)")
    p.add_argument("--allow-missing", action="store_true",
                   help="pass although the new run lacks cases or backends of the base run or "
                        "did not finish (by default that lost coverage fails, exit 1)")
    add_recommend_parser(sub)


def add_recommend_parser(sub: Any) -> None:
    p = sub.add_parser("recommend", help="per device, dtype, variant and shape bucket: the "
                       "fastest backend that agrees with the oracle, margins and crossovers")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folder(s); runs made on the same machine are pooled")
    p.add_argument("--memory-budget", type=byte_size, default=None, metavar="BYTES",
                   help="leave out a backend at a case where its peak memory exceeds this "
                        "(bytes, or e.g. 8GiB, 512MB)")
    p.add_argument("--max-error-over-bound", type=number(float, 0, 1.0), default=None,
                   metavar="X", help="leave out a backend at a case where its worst "
                   "error/bound exceeds X (0 to 1; 1 is the pass rule itself)")
    p.add_argument("--prefer", type=backend_names, default=(), metavar="A,B",
                   help="on a tie within noise, prefer these backends in this order")
    p.add_argument("--json", metavar="FILE", help="also write the recommendation as JSON")
    p.add_argument("--format", choices=["table", "markdown"], default="table",
                   help="terminal table (default) or Markdown")


def byte_size(text: str) -> float:
    """An argparse type: a size in bytes ('8GiB', '512MB', '1e9')."""
    from attnbench.report.recommend_case import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def backend_names(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated backend names, none empty."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"an empty backend name in {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        settle_args(args)  # before any plugin loads: a plugin may os.chdir
        return COMMANDS[args.command](args, argv)
    except UsageError as exc:
        print(f"attnbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a path the user gave cannot be written or read (-o, --junit-xml)
        print(f"attnbench: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("attnbench: interrupted", file=sys.stderr)
        return 130


def settle_args(args: argparse.Namespace) -> None:
    """Make every path argument absolute (against the folder attnbench was started in) and
    drop repeated values of the list flags, which would run the same thing twice."""
    for dest in ("out", "resume", "junit_xml", "base", "new", "json"):
        if getattr(args, dest, None):
            setattr(args, dest, os.path.abspath(getattr(args, dest)))
    if getattr(args, "runs", None):
        args.runs = [os.path.abspath(r) for r in args.runs]
    if getattr(args, "scenario", None):  # names stay names, as resolve_scenario tells them apart
        args.scenario = list(dict.fromkeys(
            os.path.abspath(s) if s.endswith(".toml") or "/" in s else s for s in args.scenario))
    if getattr(args, "plugin", None):  # module names stay, as import_plugin tells them apart
        args.plugin = list(dict.fromkeys(
            os.path.abspath(p) if p.endswith(".py") or os.sep in p else p for p in args.plugin))
    for dest in ("backend", "device", "dtype"):  # a repeated value runs once
        if getattr(args, dest, None):
            setattr(args, dest, list(dict.fromkeys(getattr(args, dest))))


def cmd_list(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench.plugin.catalog import load_catalog
    from attnbench.report.tables import backend_list, console
    from attnbench.scenario import scenario_names

    catalog = load_catalog(args.plugin)
    out = console()
    out.print(backend_list(catalog))
    for plugin, reason in catalog.failures:
        out.print(f"plugin {plugin} failed: {reason}")
    if args.scenarios:
        out.print("scenarios: " + ", ".join(scenario_names(catalog.scenario_dirs)))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench.measure import environment
    from attnbench.measure.timing import TimerConfig
    from attnbench.plugin.catalog import load_catalog
    from attnbench.run.runner import make_plan, resolve_devices
    from attnbench.worker.execute import Options

    timed = args.command == "run"
    old_meta = _adopt_resumed(args)
    if getattr(args, "require_deterministic", False) and (args.repeat or 1) < 2:
        raise UsageError("--require-deterministic needs --repeat N with N >= 2")
    run_id = _out_folder(args)
    names = args.scenario or ["default" if timed else "smoke"]
    early = _shipped_scenarios(names)  # a bad file fails before any plugin is loaded
    executor = _executor(args)  # bad executor flags too
    catalog = load_catalog(args.plugin, run_limit=args.timeout)  # this process imports none
    for plugin, reason in catalog.failures:
        print(f"attnbench: plugin {plugin} failed: {reason}", file=sys.stderr)
    scenarios = [early.get(n) or resolve_scenario(n, catalog.scenario_dirs) for n in names]
    plan = make_plan(catalog, scenarios, args.backend, resolve_devices(args.device), args.dtype)
    if not plan.backends:
        raise UsageError("no backend is available to run")
    opts = Options(seed=args.seed, time_it=timed, timer=TimerConfig(budget_s=args.budget),
                   threads=args.threads, memory=timed,  # check: agreement only, no gc-heavy peaks
                   repeat=args.repeat or 1, warm=plan.describe()["devices"])
    meta = {"command": "attnbench " + shlex.join(argv), "config": _config(args, scenarios, opts),
            "environment": environment.fingerprint(args.plugin or [], catalog.module_files),
            **({"run_id": run_id} if run_id else {})}
    if old_meta is not None:
        from attnbench.run.resume import check

        meta["resume_notes"] = check(old_meta, meta, plan.describe(), args.allow_code_change)
    result = _runner(args, plan, opts, meta, executor)
    _print_results(args, result, timed)
    return _sweep_exit(args, result, timed)


def _shipped_scenarios(names: list[str]) -> dict[str, Any]:
    """The scenarios given as files or shipped names, read now; plugin-provided names later."""
    from attnbench.scenario import shipped_scenario_dir

    return {n: resolve_scenario(n) for n in names
            if n.endswith(".toml") or "/" in n or (shipped_scenario_dir() / f"{n}.toml").is_file()}


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


def _sweep_exit(args: argparse.Namespace, result: Any, timed: bool) -> int:
    """130 when stopped; for check, 1 when a record failed or none was verified."""
    if not getattr(result, "finished", True):
        how = (f"finish with: attnbench {args.command} --resume {result.out_dir}"
               if not getattr(args, "frontier", False) else "a --frontier run cannot be "
               "resumed: start it again into a new --out (frontier.json says where it stopped)")
        print(f"attnbench: {result.stopped or 'stopped'}; the records so far are kept, {how}",
              file=sys.stderr)
        return 130
    if timed:
        return EXIT_OK
    records = result.records
    failed = [r for r in records if r["status"] in CHECK_FAILED]
    verified = [r for r in records if r["status"] in VERIFIED]
    if failed:
        print(f"check failed: {len(failed)} record(s) not ok ({_counts(failed)})",
              file=sys.stderr)
        return EXIT_FAILED
    if args.require_deterministic:
        from attnbench.run.determinism import nondeterministic

        if unequal := nondeterministic(records):
            print(f"check failed: {len(unequal)} record(s) not bitwise identical across "
                  f"{args.repeat} calls (--require-deterministic)", file=sys.stderr)
            return EXIT_FAILED
        if unchecked := [r for r in verified if not isinstance(r.get("determinism"), dict)]:
            print(f"check failed: {len(unchecked)} verified record(s) report no repeat check "
                  "(--require-deterministic)", file=sys.stderr)
            return EXIT_FAILED
    if not verified:
        why = next((r["reasons"][0] for r in records if r.get("reasons")), "no records")
        print(f"check failed: no record was verified against the oracle ({_counts(records)}; "
              f"e.g. {why})", file=sys.stderr)
        return EXIT_FAILED
    print(f"check passed: {len(verified)} record(s) verified ({_counts(records)})")
    return EXIT_OK


def _counts(records: list[dict[str, Any]]) -> str:
    """'3 ok, 1 unsupported': how many records have each status."""
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "no records"


def _print_results(args: argparse.Namespace, result: Any, timed: bool) -> None:
    """The summary tables, the records that are not ok, where the files went."""
    from attnbench.report.tables import console, determinism_lines, failures, summary

    out = console()
    for table in summary(result.records, timed):
        out.print(table)
    for line in determinism_lines(result.records):
        out.print(line)
    bad = failures(result.records)
    if bad is not None:
        out.print(bad)
    print(f"results: {result.out_dir}")
    if timed:  # last, so that it is what the user sees
        from attnbench.measure.busy import warning_lines
        from attnbench.sanitize import plain

        for line in warning_lines(getattr(result, "busy", None)):
            print(plain(line), file=sys.stderr)  # process names are anyone's text
    if getattr(args, "junit_xml", None):
        from attnbench.report.junit import write_junit

        print(f"junit: {write_junit(result.records, args.junit_xml)}")


def _config(args: argparse.Namespace, scenarios: list[Any], opts: Any) -> dict[str, Any]:
    return {"scenarios": [{"name": s.name, "path": s.path, "spec": s.spec} for s in scenarios],
            "backends": args.backend, "devices": args.device, "dtypes": args.dtype,
            "seed": args.seed, "budget_s": args.budget, "plugins": args.plugin,
            "timed": args.command == "run", "timeout_s": args.timeout,
            "threads": getattr(args, "threads", None),
            "executor": args.executor or "local", "ray_address": args.ray_address,
            "ray_cpus_per_task": args.ray_cpus_per_task, "ray_resources": args.ray_resource,
            "repeat": opts.repeat}


def _adopt_resumed(args: argparse.Namespace) -> dict[str, Any] | None:
    """With --resume, take the stored config (flags must agree)."""
    if not args.resume:
        return None
    if getattr(args, "frontier", False):
        raise UsageError("--resume does not combine with --frontier")
    from attnbench.run.resume import adopt

    return adopt(args, build_parser().parse_args([args.command]))


def _runner(args: argparse.Namespace, plan: Any, opts: Any, meta: dict[str, Any],
            executor: Any) -> Any:
    """Run the plan as the flags say: run_plan, or the --frontier sweep; the RunResult."""
    from attnbench.run.runner import RunConfig, run_plan

    config = RunConfig(out_dir=Path(args.out) if args.out else None, opts=opts, meta=meta,
                       resume=bool(args.resume), overwrite=getattr(args, "overwrite", False),
                       timeout_s=args.timeout,
                       frontier_max=getattr(args, "frontier_max", None),
                       wait_idle_s=getattr(args, "wait_idle", None),
                       executor=executor)
    if getattr(args, "frontier", False):
        from attnbench.run.frontier import run_frontier

        return run_frontier(plan, config)
    return run_plan(plan, config)


def _executor(args: argparse.Namespace) -> Any:
    """The Ray executor when --executor ray, else None (the local one); --ray-* flags checked."""
    ray_flags = [f for f, given in (("--ray-address", args.ray_address),
                                    ("--ray-resource", args.ray_resource),
                                    ("--ray-cpus-per-task", (args.ray_cpus_per_task or 1) != 1))
                 if given]
    if (args.executor or "local") != "ray":
        if ray_flags:
            raise UsageError(f"{ray_flags[0]} needs --executor ray")
        return None
    if getattr(args, "frontier", False):
        raise UsageError("--frontier runs on this machine only: leave out --executor ray")
    if getattr(args, "wait_idle", None) is not None:
        raise UsageError("--wait-idle watches this machine only, and the cases of --executor ray "
                         "run on the cluster's nodes: leave out one of them")
    from attnbench.run.executors.ray_driver import RayExecutor, RayOptions

    executor = RayExecutor(RayOptions(args.ray_address, args.ray_cpus_per_task or 1,
                                      _resources(args.ray_resource)))
    executor.connect()  # a cluster that cannot be reached: exit 2 before the run folder exists
    return executor


def _resources(labels: list[str]) -> dict[str, float]:
    """--ray-resource LABEL[=AMOUNT] values as Ray's resources dict (amount 1 by default)."""
    out: dict[str, float] = {}
    for text in labels:
        label, _, amount = text.partition("=")
        try:
            value = float(amount) if amount else 1.0
        except ValueError:
            value = -1.0
        if not label or not math.isfinite(value) or value <= 0:
            raise UsageError(f"--ray-resource {text!r}: use LABEL or LABEL=AMOUNT (AMOUNT > 0)")
        out[label] = value
    return out


def cmd_report(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench.report.write import write_report

    report = write_report(args.runs, args.out, args.baseline)
    print(f"report: {report.html}")
    print(f"markdown: {report.markdown}  table: {report.csv}  plots: {len(report.plots)}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench.report.compare import run_compare

    return run_compare(args.base, args.new, args.threshold, args.min_abs, args.all,
                       allow_missing=args.allow_missing, strict=args.strict)


def cmd_recommend(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench.report.recommend_case import Options
    from attnbench.report.recommend_view import run_recommend

    options = Options(args.memory_budget, args.max_error_over_bound, args.prefer)
    return run_recommend(args.runs, options, args.format, args.json)


COMMANDS = {"list": cmd_list, "run": cmd_sweep, "check": cmd_sweep, "report": cmd_report,
            "compare": cmd_compare, "recommend": cmd_recommend}

if __name__ == "__main__":
    sys.exit(main())
