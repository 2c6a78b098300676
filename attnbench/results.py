"""Reading a run folder back: run.json and records.jsonl checked, and records as a DataFrame."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError, warn
from attnbench.record import invalid_reason
from attnbench.results_schema import SCHEMA_VERSION, invalid_meta, shape_problem

MAX_WARNINGS = 10  # bad lines named one by one; the rest are counted


def run_folder(path: str | Path) -> Path:
    """The run folder a path names (a file inside it names its folder; any other file is
    itself, which read_meta refuses as a file)."""
    d = Path(path)
    return d.parent if d.is_file() and (d.parent / "run.json").is_file() else d


def read_meta(path: str | Path) -> dict[str, Any]:
    """A run's run.json, checked: a JSON object of this schema version, known fields typed."""
    meta_path = run_folder(path) / "run.json"
    if not meta_path.is_file():
        what = f"{path}: a file, not a run folder" if Path(path).is_file() else (
            f"{meta_path.parent}: not a run folder")
        raise UsageError(f"{what} (no run.json)")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"{meta_path}: not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{meta_path}: not a run's metadata ({invalid_reason(meta)})")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UsageError(
            f"{meta_path}: schema version {version} is not {SCHEMA_VERSION}, "
            "the version this attnbench reads"
        )
    problem = invalid_meta(meta)
    if problem:
        raise UsageError(f"{meta_path}: {problem}")
    return meta




def read_run(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read run.json and every complete record of records.jsonl; check the schema version."""
    d = run_folder(path)
    return read_meta(d), read_records(d / "records.jsonl")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a records.jsonl; other lines are skipped with a warning naming them.

    A last line without its newline was cut while written (the writer was killed), unless it
    is a whole record (a file edited by hand, whose editor dropped the last newline): a cut
    line is skipped silently (resume cuts it), a whole record is kept with a warning.
    """
    if not path.exists():
        return []
    if not path.is_file():
        raise UsageError(f"{path}: not a regular file (a folder or a device): no records read")
    lines = path.read_bytes().split(b"\n")
    out, skipped = [], []
    for number, raw in enumerate(lines[:-1], start=1):
        if not raw.strip():
            continue
        problem, rec = _parse_line(raw)
        if rec is not None:
            out.append(rec)
        else:
            skipped.append(f"{path}:{number}: skipped, {problem}")
    tail = whole_tail(lines[-1])
    if tail is not None:
        out.append(tail)
        skipped.append(f"{path}:{len(lines)}: its newline is missing; kept, as it is a whole "
                       "record")
    for text in skipped[:MAX_WARNINGS]:
        warn(text)
    if len(skipped) > MAX_WARNINGS:
        warn(f"{path}: {len(skipped) - MAX_WARNINGS} more lines skipped, not records")
    return out


def whole_tail(raw: bytes) -> dict[str, Any] | None:
    """The record a last line without its newline holds when it is a whole one, else None."""
    return _parse_line(raw)[1] if raw.strip() else None


def _parse_line(raw: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """(why not, None) for a line that is not a record, (None, record) for one that is."""
    try:
        obj = json.loads(raw.decode("utf-8"))  # json.loads of bytes would guess UTF-16/32
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text ({str(exc)[:80]})", None
    except (json.JSONDecodeError, RecursionError) as exc:
        return f"not JSON ({str(exc)[:80]})", None
    problem = invalid_reason(obj) or shape_problem(obj)
    return (problem, None) if problem else (None, obj)




def load(path: str | Path) -> Any:
    """Records of a run (or several, a list of paths) as a flat pandas DataFrame."""
    import pandas as pd

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    frames = []
    for p in paths:
        meta, records = read_run(p)
        df = pd.json_normalize(records, sep=".").drop(columns="run_id", errors="ignore")
        df.insert(0, "run_id", meta.get("run_id"))  # the run's id, not a field a record forged
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
