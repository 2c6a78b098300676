"""Parent side of a worker: start it, send a task, check its reply, kill it and its children."""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnbench.measure import ownership
from attnbench.worker.process_group import exit_reason, kill_group, signal_group
from attnbench.worker.protocol import parse_reply, show, write_message
from attnbench.worker.streams import LineReader, LineTooLong, LogSink

START_TIMEOUT_S = 120.0  # importing torch and plugins on a cold disk can take a while
POLL_S = 0.25  # how often a wait checks that the worker is still there
DRAIN_S = 2.0  # after a worker ends, how long its log may take to reach EOF


class WorkerDied(Exception):
    """The worker exited (crash, abort, os._exit) or was killed; `reason` says how."""

    def __init__(self, reason: str, log_tail: str = ""):
        super().__init__(reason)
        self.reason, self.log_tail = reason, log_tail


class ProtocolError(WorkerDied):
    """The worker sent something that is not the reply to the task asked; it has been killed."""


class WorkerTimeout(Exception):
    """A reply did not come within the time limit; the worker has been killed."""

    def __init__(self, message: str, log_tail: str = ""):
        super().__init__(message)
        self.log_tail = log_tail


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
        self.starts = 0  # processes started by this handle (more than one: restarts)
        self._token = ""
        self._task = 0
        self._lines = LineReader()
        self._log: LogSink | None = None
        self._out = self._err = -1  # the worker's stdout (replies) and stderr (log) fds
        self._open: set[int] = set()  # of those, the ones not yet at EOF
        self._killed = False
        self._t0 = 0.0  # when the process was launched

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def started(self) -> bool:
        """A process was started and not yet stopped (it may have exited since)."""
        return self.proc is not None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Start the process and wait for its ready line (at most timeout_s); return it."""
        self.launch()
        return self.ready(timeout_s)

    def launch(self) -> None:
        """Start the process and send its hello, without waiting: workers launched before any
        ready() import torch and their plugins side by side (WorkerDied if it cannot start)."""
        self._t0 = time.perf_counter()
        self._token, self._lines = secrets.token_hex(16), LineReader()
        self.starts += 1
        try:
            self._log = LogSink(self.log_path)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "attnbench.worker.child"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                start_new_session=True)
        except OSError as exc:  # no process, no file descriptors, no disk for the log
            if self._log is not None:
                self._log.close()
            self._log = None
            raise WorkerDied(f"could not be started: {exc}") from None
        ownership.launched(self.proc.pid)
        self._killed = False
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._out, self._err = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        self._open = {self._out, self._err}
        for fd in self._open:
            os.set_blocking(fd, False)
        self._send({**self.hello, "token": self._token})

    def ready(self, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Wait for a launched worker's ready line, at most timeout_s from its launch."""
        limit = min(timeout_s, START_TIMEOUT_S)
        try:
            line = self._read_line(self._t0 + limit, limit)
        except WorkerTimeout as exc:
            raise WorkerTimeout(f"the worker did not start within {limit:g} s (a plugin import "
                                f"that hangs?); worker killed", exc.log_tail) from None
        data = self._check(line, None)
        if data.get("ready") is not True:
            raise self._broken(f"its first line is not the ready line: {show(data)}")
        self.info = data
        self.start_s = time.perf_counter() - self._t0
        return self.info

    def request(self, message: dict[str, Any], timeout_s: float) -> Reply:
        """Send one task and wait for its reply; WorkerDied / ProtocolError / WorkerTimeout."""
        self._task += 1
        t0 = time.perf_counter()
        data = self._exchange({**message, "task": self._task}, timeout_s, self._task)
        return Reply(data, time.perf_counter() - t0)

    def _exchange(self, message: dict[str, Any], timeout_s: float, task: int | None
                  ) -> dict[str, Any]:
        self._send(message)
        line = self._read_line(time.perf_counter() + timeout_s, timeout_s)
        return self._check(line, task)

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None and self._log is not None
        self._log.mark()
        try:
            write_message(self.proc.stdin.fileno(), message)
        except OSError:  # its end of the pipe is closed: it exited, or closed its input
            raise self._died() from None

    def _check(self, line: bytes, task: int | None) -> dict[str, Any]:
        """The reply as a dict, if it is one, with this worker's token and the task's id."""
        data, problem = parse_reply(line, self._token, task)
        if problem is not None:
            raise self._broken(problem)
        return data

    def _read_line(self, deadline: float, timeout_s: float) -> bytes:
        assert self.proc is not None
        while not self._lines.lines:
            left = deadline - time.perf_counter()
            if left <= 0:
                tail = self._tail()
                self.kill()
                raise WorkerTimeout(f"no reply within {timeout_s:g} s; worker killed", tail)
            ready, _, _ = select.select(sorted(self._open), [], [], min(left, POLL_S))
            for fd in ready:
                self._pump(fd)
            if not ready and self.proc.poll() is not None:  # exited; a child holds its pipes
                raise self._died()
        return self._lines.lines.popleft()

    def _pump(self, fd: int) -> None:
        """Read what is there on one of the worker's streams (reply lines or its log)."""
        assert self._log is not None
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        if fd != self._out:
            if chunk:
                self._log.write(chunk)
            else:
                self._open.discard(fd)
            return
        if not chunk:
            raise self._died()
        try:
            self._lines.feed(chunk)
        except LineTooLong as exc:
            raise self._broken(str(exc)) from None

    def _broken(self, reason: str) -> ProtocolError:
        tail = self._tail()
        self.kill()
        return ProtocolError(f"broke the protocol: {reason}", tail)

    def _died(self) -> WorkerDied:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # closed its stdout but runs on
            rc = None
        self.kill()
        return WorkerDied(exit_reason(rc if rc is not None else self.proc.returncode),
                          self._tail())

    def reap(self) -> WorkerDied:
        """For a worker found dead between tasks: how it ended, its children killed."""
        return self._died()

    def _tail(self) -> str:
        return self._log.tail() if self._log is not None else ""

    def _drain(self, seconds: float) -> None:
        """Read the worker's log until EOF (its group is dead) or for at most `seconds`."""
        end = time.perf_counter() + seconds
        while self._err in self._open and time.perf_counter() < end:
            ready, _, _ = select.select([self._err], [], [], max(0.0, end - time.perf_counter()))
            if ready:
                self._pump(self._err)

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (what it started too) and reap it."""
        if self.proc is None or self._killed:
            return
        self._killed = True
        kill_group(self.proc)
        self.proc.wait()
        kill_group(self.proc)  # children of a worker that had already exited
        self._drain(DRAIN_S)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._open.clear()

    def pause(self) -> None:
        """Stop the worker's whole process group (SIGSTOP) until resume(): an idle worker, or
        a thread or program its plugin left running, cannot take CPU from another's case."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused worker's process group run again (SIGCONT)."""
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, sig: int) -> None:
        if self.proc is not None and not self._killed and self.proc.poll() is None:
            signal_group(self.proc.pid, sig)

    def stop(self) -> None:
        """Ask the worker to quit (closing its stdin); kill it and its group if it does not."""
        if self.proc is None:
            return
        self.resume()  # a paused worker could not read the end of its input
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        end = time.perf_counter() + 5
        while self.proc.poll() is None and time.perf_counter() < end:
            self._drain(0.1)
            if not self._open:
                time.sleep(0.01)
        self.kill()
        if self._log is not None:
            self._log.close()
        self.proc, self._log = None, None
