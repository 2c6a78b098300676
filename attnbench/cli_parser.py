"""The command line's parser: every command's flags, each value checked as it is parsed."""

from __future__ import annotations

import argparse
import math
from typing import Any

from attnbench.case import DTYPES
from attnbench.errors import UsageError
from attnbench.measure.threads import available_cores

MAX_SEED = 2**32 - 1
MAX_BUDGET_S, MAX_TIMEOUT_S = 3600.0, 7 * 86400.0
MAX_THRESHOLD, MAX_MIN_ABS_MS = 1000.0, 3.6e6
MAX_FRONTIER = 2**24
MAX_REPEAT = 1000


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> Any:
        raise UsageError(message)


def nonempty(what: str) -> Any:
    """An argument type for text that must not be empty or blank (an empty path would mean
    the current folder or a default; an empty label names nothing)."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"an empty {what}")
        return text
    return parse


path_text = nonempty("path")


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
            most = f"{maximum:g}" if kind is float else str(maximum)
            raise argparse.ArgumentTypeError(f"must be at most {most}, got {text}")
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
    p.add_argument("--out", metavar="DIR", type=path_text,
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
    p.add_argument("--resume", metavar="RUN_DIR", type=path_text,
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


class ShowVersion(argparse.Action):
    """--version: attnbench's version, read only when asked (it costs a metadata lookup)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        import attnbench

        print(f"attnbench {attnbench.__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="attnbench", description="Benchmark and compare attention backends.")
    parser.add_argument("--version", action=ShowVersion)
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
    p.add_argument("--junit-xml", metavar="FILE", type=path_text,
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
    p.add_argument("runs", nargs="+", metavar="RUN", type=path_text,
                   help="run folder(s); several: side by side")
    p.add_argument("-o", "--out", metavar="DIR", type=path_text,
                   help="output folder (default the first RUN)")
    p.add_argument("--baseline", default=None, metavar="BACKEND",
                   help="backend the speedups are relative to (default torch-naive)")
    p = sub.add_parser("compare", help="compare two runs case by case; exit 1 on a regression")
    p.add_argument("base", metavar="BASE", type=path_text, help="the reference run folder")
    p.add_argument("new", metavar="NEW", type=path_text, help="the run folder to judge")
    p.add_argument("--threshold", type=number(float, 0, MAX_THRESHOLD), default=None,
                   metavar="FRACTION", help="slowdown that counts, as a fraction of the base "
                   f"median, at most {MAX_THRESHOLD:g} (default 0.10 on cpu, 0.05 on cuda)")
    p.add_argument("--min-abs", type=number(float, 0, MAX_MIN_ABS_MS), default=None,
                   metavar="MS", help="smallest absolute change in ms that counts, at most "
                   f"{MAX_MIN_ABS_MS:g} (default 0.05 on cpu, 0.01 on cuda)")
    p.add_argument("--all", action="store_true", help="list every case, not only changed ones")
    p.add_argument("--format", choices=["table", "markdown"], default="table",
                   help="table (terminal) or markdown (a PR comment, on stdout; notes and "
                        "warnings stay on stderr)")
    p.add_argument("--strict", action="store_true",
                   help="gate timing regressions even when either run was made on a busy "
                        "machine (by default they are listed as unreliable, not gated)")
    p.add_argument("--allow-missing", action="store_true",
                   help="pass although the new run lacks cases or backends of the base run or "
                        "did not finish (by default that lost coverage fails, exit 1)")
    add_recommend_parser(sub)
    add_history_parser(sub)


def add_history_parser(sub: Any) -> None:
    p = sub.add_parser("history", help="store runs in a history database; find the steps in "
                       "each case's timings over the runs")
    hist = p.add_subparsers(dest="history_command", required=True, parser_class=Parser)
    db = {"metavar": "PATH|URL", "help": "the history database: a SQLite file (default "
          "results/history.sqlite) or an SQLAlchemy URL"}
    a = hist.add_parser("add", help="store runs' timed records (in the order given)")
    a.add_argument("runs", nargs="+", metavar="RUN", type=path_text, help="run folder(s)")
    a.add_argument("--label", type=nonempty("label"),
                   help="the run's label, e.g. a commit (default its run id; one RUN only)")
    a.add_argument("--db", **db)
    for name, what in (("show", "each series and the steps found (PELT on log medians, the "
                        "penalty from each series' own noise)"),
                       ("bisect", "the first label where a step was found")):
        s = hist.add_parser(name, help=what)
        s.add_argument("--db", **db)
        s.add_argument("--backend", dest="only_backend", metavar="B", help="only this backend")
        s.add_argument("--case", dest="only_case", metavar="C", help="only this case id")
        s.add_argument("--raw", action="store_true", help="do not divide out the machine's "
                       "run-to-run drift (by default each run's shared factor is)")
        s.add_argument("--penalty", type=number(float, 1, 100), default=None, metavar="F",
                       help="PELT's penalty per step, in units of σ² ln(runs × series) "
                            "(default 10; lower finds smaller steps and more false ones)")
        if name == "show":
            s.add_argument("-o", "--out", metavar="DIR", help="write a plot per series with "
                           "a step (every series with --all) under DIR")
            s.add_argument("--all", action="store_true", help="plot every series")
    e = hist.add_parser("export", help="a run's timings for Bencher (BMF JSON) or asv (a "
                        "results folder)")
    e.add_argument("run", metavar="RUN", type=path_text, help="run folder")
    e.add_argument("--format", choices=["bencher", "asv"], default="bencher")
    e.add_argument("--label", type=nonempty("label"),
                   help="asv: the commit the results belong to (default the run's git commit)")
    e.add_argument("-o", "--out", metavar="FILE|DIR", help="bencher: write to FILE (default "
                   "stdout); asv: the results folder to write or add to")


def add_recommend_parser(sub: Any) -> None:
    p = sub.add_parser("recommend", help="per device, dtype, variant and shape bucket: the "
                       "fastest backend that agrees with the oracle, margins and crossovers")
    p.add_argument("runs", nargs="+", metavar="RUN", type=path_text,
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
