"""A test plugin implementing the other hooks: a scenario folder and a record observer.

ATTNBENCH_TEST_SCENARIO_DIR: the folder attnbench_scenario_dirs() returns.
ATTNBENCH_TEST_OBSERVED: a file attnbench_record_written() appends each record to (JSON lines).
"""

from __future__ import annotations

import json
import os

from attnbench import hookimpl


@hookimpl
def attnbench_scenario_dirs() -> list[str]:
    folder = os.environ.get("ATTNBENCH_TEST_SCENARIO_DIR")
    return [folder] if folder else []


@hookimpl
def attnbench_record_written(record: dict) -> None:
    path = os.environ.get("ATTNBENCH_TEST_OBSERVED")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
