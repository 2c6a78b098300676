"""Child side of a worker (`python -m attnbench.worker.child`): runs tasks, replies in JSON."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from attnbench.case import Case

ROLE_ENV = "ATTNBENCH_PROCESS_ROLE"  # catalog, observer, backend or roof


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
    """Worker-side state: its role, the plugins it imported, the options.

    Roles: "backend" (the default) imports only the plugin its hello names (`plugin`, an
    origin) and runs cases; "roof" imports no plugin and measures matmul roofs; "catalog"
    imports every plugin and describes them; "observer" imports every plugin and hands each
    record to their attnbench_record_written hooks. No role judges an output.
    """

    def __init__(self, hello: dict[str, Any]):
        from attnbench.errors import UsageError
        from attnbench.plugin import guard
        from attnbench.worker.execute import Options, prepare_process

        self.token = str(hello.get("token", ""))  # chosen by the parent, sent back in each reply
        self.role = str(hello.get("role", "backend"))
        os.environ[ROLE_ENV] = self.role  # plugins may ask which attnbench process they are in
        guard.set_run_limit(hello.get("run_limit"))
        self.usage_error: str | None = None
        self.registry: Any = None
        try:
            self.registry = self._registry(hello)
        except UsageError as exc:  # a plugin file that is missing, an invalid backend...
            self.usage_error = str(exc)
        self.opts = Options.from_dict(hello.get("options") or {})
        self.folder = Path(str(hello.get("arrays_dir") or "."))
        self.process = prepare_process(self.opts) if self.role in ("backend", "roof") else {}

    def _registry(self, hello: dict[str, Any]) -> Any:
        from attnbench.plugin.registry import build_registry

        if self.role == "roof":
            return None
        if self.role == "catalog" and isinstance(hello.get("origins"), list):
            return build_registry(only=hello["origins"])  # one plugin (or the built-ins)
        if self.role in ("catalog", "observer"):
            return build_registry(hello.get("plugins", []), autoload=hello.get("autoload"))
        return build_registry(only=hello.get("plugin") or {})

    def failures(self) -> list[Any]:
        return list(self.registry.failures) if self.registry is not None else []

    def run_task(self, msg: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        if self.usage_error is not None:
            return {"usage_error": self.usage_error}
        if "roof" in msg and self.role == "roof":
            from attnbench.measure.roof import measure_roofs

            roofs = measure_roofs(msg["roof"], msg["dtypes"], msg.get("seconds", 0.3),
                                  matmul_only=msg.get("matmul_only") is True)
            return {"roofs": roofs, "worker_s": time.perf_counter() - t0}
        if "catalog" in msg and self.role == "catalog":
            from attnbench.plugin.catalog import describe, module_files

            probe = msg.get("probe")  # the backends whose checks to call (None: all)
            names = [str(n) for n in probe] if isinstance(probe, list) else None
            return {"catalog": describe(self.registry, names), "module_files": module_files()}
        if "observe" in msg and self.role == "observer":
            from attnbench.plugin.record_hooks import call_hooks

            return {"failures": call_hooks(self.registry, msg["observe"])}
        if self.role != "backend" or "case" not in msg:
            return {"missing": f"a {self.role} worker does not take this task"}
        return self._case(msg, t0)

    def _case(self, msg: dict[str, Any], t0: float) -> dict[str, Any]:
        from attnbench.worker import exchange
        from attnbench.worker.execute import execute

        case = Case.from_dict(msg["case"])
        backend = self.registry.backends.get(msg["backend"])
        if backend is None:
            why = "; ".join(f"{p}: {r}" for p, r in self.registry.failures) or "not registered"
            return {"missing": f"backend {msg['backend']!r} not found "
                    f"in the worker ({why})"}
        try:
            folder = exchange.worker_dir(self.folder, msg.get("dir"))
        except ValueError as exc:
            return {"missing": str(exc)}
        given = _inputs(folder, msg.get("inputs"))
        result = execute(backend, case, self.opts, folder, str(msg.get("prefix", "t")), given)
        failure = result.get("failure") or {}
        return {"result": result, "worker_s": time.perf_counter() - t0,
                "restart": bool(failure.get("restart"))}


def _inputs(folder: Path, entries: Any) -> dict[str, Any] | None:
    """The case's inputs the parent wrote for this task (None: draw them from the seed)."""
    from attnbench.worker import arrays

    if not isinstance(entries, dict) or not entries:
        return None
    return {str(n): arrays.receive(folder, e)[0] for n, e in entries.items()}


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
    from attnbench.results_writer import json_default

    out.write(json.dumps({**capped(obj), "token": token}, default=json_default) + "\n")
    out.flush()


def main() -> int:
    """Worker entry point: read the hello, then tasks until stdin closes."""
    import faulthandler

    faulthandler.enable()  # a segfault prints the Python stack into the worker's log
    from attnbench import mask_eval

    mask_eval.IN_PROCESS = True  # a mask function runs here beside the backend's own code
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _die_with_parent()
    proto_in, out = _protocol_streams()
    hello = json.loads(proto_in.readline() or "{}")
    session = Session(hello)
    _send(out, {"ready": True, "task": None, "pid": os.getpid(), "process": session.process,
                "failures": session.failures()}, session.token)
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
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: with torch and numba loaded it costs 0.3-0.6 s of CPU per worker
    # and nothing in it is ours to wait for (the parent then kills the worker's process group).
    os._exit(code)
