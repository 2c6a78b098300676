"""A Python file imported as a module under a given name (plugin files, mask function files)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def exec_file(name: str, path: Path) -> ModuleType:
    """Import the file at path as sys.modules[name]; a file that raises leaves no module
    behind. Raises ImportError when path cannot be loaded as Python."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
