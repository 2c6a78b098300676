"""attnbench: benchmark and compare attention implementations, honestly."""

from typing import Any

from attnbench.case import Case
from attnbench.plugin.backend import Backend, Unsupported
from attnbench.plugin.capabilities import Capabilities
from attnbench.plugin.hookspecs import hookimpl
from attnbench.plugin.inputs import Inputs
from attnbench.results import load
from attnbench.scenario import Scenario


def __getattr__(name: str) -> Any:
    """attnbench.__version__, read when asked (importing importlib.metadata would cost every
    process that imports attnbench, workers included, tens of milliseconds)."""
    if name != "__version__":
        raise AttributeError(f"module 'attnbench' has no attribute {name!r}")
    import importlib.metadata

    try:
        return importlib.metadata.version("attnbench")  # the installed one's: pyproject.toml
    except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


__all__ = [
    "Backend", "Capabilities", "Case", "Inputs", "Scenario", "Unsupported", "hookimpl", "load",
]
