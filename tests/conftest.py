"""Shared fixtures (registry, plugin paths, CLI runner, tiny real runs) and the `process` marker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from attnbench.plugin.registry import AUTOLOAD_OFF_ENV

# The one place the tests turn entry-point plugins off: every process they start inherits it,
# so an installed third-party plugin cannot change what the suite sees.
os.environ[AUTOLOAD_OFF_ENV] = "1"
# Runs made by the tests neither read nor raise the user's best-known roofs; the tests of the
# cache point ATTNBENCH_ROOF_CACHE at a file of their own.
os.environ["ATTNBENCH_ROOF_CACHE"] = "off"
ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "plugins"
# Marked `process` automatically: tests using a fixture that starts processes, and tests of a
# backend whose first call runs torch.compile (inductor compiles in a pool of worker processes).
PROCESS_FIXTURES = frozenset({"cli", "real_run"})
COMPILING = ("flex-attention", "flex_attention")

TINY = """name = "tiny"
description = "small cases for the report tests"
[base]
batch = 1
heads = 2
head_dim = 16
[sweep]
mask = ["none", "causal"]
seq_len = [16, 32, 64]
"""
# Two tiny cases (seq_len 16 and 32): the scenario of the CLI tests that only need a run.
TWO_CASES = """name = "tiny"
[base]
batch = 1
heads = 2
head_dim = 16
[sweep]
seq_len = [16, 32]
"""
# The same scenario name with two of its cases: comparable with the base run, and quicker.
SMALL = TINY.replace('mask = ["none", "causal"]', 'mask = ["none"]').replace("16, 32, 64", "32, 64")
RUNS = {  # name -> (verb, scenario text, backends, environment, expected exit code)
    "base": ("run", TINY, ["numpy-naive", "slow-copy", "test-markup"], {}, 0),
    "slow": ("run", SMALL, ["slow-copy"], {"ATTNBENCH_TEST_SLEEP_MS": "3"}, 0),
    "wrong": ("check", SMALL, ["numpy-naive", "slow-copy"], {"ATTNBENCH_TEST_WRONG": "1"}, 1),
}


# The test files that take longest (`--durations`, make test's parallel pass, this 2-core VM),
# longest first. The Makefile keeps pytest-xdist from reordering files (--no-loadscope-reorder),
# so these start first and the many short tests fill the gaps at the end, rather than a
# three-minute file starting last (longest-first scheduling).
LONGEST_FIRST = ("e2e/test_gpu_session.py", "e2e/test_integrity.py", "e2e/test_damaged_runs.py",
                 "e2e/test_cli.py", "plugin/test_plugins.py", "run/test_resume.py",
                 "verify/test_bound.py", "e2e/test_verdicts.py", "e2e/test_setup.py")


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0].removeprefix("tests/")


def _start_order(items: list[pytest.Item]) -> dict[str, tuple[int, int]]:
    """Where each test file starts: the longest ones in order, then files starting processes,
    then the rest (in collection order within each)."""
    rank: dict[str, tuple[int, int]] = {}
    for item in items:
        path = _file(item)
        mine = ((0, LONGEST_FIRST.index(path)) if path in LONGEST_FIRST
                else (1 if item.get_closest_marker("process") else 2, 0))
        rank[path] = min(rank.get(path, mine), mine)
    return rank


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses = PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses or any(name in item.nodeid for name in COMPILING):
            item.add_marker(pytest.mark.process)
    rank = _start_order(items)
    items.sort(key=lambda item: rank[_file(item)])  # stable: a file's tests keep their order


def _program(executable: object, argv: object) -> str:
    """The program a subprocess.Popen audit event starts."""
    if executable:
        return os.fsdecode(executable)  # type: ignore[arg-type]
    if isinstance(argv, (str, bytes, os.PathLike)):
        return (os.fsdecode(argv).split() or [""])[0]
    return os.fsdecode(argv[0]) if argv else ""  # type: ignore[index]


def _is_python(program: str) -> bool:
    resolved = shutil.which(program) or program
    return (os.path.basename(program).startswith("python")
            or os.path.realpath(resolved) == os.path.realpath(sys.executable))


class ProcessGuard:
    """Notes each Python interpreter (the CLI, a worker) started while an unmarked test runs."""

    def __init__(self) -> None:
        self.watching = False
        self.started: list[str] = []

    def audit(self, event: str, args: tuple) -> None:
        if self.watching and event == "subprocess.Popen":
            program = _program(args[0], args[1])
            if _is_python(program):
                self.started.append(program)


GUARD = ProcessGuard()
sys.addaudithook(GUARD.audit)  # audit hooks cannot be removed: GUARD.watching switches it


def _guarded(item: pytest.Item) -> Iterator[None]:
    """One test phase: fail it if it started a Python process without the `process` mark."""
    GUARD.watching, GUARD.started = item.get_closest_marker("process") is None, []
    try:
        yield
    finally:
        GUARD.watching = False
    if GUARD.started:
        pytest.fail(f"{item.nodeid} started {len(GUARD.started)} Python process(es) "
                    f"({GUARD.started[0]}) but is not marked: add @pytest.mark.process "
                    "(or a module-level pytestmark)", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _guarded(item))


@pytest.fixture(scope="session")
def registry():
    from attnbench.plugin.registry import build_registry

    return build_registry(autoload=False)


@pytest.fixture(scope="session")
def plugin_path() -> Callable[[str], str]:
    """The path of a test plugin in tests/plugins/ by file name."""
    return lambda name: str(PLUGINS / name)


def on_cpu(args: tuple[str, ...]) -> tuple[str, ...]:
    """`run` and `check` pinned to the CPU unless the test names a device or resumes a run.

    The default `--device auto` picks CUDA on a GPU box, where the CPU-only test backends are
    unsupported: a test that means `auto` says `--device auto`.
    """
    named = any(a in ("--device", "--resume") or a.startswith(("--device=", "--resume="))
                for a in args)
    if args and args[0] in ("run", "check") and not named:
        return (args[0], "--device", "cpu", *args[1:])
    return args


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run `python -m attnbench ARGS` in a fresh process (autoload off: see the top; `run` and
    `check` on the CPU unless ARGS name a device: see on_cpu)."""
    return subprocess.run(
        [sys.executable, "-m", "attnbench", *on_cpu(args)], cwd=cwd,
        env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """run_cli with the working folder set to a fresh temporary folder."""
    return lambda *args, **kw: run_cli(*args, cwd=kw.pop("cwd", tmp_path), **kw)


def build_run(name: str, folder: Path) -> Path:
    """Run the named tiny sweep of RUNS through the real CLI into folder/name.

    The check run also writes <folder>/wrong/junit.xml through check --junit-xml.
    """
    verb, text, backends, env, code = RUNS[name]
    out, scenario = folder / name, folder / f"{name}.toml"
    scenario.write_text(text)
    args = [verb, "-s", str(scenario), "--budget", "0.05", "--out", str(out),
            "--plugin", str(PLUGINS / "slow_copy.py"), "--plugin", str(PLUGINS / "markup.py")]
    if verb == "check":
        args += ["--junit-xml", str(out / "junit.xml")]
    for b in backends:
        args += ["-b", b]
    proc = run_cli(*args, cwd=ROOT, env=env, timeout=240)
    assert proc.returncode == code, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """real_run(name) -> the folder of a tiny real run ("base", "slow", "wrong"), built once
    per `pytest` call: the pytest-xdist workers share it (the first to ask builds it under a
    lock, the others wait and read it).

    Treat the folder as read-only: copy it to change it.
    """
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's base is a folder of the session's own (popen-gwN): its parent
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-runs"
    folder.mkdir(exist_ok=True)

    def get(name: str) -> Path:
        import fcntl

        with open(folder / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (folder / f"{name}.built").is_file():
                shutil.rmtree(folder / name, ignore_errors=True)  # a build that failed part-way
                build_run(name, folder)
                (folder / f"{name}.built").touch()
        return folder / name

    return get


@pytest.fixture(scope="session")
def chromium() -> str:
    """A headless-capable Chromium; missing, it fails the test in CI (CI=true), else skips it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        why = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{why}; CI must render the HTML report, not skip it", pytrace=False)
        pytest.skip(why)
    return path
