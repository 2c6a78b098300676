"""A test observer that takes a minute over each record (touching $ATTNBENCH_TEST_MARK first)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from attnbench import hookimpl


@hookimpl
def attnbench_record_written(record):
    Path(os.environ["ATTNBENCH_TEST_MARK"]).touch()
    time.sleep(60)
