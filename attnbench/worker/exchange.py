"""The run's exchange folders, where workers and the parent pass arrays: one per run (in
/dev/shm when it has room), a new folder of an unguessable name per task, removed after it;
folders a killed run left behind are removed by the next run."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

TASK_DIR = re.compile(r"^[0-9a-f]{32}$")
OWNED = re.compile(r"^attnbench-arrays-(\d{1,10})-")  # made by the process of that pid
STALE_S = 3600.0  # a folder left by a dead process is removed once untouched this long


def exchange_dir() -> Path:
    """A new private folder for one run's arrays: in /dev/shm (memory) when it has room. Its
    name holds the pid of the process that made it; those of dead processes are removed."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    remove_stale(Path(base or tempfile.gettempdir()))
    return Path(tempfile.mkdtemp(prefix=f"attnbench-arrays-{os.getpid()}-", dir=base))


def remove_stale(base: Path, idle_s: float = STALE_S) -> list[str]:
    """Delete this user's exchange folders in base that a killed run left (SIGKILL, the OOM
    killer): its process gone and the folder untouched for idle_s (a live run makes a task
    folder in it every task; the age also spares runs of another PID namespace sharing
    /dev/shm). The names removed."""
    import time

    removed = []
    for entry in _entries(base):
        m = OWNED.match(entry.name)
        try:
            st = entry.lstat()
        except OSError:
            continue
        if not m or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() \
                or time.time() - st.st_mtime < idle_s or _alive(int(m[1])):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed


def _entries(base: Path) -> list[Path]:
    try:
        return [p for p in base.iterdir() if p.name.startswith("attnbench-arrays-")]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's, or no such pid number
        return True
    return True


def task_dir(folder: Path) -> Path:
    """A new folder for one task's arrays, under an unguessable name (created by the parent
    just before the task is sent: no other worker can prepare a file or link in it). Where the
    run's exchange folder is no longer a folder (a plugin moved it, or put a file or link in
    its place), it is made again first, empty, at the same path."""
    import secrets

    if not stat.S_ISDIR(_lstat_mode(folder)):
        if folder.is_symlink() or folder.exists():
            folder.unlink()
        folder.mkdir(mode=0o700)
    path = folder / secrets.token_hex(16)
    path.mkdir(mode=0o700)
    return path


def _lstat_mode(path: Path) -> int:
    """The mode of path itself (a link not followed), 0 when there is nothing there."""
    try:
        return path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # or a folder above it is now a file
        return 0


def worker_dir(folder: Path, name: Any) -> Path:
    """The task folder a task names (worker side); ValueError for anything but such a name."""
    if not isinstance(name, str) or not TASK_DIR.match(name):
        raise ValueError(f"not a task folder name: {name!r}")
    return folder / name


def remove_dir(path: Path | None) -> None:
    """Delete an exchange folder and whatever a worker left in it (or a file or link a plugin
    put in its place)."""
    if path is None:
        return
    mode = _lstat_mode(path)
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=True)
    elif mode:
        with contextlib.suppress(OSError):
            path.unlink()
