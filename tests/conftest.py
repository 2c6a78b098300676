"""Shared fixtures: a registry of the built-in backends and paths to the test plugins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(scope="session")
def registry():
    from attnbench.plugins import build_registry

    return build_registry(autoload=False)


@pytest.fixture
def plugin_path():
    return lambda name: str(PLUGINS / name)
