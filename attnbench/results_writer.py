"""Writing a run folder: run.json and records.jsonl as strict JSON, and clearing it afresh."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.results_schema import SCHEMA_VERSION


def new_run_id() -> str:
    """A sortable run id: UTC timestamp plus the process id."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """An OSError while writing path becomes a one-line UsageError naming it (a full disk's
    error names no file by itself)."""
    try:
        yield
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


class RunWriter:
    """Writes one run's folder; the only writer of records.jsonl (flush + fsync per record).

    A record that cannot be appended (a full disk) stops the run: the error names the file,
    the records written before stay, and run.json says why it stopped.
    """

    def __init__(self, out_dir: str | Path, meta: dict[str, Any], resume: bool = False):
        self.dir = Path(out_dir)
        self.records = self.dir / "records.jsonl"
        self.failure: str | None = None  # why a record could not be appended
        with writing(self.dir):
            self.dir.mkdir(parents=True, exist_ok=True)
        self.meta = {"schema_version": SCHEMA_VERSION, **meta, "finished": False}
        self.write_meta()
        with writing(self.records):
            self._fh = open(self.records, "a" if resume else "w", encoding="utf-8")

    def write_meta(self, **updates: Any) -> None:
        self.meta.update(updates)
        tmp = self.dir / "run.json.tmp"
        with writing(self.dir / "run.json"):
            tmp.write_text(json.dumps(self.meta, indent=2, default=str))
            os.replace(tmp, self.dir / "run.json")

    def append(self, record: dict[str, Any]) -> None:
        try:
            self._fh.write(strict_json(record) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            self.failure = (f"cannot append a record to {self.records}: "
                            f"{exc.strerror or exc}; the run stopped, the records written "
                            "before are kept")
            raise UsageError(self.failure) from None

    def close(self, finished: bool, **updates: Any) -> None:
        try:
            self._fh.close()
        except OSError:  # the record that could not be appended: already said (failure)
            pass
        if self.failure and not updates.get("stopped"):
            updates["stopped"] = self.failure
        now = datetime.now(timezone.utc).isoformat()
        self.write_meta(finished=finished and not self.failure, ended=now, **updates)


# what attnbench writes in a run folder: --overwrite deletes these, and nothing else
RUN_FILES = ("run.json", "run.json.tmp", "records.jsonl", "frontier.json", "report.md",
             "report.html", "summary.csv")
RUN_FOLDERS = ("logs", "plots")


def is_run_folder(path: str | Path) -> bool:
    """Whether a folder already holds a run (its run.json or records.jsonl)."""
    return any((Path(path) / name).exists() for name in ("run.json", "records.jsonl"))


def clear_run(path: str | Path) -> None:
    """Delete what attnbench wrote in a run folder, so that a new run there starts afresh."""
    d = Path(path)
    for name in RUN_FILES:
        (d / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        if (d / name).is_dir() and not (d / name).is_symlink():
            shutil.rmtree(d / name)


def strict_json(obj: Any) -> str:
    """One line of strict JSON: a NaN or infinite number (a ratio over a zero bound) is null,
    never the bare NaN/Infinity other JSON readers refuse."""
    return json.dumps(_finite(obj), default=json_default, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "tolist"):  # NumPy arrays and scalars
        return _finite(obj.tolist())
    return obj


def json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    return str(x)
