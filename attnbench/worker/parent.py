"""Parent side of a worker: start it, send a task, read its reply, kill it and its children."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 120.0  # importing torch and plugins on a cold disk can take a while
LOG_TAIL_BYTES = 2000


class WorkerDied(Exception):
    """The worker exited (crash, abort, os._exit) or was killed; `reason` says how."""

    def __init__(self, reason: str, log_tail: str = ""):
        super().__init__(reason)
        self.reason, self.log_tail = reason, log_tail


class WorkerTimeout(Exception):
    """A reply did not come within the time limit; the worker has been killed."""


def exit_reason(returncode: int | None) -> str:
    """How a process ended, in words: 'killed by SIGSEGV' or 'exited with code 3'."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        note = " (possibly the kernel's out-of-memory killer)" if name == "SIGKILL" else ""
        return f"killed by {name}{note}"
    return f"exited with code {returncode}"


@dataclass
class Reply:
    """A worker's answer to one task, with the parent-side round-trip time."""

    data: dict[str, Any]
    roundtrip_s: float


class WorkerProcess:
    """Parent-side handle of one worker: start, send a task, wait for the reply, kill."""

    def __init__(self, hello: dict[str, Any], log_path: Path):
        self.hello, self.log_path = hello, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.start_s = 0.0
        self._buf = b""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> dict[str, Any]:
        """Start the process and wait for its ready line; return it."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "attnbench.worker.child"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        self._buf = b""
        self.info = self.request(self.hello, START_TIMEOUT_S).data
        self.start_s = time.perf_counter() - t0
        return self.info

    def request(self, message: dict[str, Any], timeout_s: float) -> Reply:
        """Send one message and wait for one reply line; WorkerDied / WorkerTimeout otherwise."""
        assert self.proc is not None and self.proc.stdin is not None
        log_start = self._log_size()
        t0 = time.perf_counter()
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died(log_start) from None
        line = self._read_line(t0 + timeout_s, log_start, timeout_s)
        return Reply(json.loads(line), time.perf_counter() - t0)

    def _read_line(self, deadline: float, log_start: int, timeout_s: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.perf_counter()
            if left <= 0:
                self.kill()
                raise WorkerTimeout(f"no reply within {timeout_s:g} s; worker killed")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise self._died(log_start)
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _died(self, log_start: int) -> WorkerDied:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.returncode
        return WorkerDied(exit_reason(rc), self._log_tail(log_start))

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _log_tail(self, start: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(start, self._log_size() - LOG_TAIL_BYTES))
                return fh.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the worker (its whole session) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()

    def stop(self) -> None:
        """Ask the worker to quit (closing its stdin); kill it if it does not."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        self.proc = None
