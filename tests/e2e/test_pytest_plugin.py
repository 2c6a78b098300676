"""attnbench in other people's pytest suites: the sample kernel's suite (examples/kernel_tests)
written with attnbench.testing, and `pytest --attnbench-backend NAME|FILE` through the
installed pytest11 entry point; both run in a fresh pytest process here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "tests" / "plugins"
pytestmark = pytest.mark.process


def pytest_run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:xdist", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_the_sample_kernels_own_suite_passes_with_the_testing_api():
    proc = pytest_run(str(ROOT / "examples" / "kernel_tests"), "-rs")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    from attnbench.testing import cases

    smoke = len(cases("smoke", dtype="float32"))
    assert smoke >= 8 and proc.stdout.strip().splitlines()[-1].startswith(f"{smoke + 1} passed")


def test_a_backend_file_becomes_one_test_per_case(tmp_path):
    proc = pytest_run("--attnbench-backend", str(ROOT / "examples" / "my_backend.py"),
                      "--attnbench-scenario", "smoke", "-rs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout and "my-numpy[" not in proc.stderr


def test_a_wrong_backend_fails_with_where_it_is_wrong(tmp_path):
    proc = pytest_run("--attnbench-backend", str(PLUGINS / "wrong_sinks.py"),
                      "--attnbench-scenario", "variants", "--attnbench-dtype", "float32",
                      cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "sinks-fwd" in proc.stdout and "mismatch" not in proc.stderr
    assert "error/bound" in proc.stdout and "where: " in proc.stdout and "error map" in proc.stdout
    assert " skipped" in proc.stdout.splitlines()[-1]  # the variants it does not declare


def test_a_bad_backend_spec_is_a_usage_error(tmp_path):
    proc = pytest_run("--attnbench-backend", "no-such-backend", cwd=tmp_path)
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage error
    assert "unknown backend 'no-such-backend'" in proc.stderr
    (tmp_path / "broken.py").write_text("def (\n")  # said "it has none", hiding the error
    proc = pytest_run("--attnbench-backend", "broken.py", cwd=tmp_path)
    assert proc.returncode == 4 and "the plugin did not load: " in proc.stderr
    assert "SyntaxError" in proc.stderr, proc.stderr


def test_numpy_kernels_are_tested_without_importing_torch(tmp_path):
    kernels = str(ROOT / "examples" / "kernel_tests")
    code = ("import sys\n"
            f"sys.path.insert(0, {kernels!r})\n"
            "from tiled_attention import tiled_attention\n"
            "from attnbench.testing import assert_matches_oracle, cases\n"
            "for p in cases('smoke', dtype='float32')[:4]:\n"
            "    assert_matches_oracle(lambda i: tiled_attention(i.q, i.k, i.v, i.scale,"
            " causal=i.case.mask == 'causal'), p.values[0])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
