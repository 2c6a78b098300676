"""`make setup`: make .venv from the interpreter's own packages, or install torch into a new one.

Run by the interpreter set-up uses (`make PYTHON=...`, default python3):

    python3 tools/setup_venv.py [--venv .venv] [--torch 2.13.0] [--torch-index URL]

Where that interpreter has a torch that sees a GPU, or exactly the torch set-up would install,
.venv reuses every package the interpreter sees: a `.pth` file in .venv's site-packages adds
the interpreter's own site directories (`--system-site-packages` alone would add the *base*
interpreter's, which is not what a virtualenv interpreter sees), and attnbench is installed
editable with `--no-index --no-deps --no-build-isolation`: no package index is asked when
everything needed is there. Otherwise .venv is a fresh venv with torch and the extras installed
from the configured package indexes. Standard library only: nothing is installed yet.
"""

from __future__ import annotations

import argparse
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

# pyproject.toml's [project] dependencies, by import name (tests/e2e/test_setup.py checks).
REQUIRED = ["numpy", "pluggy", "pandas", "matplotlib", "rich", "threadpoolctl"] + (
    ["tomli"] if sys.version_info < (3, 11) else [])
# An editable install builds with setuptools >= 64 (PEP 660); before 70.1 it needs wheel too.
EDITABLE = ["setuptools", "pip"]
OPTIONAL = {"pytest": "make test", "numba": "the numba-cpu backend",
            "scipy": "the numba-cpu backend", "ruff": "make lint", "importlinter": "make lint",
            "ruptures": "attnbench history"}
PTH = "_attnbench_interpreter.pth"
SAY = "attnbench:"

# Run inside .venv's python: the names among argv that it cannot import, then the setuptools
# version ("-" when absent), one line each.
PROBE = """import importlib.util, importlib.metadata, sys
print(" ".join(n for n in sys.argv[1:] if importlib.util.find_spec(n) is None))
try:
    print(importlib.metadata.version("setuptools"))
except importlib.metadata.PackageNotFoundError:
    print("-")
"""


def interpreter_torch() -> tuple[str | None, bool]:
    """This interpreter's torch version (None when it imports none) and whether it sees a GPU."""
    try:
        import torch
    except Exception:  # noqa: BLE001 - any failure to import means "no usable torch"
        return None, False
    try:
        sees_gpu = bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA set-up sees no GPU
        sees_gpu = False
    return str(torch.__version__), sees_gpu


def choose(version: str | None, sees_gpu: bool, wanted: str) -> tuple[bool, str]:
    """(reuse the interpreter's packages?, why), from its torch and the version set-up pins."""
    if version is None:
        return False, "has no torch"
    if sees_gpu:
        return True, f"has torch {version}, which sees a GPU"
    if version.split("+")[0] == wanted:
        return True, f"has torch {version}, the version set-up installs"
    return False, f"has torch {version}, which sees no GPU and is not {wanted}"


def site_dirs() -> list[str]:
    """The site directories this interpreter reads packages from (a virtualenv's own ones)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def pth_text(dirs: list[str]) -> str:
    """A .pth that adds each directory as a site directory (its own .pth files processed too)."""
    lines = [f"import site; site.addsitedir({d!r})" for d in dirs]
    return "# written by attnbench's make setup: the packages of " + sys.executable + "\n" + (
        "\n".join(lines) + "\n")


def run(cmd: list[str], check: bool = True) -> int:
    """Run a command, its output passed through; a failure stops set-up with its exit code."""
    code = subprocess.call(cmd)
    if code and check:
        print(f"{SAY} set-up failed: {' '.join(cmd)} exited {code}", file=sys.stderr)
        raise SystemExit(code)
    return code


def probe(python: Path, names: list[str]) -> tuple[list[str], str]:
    """The names .venv's python cannot import, and its setuptools version ('-' if none)."""
    out = subprocess.run([str(python), "-c", PROBE, *names], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    return out[0].split(), out[1]


def editable_ready(missing: list[str], setuptools: str, python: Path) -> list[str]:
    """What an editable install without build isolation lacks: [] when it can run offline."""
    lacks = [n for n in EDITABLE if n in missing]
    if setuptools != "-":
        major, minor = (int(x) for x in (setuptools.split(".") + ["0"])[:2])
        if (major, minor) < (64, 0):
            lacks.append(f"setuptools>=64 (has {setuptools})")
        elif (major, minor) < (70, 1) and probe(python, ["wheel"])[0]:
            lacks.append(f"wheel (setuptools {setuptools} needs it)")
    return lacks


def reuse(venv: Path) -> None:
    """.venv over the interpreter's packages; attnbench installed without an index if it can."""
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / PTH).write_text(pth_text(site_dirs()))
    missing, setuptools = probe(python, REQUIRED + EDITABLE + list(OPTIONAL))
    if "pip" in missing:
        print(f"{SAY} {sys.executable} has no pip: install pip for it, or pass another "
              "PYTHON=", file=sys.stderr)
        raise SystemExit(1)
    lacks = editable_ready(missing, setuptools, python)
    needed = [n for n in REQUIRED if n in missing]
    pip = [str(python), "-m", "pip", "install", "-q"]
    if not needed and not lacks:
        print(f"{SAY} every package attnbench needs is there: installing attnbench alone, "
              "no package index asked")
        run(pip + ["--no-index", "--no-deps", "--no-build-isolation", "-e", "."])
    else:
        print(f"{SAY} {sys.executable} lacks {', '.join(needed + lacks)}: installing "
              "from the package index", file=sys.stderr)
        run(pip + ([] if lacks else ["--no-build-isolation"]) + ["-e", "."])
    absent = [f"{n} ({why})" for n, why in OPTIONAL.items() if n in missing]
    if absent:
        print(f"{SAY} not installed, no index asked: {', '.join(absent)}; add them with "
              f"{python} -m pip install NAME")


def install(venv: Path, torch_version: str, torch_index: str) -> None:
    """A fresh .venv with torch==torch_version and attnbench's extras from the package indexes."""
    if shutil.which("nvidia-smi"):
        print(f"{SAY} (a GPU is present: to use it, install a CUDA torch for {sys.executable}, "
              "or pass PYTHON=, then make clean setup)")
    run([sys.executable, "-m", "venv", str(venv)])
    index = ["--extra-index-url", torch_index] if torch_index else []
    run([str(venv / "bin" / "pip"), "install", "-q", f"torch=={torch_version}", *index,
         "-e", ".[numba,dev,ray,history]"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", default=".venv", help="the venv to make (default .venv)")
    p.add_argument("--torch", default="2.13.0", help="the torch version installed when needed")
    p.add_argument("--torch-index", default="", help="an extra index to take torch from")
    args = p.parse_args(argv)
    version, sees_gpu = interpreter_torch()
    reusing, why = choose(version, sees_gpu, args.torch)
    if reusing:
        print(f"{SAY} {sys.executable} {why}: the venv reuses its packages")
        reuse(Path(args.venv))
    else:
        print(f"{SAY} {sys.executable} {why}: installing torch {args.torch} into a new venv")
        install(Path(args.venv), args.torch, args.torch_index)


if __name__ == "__main__":
    main()
