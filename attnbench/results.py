"""Result files: run.json and records.jsonl (versioned JSON), written and read back."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError

SCHEMA_VERSION = 1


def new_run_id() -> str:
    """A sortable run id: UTC timestamp plus the process id."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


class RunWriter:
    """Writes one run's folder; the only writer of records.jsonl (flush + fsync per record)."""

    def __init__(self, out_dir: str | Path, meta: dict[str, Any], resume: bool = False):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta = {"schema_version": SCHEMA_VERSION, **meta, "finished": False}
        self.write_meta()
        self._fh = open(self.dir / "records.jsonl", "a" if resume else "w", encoding="utf-8")

    def write_meta(self, **updates: Any) -> None:
        self.meta.update(updates)
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=2, default=str))
        os.replace(tmp, self.dir / "run.json")

    def append(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, default=json_default) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self, finished: bool, **updates: Any) -> None:
        self._fh.close()
        now = datetime.now(timezone.utc).isoformat()
        self.write_meta(finished=finished, ended=now, **updates)


def json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def read_run(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read run.json and every complete line of records.jsonl; check the schema version."""
    d = Path(path)
    if d.is_file():
        d = d.parent
    meta_path = d / "run.json"
    if not meta_path.is_file():
        raise UsageError(f"{d}: not a run folder (no run.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{meta_path}: not valid JSON: {exc}") from None
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UsageError(
            f"{meta_path}: schema version {version} is not {SCHEMA_VERSION}, "
            "the version this attnbench reads"
        )
    return meta, read_records(d / "records.jsonl")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a records.jsonl (a torn last line is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a killed writer
    return out


def load(path: str | Path) -> Any:
    """Records of a run (or several, a list of paths) as a flat pandas DataFrame."""
    import pandas as pd

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    frames = []
    for p in paths:
        meta, records = read_run(p)
        df = pd.json_normalize(records, sep=".")
        df.insert(0, "run_id", meta.get("run_id"))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
