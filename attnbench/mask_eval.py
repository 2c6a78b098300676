"""Mask functions evaluated in a child process: the process that makes verdicts never imports one.

A mask function is code a scenario names, and a plugin can ship scenarios: imported where the
oracle and the verdicts run, its module could rewrite them. So attnbench asks a child process
(`python -m attnbench.mask_eval JOBS`) for each case's whole visibility, packed 8 keys a byte,
and reads rows from that table; a function that raises, hangs past EVAL_TIMEOUT_S or returns
something else than booleans is a MaskModError (one line, exit 2). The worker, which runs the
backend's own code anyway, evaluates it in place (IN_PROCESS).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from attnbench.mask_mod import Case, MaskModError, evaluate_here, row_chunks

IN_PROCESS = False  # set in the worker: there the function runs where the backend does
EVAL_TIMEOUT_S = 300.0  # per child process; ATTNBENCH_MASK_TIMEOUT overrides it
MAX_PAIRS = 2**34  # per table (2 GiB packed): larger is refused
CHECK_ALL = 2**26  # a case up to this many pairs is evaluated whole when its scenario is read
CHECK_ROWS = 64  # else its first and last rows, of its first and last batch elements
KEPT_BYTES = 2**32  # tables kept in memory, at most (the newest is always kept)
_TABLES: OrderedDict[tuple[str, int, int, int], np.ndarray] = OrderedDict()


def key(case: Case) -> tuple[str, int, int, int]:
    return (str(case.mask_mod), case.batch, case.seq_q, case.seq_kv)


def evaluate(case: Case, b: int, rows: np.ndarray) -> np.ndarray:
    """Boolean (len(rows), seq_kv): the mask function on batch element b's rows."""
    if IN_PROCESS:
        return evaluate_here(str(case.mask_mod), b, rows, case.seq_kv)
    table = table_of(case)
    return np.unpackbits(table[b, np.asarray(rows)], axis=-1, count=case.seq_kv).astype(bool)


def table_of(case: Case) -> np.ndarray:
    """The case's packed visibility under its function, (batch, seq_q, ⌈seq_kv/8⌉) uint8."""
    k = key(case)
    if k not in _TABLES:
        if case.batch * case.seq_q * case.seq_kv > MAX_PAIRS:
            raise MaskModError(f"mask_mod {case.mask_mod!r}: {case.batch}×{case.seq_q}×"
                               f"{case.seq_kv} pairs is more than a mask table holds "
                               f"({MAX_PAIRS})")
        _run([_job(case, full=True)])
    _TABLES.move_to_end(k)
    return _TABLES[k]


def check_cases(cases: Iterable[Case]) -> str | None:
    """Why the mask functions of these cases cannot serve them, or None: one child process
    evaluates each small case whole (its table is kept) and each large one on its first and
    last rows."""
    jobs, seen = [], set()
    for case in cases:
        if case.mask_mod is None or key(case) in seen or key(case) in _TABLES:
            continue
        seen.add(key(case))
        jobs.append(_job(case, full=case.batch * case.seq_q * case.seq_kv <= CHECK_ALL))
    try:
        _run(jobs)
    except MaskModError as e:
        return f"key 'mask_mod': {e}"
    return None


def timeout_s() -> float:
    """The child process's time limit: ATTNBENCH_MASK_TIMEOUT seconds, else EVAL_TIMEOUT_S."""
    text = os.environ.get("ATTNBENCH_MASK_TIMEOUT")
    if text is None:
        return EVAL_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise MaskModError(f"ATTNBENCH_MASK_TIMEOUT must be a positive number of seconds, "
                           f"got {text!r}")
    return value


def _job(case: Case, full: bool) -> dict[str, Any]:
    job: dict[str, Any] = {"ref": case.mask_mod, "batch": case.batch, "seq_q": case.seq_q,
                           "seq_kv": case.seq_kv, "full": full}
    if not full:
        n = min(case.seq_q, CHECK_ROWS)
        job["rows"] = sorted({*range(n), *range(case.seq_q - n, case.seq_q)})
        job["batches"] = sorted({0, case.batch - 1})
    return job


def _run(jobs: list[dict[str, Any]]) -> None:
    """Evaluate jobs in one child process; full tables join _TABLES."""
    if not jobs:
        return
    with tempfile.TemporaryDirectory(prefix="attnbench-mask-") as folder:
        for i, job in enumerate(jobs):
            job["out"] = str(Path(folder) / f"{i}.npy")
        spec = Path(folder) / "jobs.json"
        spec.write_text(json.dumps(jobs))
        limit = timeout_s()
        # a session of its own: on timeout its whole group goes, processes it started too
        proc = subprocess.Popen([sys.executable, "-m", "attnbench.mask_eval", str(spec)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise MaskModError(f"mask_mod {jobs[0]['ref']!r}: evaluating it took more than "
                               f"{limit:g} s (ATTNBENCH_MASK_TIMEOUT)") from None
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C): leave nothing behind
                _kill_group(proc)
        if proc.returncode != 0:
            lines = (stderr or stdout or "").strip().splitlines()
            said = lines[-1] if lines else f"the child process exited {proc.returncode}"
            raise MaskModError(said.removeprefix("MaskModError: "))
        for job in jobs:
            if job["full"]:
                _TABLES[(job["ref"], job["batch"], job["seq_q"], job["seq_kv"])] = np.load(
                    job["out"])
                while len(_TABLES) > 1 and sum(t.nbytes for t in _TABLES.values()) > KEPT_BYTES:
                    _TABLES.popitem(last=False)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the child's process group and reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class _Shape:
    """The sizes row_chunks reads, for a job (the child has no Case)."""

    def __init__(self, job: dict[str, Any]):
        self.batch, self.seq_q, self.seq_kv = job["batch"], job["seq_q"], job["seq_kv"]
        self.mask_mod = job["ref"]


def _evaluate_job(job: dict[str, Any]) -> None:
    """In the child: the job's rows (all of them when full, saved packed to job['out'])."""
    ref, seq_kv = job["ref"], job["seq_kv"]
    if not job["full"]:
        rows = np.asarray(job["rows"], dtype=np.int64)
        for b in job["batches"]:
            evaluate_here(ref, b, rows, seq_kv)
        return
    shape = _Shape(job)
    table = np.empty((job["batch"], job["seq_q"], -(-seq_kv // 8)), dtype=np.uint8)
    for b in range(job["batch"]):
        for rows in row_chunks(shape):
            table[b, rows] = np.packbits(evaluate_here(ref, b, rows, seq_kv), axis=-1)
    np.save(job["out"], table)


def main(argv: list[str]) -> int:
    """The child: evaluate every job of the JSON file argv[0]; a failure is one line."""
    try:
        for job in json.loads(Path(argv[0]).read_text()):
            _evaluate_job(job)
    except MaskModError as e:
        print(e, file=sys.stderr)
        return 3
    except Exception as e:  # noqa: BLE001 (the user's module may raise anything)
        print(f"mask_mod: {type(e).__name__}: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a child process
    sys.exit(main(sys.argv[1:]))
