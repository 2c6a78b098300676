"""attnbench: benchmark and compare attention implementations, honestly."""

import importlib.metadata

from attnbench.case import Case
from attnbench.plugin.backend import Backend, Unsupported
from attnbench.plugin.capabilities import Capabilities
from attnbench.plugin.hookspecs import hookimpl
from attnbench.plugin.inputs import Inputs
from attnbench.results import load
from attnbench.scenario import Scenario

try:
    __version__ = importlib.metadata.version("attnbench")  # the installed one's: pyproject.toml
except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
__all__ = [
    "Backend", "Capabilities", "Case", "Inputs", "Scenario", "Unsupported", "hookimpl", "load",
]
