"""check fails when nothing was verified (every record unsupported) and counts oom as a failure,
in its exit code, its message and its JUnit XML alike."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import TWO_CASES

pytestmark = pytest.mark.process

TINY = TWO_CASES


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]


def _suite(path: Path) -> ET.Element:
    return ET.parse(path).getroot().find("testsuite")


@pytest.fixture
def tiny(tmp_path: Path) -> str:
    (tmp_path / "tiny.toml").write_text(TINY)
    return str(tmp_path / "tiny.toml")


@pytest.mark.parametrize("flags", [
    ["-b", "torch-sdpa-efficient", "--device", "cpu"],  # a CUDA-only kernel on the CPU
    ["-b", "numpy-naive", "--device", "cuda"],  # a CPU-only backend asked for CUDA
])
def test_nothing_verified_fails(cli, tmp_path: Path, tiny: str, flags: list[str]):
    proc = cli("check", "-s", tiny, *flags, "--out", "out", "--junit-xml", "j.xml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert {r["status"] for r in _records(tmp_path / "out")} == {"unsupported"}
    lines = [x for x in proc.stderr.splitlines() if x.startswith("check failed")]
    assert len(lines) == 1 and "no record was verified" in lines[0] and "2 unsupported" in lines[0]
    assert "Traceback" not in proc.stderr
    assert "attnbench: nothing ran: all 2 case(s) are unsupported here: " in proc.stderr
    assert "runs only on" in proc.stderr  # why, in the terminal (it was only in the records)
    suite = _suite(tmp_path / "j.xml")
    assert suite.get("skipped") == "2" and suite.get("failures") == suite.get("errors") == "0"


def test_oom_fails_check_and_junit(cli, tmp_path: Path, plugin_path):
    (tmp_path / "s.toml").write_text(TINY.replace("16, 32", "32, 64"))  # test-hog: oom at 64
    proc = cli("check", "-s", "s.toml", "--plugin", plugin_path("hog.py"), "-b", "test-hog",
               "--device", "cpu", "--out", "out", "--junit-xml", "j.xml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    statuses = sorted(r["status"] for r in _records(tmp_path / "out"))
    assert statuses == ["ok", "oom"]
    assert "check failed: 1 record(s) not ok (1 oom)" in proc.stderr
    suite = _suite(tmp_path / "j.xml")
    assert (suite.get("errors"), suite.get("failures"), suite.get("skipped")) == ("1", "0", "0")
    error = suite.find("testcase/error")
    assert error.get("type") == "oom" and "MemoryError" in error.get("message")


def test_verified_records_pass_and_say_so(cli, tmp_path: Path, tiny: str):
    proc = cli("check", "-s", tiny, "-b", "numpy-naive", "-b", "torch-sdpa-efficient",
               "--device", "cpu", "--out", "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check passed: 2 record(s) verified (2 ok, 2 unsupported)" in proc.stdout
