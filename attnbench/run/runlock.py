"""The run folder's lock: one run (or --resume) writes a folder at a time; a second is told who."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from attnbench.errors import UsageError

LOCK_NAME = "run.lock"


class RunLock:
    """An exclusive, non-blocking flock on `<folder>/run.lock`, held for the whole run.

    The file keeps the holder's pid, host and command line, so the run refused can name it.
    The file is never deleted (a deleted lock file lets two runs lock two different files).
    """

    def __init__(self, folder: Path, command: str | None = None):
        self.path = Path(folder) / LOCK_NAME
        self.command = command or " ".join(sys.argv)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UsageError(f"{self.path.parent} is being written by another attnbench run "
                             f"({holder}); wait for it to end or choose another --out") from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
              "since": datetime.now(timezone.utc).isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the file."""
    try:
        info = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid is not written yet"
