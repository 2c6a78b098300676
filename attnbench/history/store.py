"""The history database: one row per stored run and one per record's timing.

SQLite by default (a file, `results/history.sqlite` unless given); any other SQLAlchemy URL
(`postgresql://...`) when SQLAlchemy is installed. The same portable SQL runs on both.
A series is one (scenario, case, backend, device, machine); a run's library versions are kept
with it, so a step can be read beside what changed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnbench.errors import UsageError
from attnbench.results import read_run

DEFAULT_DB = Path("results") / "history.sqlite"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs (run_id VARCHAR(200) PRIMARY KEY, label VARCHAR(200),"
    " seq INTEGER, added_at VARCHAR(40), machine VARCHAR(400), versions TEXT, busy INTEGER)",
    "CREATE TABLE IF NOT EXISTS points (run_id VARCHAR(200), seq INTEGER, label VARCHAR(200),"
    " scenario VARCHAR(200), case_id VARCHAR(400), backend VARCHAR(200), device VARCHAR(20),"
    " machine VARCHAR(400), status VARCHAR(20), median_ms REAL, q25_ms REAL, q75_ms REAL,"
    " samples INTEGER)",
)
POINT_FIELDS = ("run_id", "seq", "label", "scenario", "case_id", "backend", "device", "machine",
                "status", "median_ms", "q25_ms", "q75_ms", "samples")


@dataclass(frozen=True)
class Point:
    """One record's timing in the history."""

    run_id: str
    seq: int
    label: str
    scenario: str
    case_id: str
    backend: str
    device: str
    machine: str
    status: str
    median_ms: float | None
    q25_ms: float | None
    q75_ms: float | None
    samples: int


SeriesKey = tuple[str, str, str, str, str]  # scenario, case_id, backend, device, machine


def series_key(p: Point) -> SeriesKey:
    return (p.scenario, p.case_id, p.backend, p.device, p.machine)


@contextmanager
def connect(where: str | Path | None) -> Iterator[Any]:
    """A DB-API-like connection (execute(sql, params) -> rows) with the schema made."""
    target = str(where or DEFAULT_DB)
    if "://" in target:
        conn: Any = _sqlalchemy(target)
    else:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = _Sqlite(sqlite3.connect(target))
        except sqlite3.Error as exc:
            raise UsageError(f"--db {target}: {exc}") from None
    try:
        for sql in SCHEMA:
            conn.execute(sql, {})
        yield conn
        conn.commit()
    except Exception as exc:
        if _database_error(exc):  # not a database, locked, unreachable: one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UsageError(f"--db {target}: {type(exc).__name__}: {first}"[:300]) from None
        raise
    finally:
        conn.close()


def _database_error(exc: Exception) -> bool:
    """True for the errors of the database itself (sqlite3's or SQLAlchemy's)."""
    if isinstance(exc, sqlite3.Error):
        return True
    return type(exc).__module__.startswith("sqlalchemy")


class _Sqlite:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class _Alchemy:
    def __init__(self, engine: Any):
        from sqlalchemy import text

        self.text, self.engine = text, engine
        self.conn = engine.connect()

    def execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        result = self.conn.execute(self.text(sql), params)
        return [tuple(r) for r in result] if result.returns_rows else []

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def _sqlalchemy(url: str) -> _Alchemy:
    try:
        from sqlalchemy import create_engine
    except ImportError:
        raise UsageError(f"--db {url}: a database URL needs SQLAlchemy (pip install "
                         "sqlalchemy, and the server's driver); a file path needs nothing"
                         ) from None
    try:
        return _Alchemy(create_engine(url))
    except Exception as exc:  # a bad URL or a missing driver: said in one line
        raise UsageError(f"--db {url}: {type(exc).__name__}: {exc}"[:300]) from None


def machine_of(meta: dict[str, Any], device: str) -> str:
    """What a series' machine is: the host and its CPU, or its GPU on CUDA."""
    env = meta.get("environment") or {}
    gpu = env.get("gpu") if isinstance(env.get("gpu"), dict) else {}
    model = gpu.get("name") if device == "cuda" and gpu else env.get("cpu")
    return f"{env.get('host')} | {model}"


def quartiles(timing: dict[str, Any]) -> tuple[float | None, float | None]:
    samples = timing.get("samples_ms")
    if isinstance(samples, list) and len(samples) >= 2:
        q25, q75 = np.percentile(np.asarray(samples, dtype=float), [25, 75])
        return float(q25), float(q75)
    return timing.get("p20_ms"), timing.get("p80_ms")


def add_run(conn: Any, run_dir: str | Path, label: str | None) -> int:
    """Store a run's timed records under a label (default its run id); the number stored."""
    meta, records = read_run(run_dir)
    run_id = str(meta.get("run_id") or Path(run_dir).name)
    if meta.get("finished") is not True:
        raise UsageError(f"{run_dir}: the run did not finish (resume it first): not stored")
    if conn.execute("SELECT seq FROM runs WHERE run_id = :r", {"r": run_id}):
        raise UsageError(f"{run_dir}: run {run_id} is already in the history")
    seq = int(conn.execute("SELECT MAX(seq) FROM runs", {})[0][0] or 0) + 1
    label = label or run_id
    env = meta.get("environment") or {}
    versions = json.dumps({**(env.get("versions") or {}), "git commit": env.get("git_commit")},
                          sort_keys=True)
    verdict = meta.get("busy")
    busy = isinstance(verdict, dict) and verdict.get("busy") is True
    machine = machine_of(meta, "cpu")
    conn.execute("INSERT INTO runs VALUES (:r, :l, :s, :a, :m, :v, :b)",
                 {"r": run_id, "l": label, "s": seq, "m": machine, "v": versions, "b": int(busy),
                  "a": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    stored = 0
    for rec in records:
        timing = rec.get("timing") or {}
        median = timing.get("median_ms")
        if not isinstance(median, (int, float)):
            continue
        q25, q75 = quartiles(timing)
        device = str(rec.get("device"))
        row = {"run_id": run_id, "seq": seq, "label": label,
               "scenario": str(rec.get("scenario")), "case_id": str(rec.get("case_id")),
               "backend": str(rec.get("backend")), "device": device,
               "machine": machine_of(meta, device), "status": str(rec.get("status")),
               "median_ms": float(median), "q25_ms": q25, "q75_ms": q75,
               "samples": _count(timing.get("n"))}
        conn.execute(f"INSERT INTO points VALUES ({', '.join(':' + f for f in POINT_FIELDS)})",
                     row)
        stored += 1
    return stored


def _count(n: Any) -> int:
    """A timing's sample count as stored: a whole number >= 0, else 0 (unknown)."""
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 0


def points(conn: Any, backend: str | None = None, case: str | None = None) -> list[Point]:
    """Every stored point (optionally of one backend and one case id), in run order."""
    sql, params = f"SELECT {', '.join(POINT_FIELDS)} FROM points", {}
    where = []
    if backend:
        where.append("backend = :b")
        params["b"] = backend
    if case:
        where.append("case_id = :c")
        params["c"] = case
    if where:
        sql += " WHERE " + " AND ".join(where)
    got = [Point(*row) for row in conn.execute(sql + " ORDER BY seq", params)]
    # a time no run measures (stored by an older attnbench from a damaged record) is left out
    return [p for p in got if isinstance(p.median_ms, (int, float)) and 0 < p.median_ms < math.inf]


def run_versions(conn: Any) -> dict[int, dict[str, Any]]:
    """seq -> the library versions of that run."""
    return {int(seq): json.loads(v or "{}")
            for seq, v in conn.execute("SELECT seq, versions FROM runs", {})}
