"""A worker's process group: signalled, killed with whatever it started, and how it ended."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


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


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group the worker leads (start_new_session); gone already is fine."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if proc.poll() is None:
            proc.kill()


def signal_group(pid: int, sig: int) -> None:
    """Send sig to the process group pid leads; a group gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
