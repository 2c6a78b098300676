"""`make setup` where python3 is itself a virtualenv and no package index can be reached."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
# What the GPU box's interpreter holds and set-up must find there: torch, the dependencies,
# and what an editable install needs (pip, setuptools); pytest for `make test`.
NEEDED = ("torch", "numpy", "pluggy", "pandas", "matplotlib", "rich", "threadpoolctl",
          "setuptools", "pip", "pytest")
# The package index switched off three ways; a pip that still tried would fail at once.
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
           "PIP_EXTRA_INDEX_URL": "", "PIP_RETRIES": "0", "PIP_TIMEOUT": "5"}
PROJECT = ("Makefile", "pyproject.toml", "README.md", "attnbench", "backends", "scenarios",
           "tools")
OURS = ("attnbench", "__editable__", "_attnbench", "__pycache__")


def setup_venv() -> ModuleType:
    """tools/setup_venv.py, imported from its path (it is no package)."""
    spec = importlib.util.spec_from_file_location("setup_venv", ROOT / "tools" / "setup_venv.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_required_packages_are_pyprojects_dependencies():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [d.split(">")[0].split(";")[0].strip() for d in deps if "python_version" not in d]
    assert sorted(setup_venv().REQUIRED) == sorted(names)


@pytest.mark.parametrize(("version", "gpu", "reuse"), [
    ("2.11.0+cu130", True, True),  # the GPU box: a CUDA torch that sees the GPU
    ("2.13.0+cpu", False, True),  # the very torch set-up would install
    ("2.13.0", False, True),
    ("2.12.1+cpu", False, False),  # another CPU torch: install the pinned one
    (None, False, False),  # no torch at all
])
def test_which_interpreters_are_reused(version, gpu, reuse):
    assert setup_venv().choose(version, gpu, "2.13.0")[0] is reuse


def test_the_pth_adds_each_directory_as_a_site_directory(tmp_path):
    text = setup_venv().pth_text([str(tmp_path / "a b"), "/x'y"])
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert all(ln.startswith("import site; site.addsitedir(") for ln in lines)
    seen: list[str] = []
    for ln in lines:  # what site.py does with an import line of a .pth: exec it
        exec(ln.replace("site.addsitedir", "seen.append"), {"seen": seen})
    assert seen == [str(tmp_path / "a b"), "/x'y"]


def site_dir_of(name: str) -> Path:
    """The sys.path entry a top-level module is imported from."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin, f"{name} is not importable"
    origin = Path(spec.origin)
    entries = [Path(p) for p in sys.path if p]
    return next(p for p in origin.parents if p in entries)


def make_v1(tmp: Path) -> Path:
    """A virtualenv made from this (virtualenv) interpreter whose own site-packages hold, as
    links, every package this interpreter imports NEEDED from: no download, no index."""
    v1 = tmp / "V1"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(v1)], check=True,
                   capture_output=True, timeout=120)
    site_packages = next((v1 / "lib").glob("python3*/site-packages"))
    for src in dict.fromkeys(site_dir_of(n) for n in NEEDED):
        for entry in src.iterdir():
            if not entry.name.startswith(OURS) and not (site_packages / entry.name).exists():
                (site_packages / entry.name).symlink_to(entry)
    return v1


def copy_project(dst: Path) -> Path:
    dst.mkdir()
    for name in PROJECT:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst / name)
    return dst


def imported_from(python: Path, cwd: Path, *names: str) -> dict[str, str]:
    """Where python imports each module from, started in cwd (which holds none of them)."""
    code = "import sys, importlib; print('\\n'.join(importlib.import_module(n).__file__ " \
           "for n in sys.argv[1:]))"
    out = subprocess.run([str(python), "-c", code, *names], cwd=cwd, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(zip(names, out.stdout.split("\n"), strict=False))


@pytest.mark.process
def test_setup_reuses_a_virtualenv_interpreter_with_no_index(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    try:
        v1 = make_v1(tmp_path)
    except (OSError, subprocess.SubprocessError, StopIteration, AssertionError) as exc:
        pytest.skip(f"cannot build the virtualenv interpreter V1 offline: {exc!r}")
    v1_site = str(next((v1 / "lib").glob("python3*/site-packages")))
    # The failure this fixes: a venv made by V1 with system packages sees the base's, not V1's.
    plain = tmp_path / "plain"
    subprocess.run([str(v1 / "bin" / "python3"), "-m", "venv", "--without-pip",
                    "--system-site-packages", str(plain)], check=True, timeout=120)
    probe = subprocess.run([str(plain / "bin" / "python"), "-c", "import torch; "
                            "print(torch.__file__)"], capture_output=True, text=True, timeout=120)
    assert probe.returncode != 0 or not probe.stdout.startswith(v1_site)

    project = copy_project(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    made = subprocess.run(["make", "setup", f"PYTHON={v1 / 'bin' / 'python3'}"], cwd=project,
                          env={**env, **OFFLINE}, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    assert "the venv reuses its packages" in made.stdout
    assert "no package index asked" in made.stdout
    assert f"from {v1_site}" in made.stdout  # the torch set-up says it got
    venv_python = project / ".venv" / "bin" / "python"
    where = imported_from(venv_python, tmp_path, "torch", "numpy", "pytest", "attnbench")
    assert all(where[n].startswith(v1_site) for n in ("torch", "numpy", "pytest")), where
    assert where["attnbench"].startswith(str(project / "attnbench")), where
    # The CLI and its worker processes see the same packages: a real check runs and passes.
    check = subprocess.run([str(project / ".venv" / "bin" / "attnbench"), "check", "-s", "smoke",
                            "-b", "numpy-naive", "-b", "torch-naive", "--device", "cpu",
                            "--out", str(tmp_path / "smoke")], cwd=project,
                           env={**env, **OFFLINE}, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "check passed" in check.stdout
