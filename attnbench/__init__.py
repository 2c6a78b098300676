"""attnbench: benchmark and compare attention implementations, honestly."""

from attnbench.backend import Backend, Capabilities, Inputs, Unsupported
from attnbench.case import Case, Scenario
from attnbench.hookspecs import hookimpl
from attnbench.results import load

__version__ = "0.1.0"
__all__ = [
    "Backend", "Capabilities", "Case", "Inputs", "Scenario", "Unsupported", "hookimpl", "load",
]
