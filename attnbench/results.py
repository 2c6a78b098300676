"""Result files: run.json and records.jsonl (versioned JSON), written and read back."""

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

from attnbench.errors import UsageError, warn
from attnbench.record import fields_problem, invalid_reason

SCHEMA_VERSION = 1


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


# run.json fields that readers use, and the JSON type each must have when present
META_TYPES: dict[str, type | tuple[type, ...]] = {
    "run_id": str, "started": str, "command": str, "config": dict, "environment": dict,
    "plan": dict, "roofs": dict, "finished": bool, "resumes": list, "wall_s": (int, float),
}
NESTED_TYPES = {("config", "scenarios"): list, ("environment", "versions"): dict,
                ("environment", "gpu"): (dict, type(None))}
MAX_WARNINGS = 10  # bad lines named one by one; the rest are counted


def run_folder(path: str | Path) -> Path:
    """The run folder a path names (a file inside it names its folder)."""
    d = Path(path)
    return d.parent if d.is_file() else d


def read_meta(path: str | Path) -> dict[str, Any]:
    """A run's run.json, checked: a JSON object of this schema version, known fields typed."""
    meta_path = run_folder(path) / "run.json"
    if not meta_path.is_file():
        raise UsageError(f"{meta_path.parent}: not a run folder (no run.json)")
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


def invalid_meta(meta: dict[str, Any]) -> str | None:
    """Why a run.json object cannot be read (a field of the wrong type), or None."""
    for key, kinds in META_TYPES.items():
        if key in meta and not _is(meta[key], kinds):
            return f"field {key!r} has the wrong type ({type(meta[key]).__name__})"
    for (outer, inner), kinds in NESTED_TYPES.items():
        value = meta.get(outer) or {}
        if inner in value and not _is(value[inner], kinds):
            return f"field '{outer}.{inner}' has the wrong type ({type(value[inner]).__name__})"
    for device, roofs in (meta.get("roofs") or {}).items():
        if not isinstance(roofs, dict):
            return f"field 'roofs.{device}' has the wrong type ({type(roofs).__name__})"
    for i, s in enumerate((meta.get("config") or {}).get("scenarios") or []):
        if not (isinstance(s, dict) and isinstance(s.get("path"), str)
                and isinstance(s.get("spec"), dict)):
            return f"field 'config.scenarios[{i}]' is not a scenario (path and spec)"
    return None


def _is(value: Any, kinds: type | tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and (kinds is bool or not isinstance(value, bool))


def read_run(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read run.json and every complete record of records.jsonl; check the schema version."""
    d = run_folder(path)
    return read_meta(d), read_records(d / "records.jsonl")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a records.jsonl; other lines are skipped with a warning naming them.

    A last line without its newline was cut while written (the writer was killed): it is
    not a record, as for resume, which cuts it; it is skipped silently.
    """
    if not path.is_file():
        return []
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
    for text in skipped[:MAX_WARNINGS]:
        warn(text)
    if len(skipped) > MAX_WARNINGS:
        warn(f"{path}: {len(skipped) - MAX_WARNINGS} more lines skipped, not records")
    return out


def _parse_line(raw: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """(why not, None) for a line that is not a record, (None, record) for one that is."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        return f"not JSON ({str(exc)[:80]})", None
    problem = invalid_reason(obj) or shape_problem(obj)
    return (problem, None) if problem else (None, obj)


# numbers (or null) that reports compute with, at the top of a record and in its sub-objects
NUMBERS = {(): ("scale", "softmax_scale", "io_bytes", "score_bytes", "gflops_per_s",
                "roof_flops_per_s", "roof_fraction"),
           ("timing",): ("median_ms", "iqr_ms", "p20_ms", "p80_ms", "min_ms", "mean_ms",
                         "std_ms", "iqr_over_median"),
           ("memory",): ("peak_bytes", "base_bytes")}
OUTPUT_NUMBERS = ("max_abs_err", "mean_abs_err", "rel_l2_err", "bound", "baseline_max_abs_err",
                  "error_over_bound")
# the other sub-fields readers use, and their JSON kinds (record.KINDS)
SUB_FIELDS = {
    "agreement": {"passed": ("bool", "null"), "problems": ("strs", "null"),
                  "rows_checked": ("str", "int", "null"), "check_seed": ("int", "null")},
    "timing": {"noisy": ("bool", "null")},
    "memory": {"method": ("str", "null")},
    "determinism": {"repeats": ("int", "null"), "bitwise_identical": ("bool", "null"),
                    "max_abs_diff": ("num", "null"), "differing": ("strs", "null")},
}
OUTPUT_FIELDS = {"name": ("str", "null"), "passed": ("bool", "null"),
                 "nonfinite": ("int", "null"), "error": ("str", "null"),
                 "rule": ("str", "null"), "fallback_reason": ("str", "null"),
                 "shape": ("ints", "null")}


def shape_problem(rec: dict[str, Any]) -> str | None:
    """Why a record's nested fields cannot be computed with (beyond record.invalid_reason)."""
    for where, names in NUMBERS.items():
        obj = rec.get(where[0]) if where else rec
        for name in names if isinstance(obj, dict) else ():
            if not _number_or_none(obj.get(name)):
                return f"field {'.'.join((*where, name))!r} is not a number"
    samples = (rec.get("timing") or {}).get("samples_ms")
    if samples is not None and not (isinstance(samples, list)
                                    and all(_number_or_none(x) and x is not None for x in samples)):
        return "field 'timing.samples_ms' is not a list of numbers"
    outputs = (rec.get("agreement") or {}).get("outputs")
    if outputs is not None and not (isinstance(outputs, list)
                                    and all(isinstance(o, dict) for o in outputs)):
        return "field 'agreement.outputs' is not a list of objects"
    for i, o in enumerate(outputs or []):
        bad = next((n for n in OUTPUT_NUMBERS if not _number_or_none(o.get(n))), None)
        if bad:
            return f"field 'agreement.outputs[{i}].{bad}' is not a number"
        problem = fields_problem(o, OUTPUT_FIELDS, f"agreement.outputs[{i}].")
        if problem:
            return problem
        missing = [n for n in ("max_abs_err", "bound") if o.get(n) is None]
        if missing and not o.get("error"):  # compared outputs carry their error and bound
            return (f"field 'agreement.outputs[{i}].{missing[0]}' is null in an output "
                    "without an error")
    for name, spec in SUB_FIELDS.items():
        sub = rec.get(name)
        problem = fields_problem(sub, spec, f"{name}.") if isinstance(sub, dict) else None
        if problem:
            return problem
    return None


def _number_or_none(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


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
