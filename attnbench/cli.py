"""Command line: attnbench list | run | check | report | compare | recommend | history; says the
outcome."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from attnbench.cli_parser import build_parser
from attnbench.errors import UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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


def _writable_file(path: str, flag: str) -> None:
    """Refuse (exit 2) a file path that cannot be written: a folder, a file not writable, or
    one whose nearest existing folder (the missing ones are made) is no writable folder."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: a folder, not a file")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{flag} {path}: the file cannot be written")
        return
    above = os.path.dirname(path)
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above) or not os.access(above, os.W_OK):
        raise UsageError(f"{flag} {path}: {above} is no folder this user can write in")


def settle_args(args: argparse.Namespace) -> None:
    """Make every path argument absolute (against the folder attnbench was started in) and
    drop repeated values of the list flags, which would run the same thing twice."""
    for dest in ("out", "resume", "junit_xml", "base", "new", "json", "run"):
        if getattr(args, dest, None):
            setattr(args, dest, os.path.abspath(getattr(args, dest)))
    if getattr(args, "runs", None):
        args.runs = [os.path.abspath(r) for r in args.runs]
    if getattr(args, "junit_xml", None):  # before the check: it is written after it
        _writable_file(args.junit_xml, "--junit-xml")
    real = [os.path.realpath(r) for r in getattr(args, "runs", None) or []]
    if len(set(real)) < len(real):  # the same folder, by another path or a link
        twice = next(r for r, x in zip(args.runs, real, strict=True) if real.count(x) > 1)
        raise UsageError(f"{twice} is given twice: each run is counted once")
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
    from attnbench.report.tables import backend_list, console
    from attnbench.run.catalog import load_catalog
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
    from attnbench.run.launch import launch_sweep

    timed = args.command == "run"
    result = launch_sweep(args, argv, build_parser().parse_args([args.command]))
    _print_results(args, result, timed)
    return _sweep_exit(args, result, timed)


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
    from attnbench.run.gate import check_gate

    verdict = check_gate(result.records, args.require_deterministic, args.repeat,
                         getattr(result, "plugin_failures", ()))
    print(verdict.message, file=sys.stdout if verdict.passed else sys.stderr)
    return EXIT_OK if verdict.passed else EXIT_FAILED


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
    _nothing_ran(result.records)
    if timed:  # last, so that it is what the user sees
        from attnbench.measure.busy import warning_lines
        from attnbench.sanitize import plain

        for line in warning_lines(getattr(result, "busy", None)):
            print(plain(line), file=sys.stderr)  # process names are anyone's text
    if getattr(args, "junit_xml", None):
        from attnbench.report.junit import write_junit

        print(f"junit: {write_junit(result.records, args.junit_xml)}")


def _nothing_ran(records: list[dict[str, Any]]) -> None:
    """Say so, with the reasons, when every record is `unsupported` (`--device cuda` here)."""
    from attnbench.sanitize import plain

    if not records or any(r["status"] != "unsupported" for r in records):
        return
    reasons = list(dict.fromkeys(x for r in records for x in r.get("reasons") or []))
    print(plain(f"attnbench: nothing ran: all {len(records)} case(s) are unsupported here: "
                + "; ".join(reasons[:3]) + (f" (and {len(reasons) - 3} more)"
                                            if len(reasons) > 3 else "")), file=sys.stderr)


def cmd_report(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench.report.write import write_report

    report = write_report(args.runs, args.out, args.baseline)
    print(f"report: {report.html}")
    print(f"markdown: {report.markdown}  table: {report.csv}  plots: {len(report.plots)}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench.report.compare import run_compare

    return run_compare(args.base, args.new, args.threshold, args.min_abs, args.all,
                       allow_missing=args.allow_missing, strict=args.strict, fmt=args.format)


def cmd_recommend(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench.report.recommend_case import Options
    from attnbench.report.recommend_view import run_recommend

    options = Options(args.memory_budget, args.max_error_over_bound, args.prefer)
    return run_recommend(args.runs, options, args.format, args.json)


def cmd_history(args: argparse.Namespace, argv: list[str]) -> int:
    from attnbench.history.command import run_history

    return run_history(args)


COMMANDS = {"list": cmd_list, "run": cmd_sweep, "check": cmd_sweep, "report": cmd_report,
            "compare": cmd_compare, "recommend": cmd_recommend, "history": cmd_history}

if __name__ == "__main__":
    sys.exit(main())
