"""Child side of a worker (`python -m attnbench.worker.child`): runs tasks, replies in JSON."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import IO, Any

from attnbench.case import Case
from attnbench.record import Status


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so a hung worker never outlives a killed run."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _protocol_streams() -> tuple[IO[str], IO[str]]:
    """Move the protocol to private fds that no subprocess inherits (os.dup is non-inheritable).

    fd 0 then reads /dev/null and fd 1 (and sys.stdout) goes to the log, so a backend, or a
    program it starts, can neither read a task meant for the worker nor print into a reply.
    """
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (lives as long as the worker)
    sys.stdout = sys.stderr
    return proto_in, proto_out


class Session:
    """Worker-side state: the registry, options and the last case's shared data."""

    def __init__(self, hello: dict[str, Any]):
        from attnbench.plugin.registry import build_registry
        from attnbench.run.execute import Options, prepare_process

        self.token = str(hello.get("token", ""))  # chosen by the parent, sent back in each reply
        self.registry = build_registry(hello.get("plugins", []), autoload=hello.get("autoload"))
        self.opts = Options.from_dict(hello["options"])
        self.process = prepare_process(self.opts)
        self._data: tuple[Any, Any] | None = None

    def case_data(self, case: Case) -> Any:
        from attnbench.run.execute import CaseData

        if self._data is None or self._data[0] != case:
            self._data = None  # free the previous case before building the next
            self._data = (case, CaseData(case, self.opts.seed))
        return self._data[1]

    def run_task(self, msg: dict[str, Any]) -> dict[str, Any]:
        from attnbench.run.execute import execute

        t0 = time.perf_counter()
        if "roof" in msg:
            from attnbench.measure.roof import measure_roofs

            return {"roofs": measure_roofs(msg["roof"], msg["dtypes"], msg.get("seconds", 0.3)),
                    "worker_s": time.perf_counter() - t0}
        case = Case.from_dict(msg["case"])
        backend = self.registry.backends.get(msg["backend"])
        if backend is None:
            why = "; ".join(f"{p}: {r}" for p, r in self.registry.failures) or "not registered"
            return {"missing": f"backend {msg['backend']!r} not found "
                    f"in the worker ({why})"}
        rec = execute(backend, msg["scenario"], case, lambda: self.case_data(case), self.opts)
        return {"record": rec, "worker_s": time.perf_counter() - t0,
                "restart": poisons_process(rec)}


# CUDA errors after which the process's CUDA context is unusable: every later case would fail
POISON = ("CUDA error", "illegal memory access", "device-side assert", "CUBLAS_STATUS",
          "cudaError", "CUDNN_STATUS")


def poisons_process(rec: dict[str, Any]) -> bool:
    """True when the record's error leaves the worker unfit for the next case."""
    return rec.get("status") == Status.ERROR and any(s in (rec.get("error") or "") for s in POISON)


def capped(obj: Any) -> Any:
    """obj with every text in it (error, traceback, reasons, agreement notes...) capped."""
    from attnbench.record import cap_text

    if isinstance(obj, str):
        return cap_text(obj)
    if isinstance(obj, dict):
        return {k: capped(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [capped(v) for v in obj]
    return obj


def _send(out: IO[str], obj: dict[str, Any], token: str) -> None:
    from attnbench.results import json_default

    out.write(json.dumps({**capped(obj), "token": token}, default=json_default) + "\n")
    out.flush()


def main() -> int:
    """Worker entry point: read the hello, then tasks until stdin closes."""
    import faulthandler

    faulthandler.enable()  # a segfault prints the Python stack into the worker's log
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _die_with_parent()
    proto_in, out = _protocol_streams()
    hello = json.loads(proto_in.readline() or "{}")
    session = Session(hello)
    _send(out, {"ready": True, "task": None, "pid": os.getpid(), "process": session.process,
                "failures": session.registry.failures}, session.token)
    for line in proto_in:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            reply = session.run_task(msg)
        except Exception as exc:  # a harness bug, not a backend failure: report, keep serving
            reply = {"missing": f"worker failed: {exc!r}"}
        _send(out, {**reply, "task": msg.get("task")}, session.token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
