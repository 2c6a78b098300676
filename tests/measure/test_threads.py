"""Thread settings: a library not imported yet is not imported by force, yet gets the count."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

LATER = """
import json, sys
from attnbench.measure.threads import set_threads
got = set_threads(1)
before = sorted(m for m in ("torch", "numba") if m in sys.modules)
counts = {}
try:
    import torch
    counts["torch"] = torch.get_num_threads()
except ImportError:
    pass
try:
    import numba
    counts["numba"] = numba.get_num_threads()
except ImportError:
    pass
print(json.dumps({"got": got, "imported_by_set_threads": before, "counts": counts}))
"""


@pytest.mark.process  # a fresh interpreter: torch and numba not imported yet
def test_a_library_imported_after_the_setting_gets_the_count_without_being_imported_by_it():
    proc = subprocess.run([sys.executable, "-c", LATER], capture_output=True, text=True,
                          timeout=120, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    installed = [m for m in ("torch", "numba") if importlib.util.find_spec(m) is not None]
    assert out["imported_by_set_threads"] == []
    assert out["got"]["on_import"] == installed
    assert out["counts"] == {m: 1 for m in installed}  # the count reached them on import
    for m in ("torch", "numba"):
        assert out["got"][m] == (1 if m in installed else None)
