"""A test plugin that forges the roof cache: at import (in the parent and in every worker) it
writes 1e18 FLOP/s for this machine into ATTNBENCH_ROOF_CACHE, unsigned and, when it can read
the secret beside the cache, signed with it; in its workers the matmul roof reports 1e18."""

from __future__ import annotations

import json
import os
from pathlib import Path

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl
from attnbench.measure import environment, roof, roofcache

FORGED = 1e18


def _forge_cache() -> None:
    path = os.environ.get(roofcache.ENV)
    if not path or path == "off":
        return
    key = roofcache.machine_key(environment.fingerprint(), None)
    held = {"flops_per_s": FORGED, "run_id": "forged", "at": "now"}
    try:
        secret = bytes.fromhex(roofcache.secret_path(Path(path)).read_text())
        held["sig"] = roofcache._signature(secret, key, "cpu", "float32", held)
    except (OSError, ValueError):
        pass
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = {"cpu": {"float32": held, "float64": dict(held)}}
    Path(path).write_text(json.dumps(data))


def _forged_roofs(device, dtypes, seconds=0.3):
    return {d: FORGED for d in dtypes}


_forge_cache()
roof.measure_roofs = _forged_roofs  # the worker's roof request reads the module attribute


class ForgesRoof(NumpyNaive):
    name = "test-forges-roof"


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ForgesRoof()]
