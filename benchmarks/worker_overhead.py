"""Cost of isolation: worker start time and the per-task round trip beyond execute() itself."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from attnbench.case import Case
from attnbench.worker.exchange import task_dir
from attnbench.worker.execute import Options
from attnbench.worker.parent import WorkerProcess


def ms(xs: list[float]) -> str:
    """Median and minimum of durations in seconds, as milliseconds."""
    return f"median {statistics.median(xs) * 1e3:.2f} ms, min {min(xs) * 1e3:.2f} ms"


def main(n: int = 50) -> None:
    opts = Options(time_it=False, memory=False)
    hello = {"plugin": {"kind": "builtin", "module": "attnbench.backends.numpy_naive"},
             "options": opts.to_dict(), "arrays_dir": ""}
    case = Case(1, 2, 2, 32, 32, 16)
    with tempfile.TemporaryDirectory() as tmp:
        hello["arrays_dir"] = tmp
        starts = []
        for _ in range(3):
            w = WorkerProcess(hello, Path(tmp) / "w.log")
            w.start()
            starts.append(w.start_s)
            w.stop()
        w = WorkerProcess(hello, Path(tmp) / "w.log")
        w.start()
        over, rt = [], []
        for i in range(n):
            task = {"task": i, "scenario": "bench", "backend": "numpy-naive",
                    "case": case.to_dict(), "prefix": f"t{i}",
                    "dir": task_dir(Path(tmp)).name}
            t0 = time.perf_counter()
            reply = w.request(task, 60)
            rt.append(time.perf_counter() - t0)
            over.append(reply.roundtrip_s - reply.data["worker_s"])
        w.stop()
    print(f"worker start (python -m attnbench.worker.child, registry, prepare_process): "
          f"{ms(starts)} over {len(starts)}")
    print(f"per-task overhead beyond execute() (JSON, pipe, parent): {ms(over)} over {n}")
    print(f"whole round trip of a tiny untimed case: {ms(rt)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
