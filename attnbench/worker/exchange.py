"""The run's exchange folders, where workers and the parent pass arrays: one per run (in
/dev/shm when it has room), a new folder of an unguessable name per task, removed after it;
folders a killed run left behind are removed by the next run.

A run holds an flock on a file in its folder while it lives: the lock, not the pid in the
folder's name, tells a live run's folder (of any PID namespace on this kernel) from a dead one's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

TASK_DIR = re.compile(r"^[0-9a-f]{32}$")
OWNED = re.compile(r"^attnbench-arrays-(\d{1,10})-")  # made by the process of that pid
STALE_S = 3600.0  # a folder with no lock file (made by an older attnbench): removed this old
LOCK = ".lock"  # the file a live run holds an flock on
_HELD: dict[str, int] = {}  # this process's exchange folders -> the fd of its lock


def exchange_dir() -> Path:
    """A new private folder for one run's arrays: in /dev/shm (memory) when it has room,
    locked while this process lives; the folders of dead runs are removed first."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    remove_stale(Path(base or tempfile.gettempdir()))
    path = Path(tempfile.mkdtemp(prefix=f"attnbench-arrays-{os.getpid()}-", dir=base))
    _hold(path)
    return path


def _hold(path: Path) -> None:
    """Take the folder's lock for as long as this process lives (or until remove_dir)."""
    old = _HELD.pop(str(path), None)
    if old is not None:
        os.close(old)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD[str(path)] = fd


def remove_stale(base: Path, idle_s: float = STALE_S) -> list[str]:
    """Delete this user's exchange folders in base that a killed run left (SIGKILL, the OOM
    killer): the pid in its name is no process here and nobody holds its lock (a live run of
    another PID namespace sharing /dev/shm does); one with no lock file only when untouched
    for idle_s. The names removed."""
    removed = []
    for entry in _entries(base):
        m = OWNED.match(entry.name)
        try:
            st = entry.lstat()
        except OSError:
            continue
        if not m or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() \
                or _alive(int(m[1])):
            continue
        with _claimed(entry, st.st_mtime, idle_s) as free:
            if free:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
    return removed


@contextlib.contextmanager
def _claimed(folder: Path, mtime: float, idle_s: float) -> Any:
    """Yield whether the folder is nobody's: its lock taken here (held while it is removed),
    or, with no lock file, untouched for idle_s."""
    import time

    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        yield time.time() - mtime >= idle_s
        return
    except OSError:  # a link or something else in its place: not ours to judge
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: a live run
        os.close(fd)
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)


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
        if str(folder) in _HELD:
            _hold(folder)  # its lock file went with it
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
    held = _HELD.pop(str(path), None)
    if held is not None:
        os.close(held)
    mode = _lstat_mode(path)
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=True)
    elif mode:
        with contextlib.suppress(OSError):
            path.unlink()
