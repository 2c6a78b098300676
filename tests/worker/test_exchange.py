"""The run's exchange folders (worker/exchange.py): private, unguessable, made again where a
plugin replaced one, and those a killed run left removed by the next."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from attnbench.worker import exchange


def test_exchange_and_task_folders_are_private_and_unguessable(tmp_path: Path):
    base = exchange.exchange_dir()
    try:
        task = exchange.task_dir(base)
        for path in (base, task):
            assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert exchange.TASK_DIR.match(task.name)  # 128 random bits (secrets.token_hex)
        assert exchange.task_dir(base).name != task.name
    finally:
        exchange.remove_dir(base)


@pytest.mark.parametrize("replacement", ["file", "link", "gone"])
def test_an_exchange_folder_a_plugin_replaced_is_made_again_and_removed(tmp_path: Path,
                                                                       replacement: str):
    """A file, a link (to a folder elsewhere) or nothing where the run's exchange folder was:
    the next task folder is made in a new, empty, private folder at its path, never through
    the link; remove_dir then deletes whatever is there."""
    root, elsewhere = tmp_path / "attnbench-arrays-x", tmp_path / "elsewhere"
    elsewhere.mkdir()
    if replacement == "file":
        root.write_text("not a folder")
    elif replacement == "link":
        root.symlink_to(elsewhere)
    task = exchange.task_dir(root)
    assert task.parent == root and root.is_dir() and not root.is_symlink()
    assert root.stat().st_mode & 0o777 == 0o700 and list(elsewhere.iterdir()) == []
    exchange.remove_dir(root)
    assert not root.exists()
    root.write_text("a file left in its place")
    exchange.remove_dir(root)
    assert not root.exists() and not root.is_symlink()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])  # ended and reaped: its pid is no process's
    proc.wait()
    return proc.pid


def test_folders_a_killed_run_left_are_removed_and_no_others(tmp_path: Path):
    """Removed: a dead pid's folder whose lock nobody holds (however fresh), or with no lock
    file and untouched for an hour. Kept: a live pid's; one whose lock is held, however old
    (a live run of another PID namespace: the pid in its name means nothing here, and a task
    can last hours without touching the folder); a fresh one with no lock file; a name with no
    pid; a link."""
    dead, old = _dead_pid(), time.time() - 2 * exchange.STALE_S
    names = {"unlocked": f"attnbench-arrays-{dead}-aa11", "old": f"attnbench-arrays-{dead}-ab12",
             "live": f"attnbench-arrays-{os.getpid()}-x", "held": f"attnbench-arrays-{dead}-ef56",
             "fresh": f"attnbench-arrays-{dead}-cd34", "no-pid": "attnbench-arrays-k9z2",
             "other": f"somebody-{dead}-ab12"}
    for key, name in names.items():
        (tmp_path / name / ("0" * 32)).mkdir(parents=True)
        if key != "fresh":
            os.utime(tmp_path / name, (old, old))
    (tmp_path / names["unlocked"] / exchange.LOCK).touch()
    os.utime(tmp_path / names["unlocked"])  # fresh: the free lock decides, not the age
    held = os.open(tmp_path / names["held"] / exchange.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    os.utime(tmp_path / names["held"], (old, old))
    link = tmp_path / f"attnbench-arrays-{dead}-link"
    link.symlink_to(tmp_path / names["live"])
    try:
        assert sorted(exchange.remove_stale(tmp_path)) == sorted([names["unlocked"],
                                                                  names["old"]])
    finally:
        os.close(held)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*(n for k, n in names.items() if k not in ("unlocked", "old")), link.name])


def _locked(folder: Path) -> bool:
    """Whether someone holds the folder's lock (another open file: flock sees it apart)."""
    fd = os.open(folder / exchange.LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_run_holds_its_folders_lock_until_it_removes_it():
    """Held from the start, taken again when the folder is made again after a plugin replaced
    it, let go by remove_dir."""
    base = exchange.exchange_dir()
    try:
        assert _locked(base)
        shutil.rmtree(base)
        base.write_text("a plugin's file")
        exchange.task_dir(base)
        assert _locked(base)
    finally:
        exchange.remove_dir(base)
    assert not base.exists() and str(base) not in exchange._HELD


def test_a_run_names_its_exchange_folder_by_its_pid():
    base = exchange.exchange_dir()
    try:
        assert base.name.startswith(f"attnbench-arrays-{os.getpid()}-")
        assert exchange.OWNED.match(base.name)[1] == str(os.getpid())
    finally:
        exchange.remove_dir(base)
