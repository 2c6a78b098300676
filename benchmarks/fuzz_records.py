"""Records with one field of the wrong type, through every reader: how many tracebacks?

    .venv/bin/python benchmarks/fuzz_records.py [--keep DIR]

Makes one real `check` run (numpy-naive, two cases), then for every top-level field of its
record, every agreement and output field, the timing, memory, determinism and node fields,
writes a copy of the run with one more record (status mismatch) whose field holds each of a
few wrongly typed values, and reads it with `attnbench report`, `compare` (both ways) and
`attnbench.load`. A reader that raises (rather than skipping the line with a warning, or a
one-line error) is counted and listed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WRONG: list[Any] = ["x", {"a": 1}, [1, 2], None, True, 1.5, -1, [None], {"k": [1]}]
FIXED = ("scenario", "case_id", "backend", "device", "status")  # a record needs these


def make_run(folder: Path) -> Path:
    (folder / "t.toml").write_text("[base]\nbatch = 1\nheads = 2\nhead_dim = 16\n"
                                   "[sweep]\nseq_len = [16, 32]\n")
    env = {**os.environ, "ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD": "1", "ATTNBENCH_ROOF_CACHE": "off"}
    subprocess.run([sys.executable, "-m", "attnbench", "check", "-s", str(folder / "t.toml"),
                    "-b", "numpy-naive", "--out", str(folder / "run")], env=env, check=True,
                   capture_output=True)
    return folder / "run"


def base_record(run: Path) -> dict[str, Any]:
    rec = json.loads((run / "records.jsonl").read_text().splitlines()[0])
    rec.update(status="mismatch", determinism={"repeats": 2, "bitwise_identical": False,
                                               "max_abs_diff": 1e-7, "differing": ["out"]},
               timing={"median_ms": 1.0, "samples_ms": [1.0, 1.1], "p20_ms": 1.0,
                       "p80_ms": 1.1, "iqr_ms": 0.1, "noisy": False},
               memory={"peak_bytes": 10}, node={"gpu": "g", "cpu": "c"})
    rec["agreement"]["passed"] = rec["agreement"]["outputs"][0]["passed"] = False
    return rec


def targets(rec: dict[str, Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [(k,) for k in rec if k not in FIXED]
    out += [("agreement", k) for k in rec["agreement"]]
    out += [("agreement", "outputs", 0, k) for k in rec["agreement"]["outputs"][0]]
    for sub in ("timing", "memory", "determinism", "node"):
        out += [(sub, k) for k in rec[sub]]
    return out


def damaged(rec: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    r = copy.deepcopy(rec)
    node = r
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    r["case_id"] += "-fuzz"
    return r


def readers(good: Path, bad: Path, out: Path) -> list[tuple[str, Any]]:
    import attnbench
    from attnbench.cli import main

    return [("report", lambda: main(["report", str(bad), "--out", str(out)])),
            ("compare new", lambda: main(["compare", str(good), str(bad)])),
            ("compare base", lambda: main(["compare", str(bad), str(good)])),
            ("load", lambda: attnbench.load(bad))]


def fuzz(run: Path, work: Path) -> tuple[int, list[tuple[str, str, str, str]]]:
    rec, lines = base_record(run), (run / "records.jsonl").read_text().splitlines()
    tries, raised = 0, []
    for path in targets(rec):
        for value in WRONG:
            bad = work / "bad"
            shutil.rmtree(bad, ignore_errors=True)
            shutil.copytree(run, bad)
            (bad / "records.jsonl").write_text(
                "\n".join([*lines, json.dumps(damaged(rec, path, value))]) + "\n")
            for name, read in readers(run, bad, work / "report"):
                tries += 1
                try:
                    with contextlib.redirect_stderr(io.StringIO()), \
                            contextlib.redirect_stdout(io.StringIO()):
                        read()
                except BaseException as exc:  # noqa: BLE001 (what is counted)
                    raised.append((".".join(map(str, path)), repr(value), name,
                                   f"{type(exc).__name__}: {exc}"[:120]))
    return tries, raised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="attnbench-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        tries, raised = fuzz(make_run(work), work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{tries} reads of records with one wrongly typed field: {len(raised)} raised")
    for row in raised:
        print("  " + " | ".join(row))


if __name__ == "__main__":
    main()
