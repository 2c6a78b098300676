"""Shared fixtures: a registry of the built-in backends, test plugin paths, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
ROOT = Path(__file__).resolve().parent.parent
PLUGINS = Path(__file__).resolve().parent / "plugins"
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))


@pytest.fixture(scope="session")
def registry():
    from attnbench.plugins import build_registry

    return build_registry(autoload=False)


@pytest.fixture
def plugin_path():
    return lambda name: str(PLUGINS / name)


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run `python -m attnbench ARGS` in a fresh process; autoload off unless env says else."""
    full_env = {**os.environ, "ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "attnbench", *args], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """run_cli with the working folder set to a fresh temporary folder."""
    return lambda *args, **kw: run_cli(*args, cwd=kw.pop("cwd", tmp_path), **kw)
