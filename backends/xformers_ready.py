"""Importing this module readies an installed xformers (libcudart.so.12 preloaded, xformers.ops
imported) or raises ImportError saying, on one line, why it cannot run: the xformers backend
`requires` it, so `attnbench list` and every record give that reason. Without xformers it
imports: the next requirement, `xformers`, says so. First in `requires`: it must run before
anything imports xformers (whose _C.so is tried once, at its import)."""

from __future__ import annotations

import importlib.util
import sys

from attnbench.backends.xformers_load import xformers_failure


def installed() -> bool:
    """True when xformers is imported or importable (its import itself is not tried here)."""
    if sys.modules.get("xformers") is not None:
        return True
    try:
        return importlib.util.find_spec("xformers") is not None
    except (ImportError, ValueError):
        return False


if installed():
    _failure = xformers_failure()
    if _failure:
        raise ImportError(_failure)
