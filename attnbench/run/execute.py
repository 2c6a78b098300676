"""One (case, backend) in this very process: the worker's side, then the parent's verdict.

For tests and the Python API, where the backend is an object already loaded here. A run never
uses it: there the worker side runs in the backend's own worker process and the verdict in
attnbench's process (run/tasks.py), so that no plugin code runs where verdicts are made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attnbench.case import Case
from attnbench.record import Record
from attnbench.run.outcome import from_result
from attnbench.verify.casedata import CaseData, expected_shape, expected_shapes
from attnbench.verify.judge import judge
from attnbench.worker import arrays, exchange
from attnbench.worker.execute import Options, prepare_process
from attnbench.worker.execute import execute as run_in_worker

__all__ = ["CaseData", "Options", "execute", "expected_shape", "prepare_process"]


def execute(backend: Any, scenario: str, case: Case, get_data: Callable[[], CaseData],
            opts: Options) -> Record:
    """The record of one case on a backend loaded in this process (get_data gives the case's
    verification data; it is asked only when there is an output to verify)."""
    folder = exchange.exchange_dir()
    try:
        result = run_in_worker(backend, case, opts, folder, "t")
        shipped = arrays.receive_all(folder, result.get("arrays"), expected_shapes(case))
    finally:
        exchange.remove_dir(folder)
    agree = None
    if shipped:
        data = get_data()
        if data.check_seed is None:
            data.draw_rows()
        agree = judge(data, backend.framework, shipped)
    return from_result(scenario, case, backend, result, agree)
