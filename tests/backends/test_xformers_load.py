"""Making xformers loadable (backends/xformers_load.py), with real files and libraries: a
flash_attn that is only flash-attn-4's namespace package hidden while xformers.ops imports, and
libcudart.so.12 found where an nvidia-cuda-runtime-cu12 wheel puts it on sys.path."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from attnbench.backends import xformers_load


@pytest.fixture
def clean_flash_attn(monkeypatch):
    """No flash_attn module loaded before or after the test."""
    for name in [n for n in sys.modules if n == "flash_attn" or n.startswith("flash_attn.")]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [n for n in sys.modules if n == "flash_attn" or n.startswith("flash_attn.")]:
        del sys.modules[name]


def package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_flash_attn_4_namespace_is_hidden_then_back(tmp_path, monkeypatch, clean_flash_attn):
    package(tmp_path, {"flash_attn/cute/__init__.py": "WHO = 'fa4'\n"})  # no flash_attn/__init__
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert importlib.util.find_spec("flash_attn") is not None
    with xformers_load.flash_attn_hidden():
        assert importlib.util.find_spec("flash_attn") is None  # what xformers' flash.py asks
        with pytest.raises(ImportError):
            importlib.import_module("flash_attn.flash_attn_interface")
    assert importlib.import_module("flash_attn.cute").WHO == "fa4"  # flash-attn-4 still works
    with xformers_load.flash_attn_hidden():  # also once it is imported
        assert importlib.util.find_spec("flash_attn") is None
    assert sys.modules["flash_attn.cute"].WHO == "fa4" and "flash_attn" in sys.modules


def test_flash_attention_2_is_left_alone(tmp_path, monkeypatch, clean_flash_attn):
    package(tmp_path, {"flash_attn/__init__.py": "__version__ = '2.8.3'\n",
                       "flash_attn/flash_attn_interface.py": "FA2 = True\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with xformers_load.flash_attn_hidden():
        assert importlib.import_module("flash_attn.flash_attn_interface").FA2


def test_cuda12_runtime_from_a_wheel_folder_on_sys_path(tmp_path, monkeypatch):
    """A stand-in shared library (the C maths library, copied under the name the wheel uses)
    at nvidia/cuda_runtime/lib/libcudart.so.12 in a sys.path folder is found and loaded; a
    file there that is no library is passed over."""
    libm = next((p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6",
                             "/lib64/libm.so.6") if Path(p).is_file()), None)
    if libm is None:
        pytest.skip("no libm.so.6 to stand in for a library here")
    import ctypes

    try:
        ctypes.CDLL("libcudart.so.12")
        pytest.skip("this machine's loader finds a libcudart.so.12 itself")
    except OSError:
        pass
    broken, good = tmp_path / "broken", tmp_path / "good"
    package(broken, {"nvidia/cuda_runtime/lib/libcudart.so.12": "not a library"})
    (good / "nvidia/cuda_runtime/lib").mkdir(parents=True)
    shutil.copy(libm, good / "nvidia/cuda_runtime/lib/libcudart.so.12")
    monkeypatch.setattr(sys, "path", [str(broken), *sys.path])
    xformers_load.cuda12_runtime.cache_clear()
    assert xformers_load.cuda12_runtime() is None
    monkeypatch.setattr(sys, "path", [str(broken), str(good), *sys.path])
    xformers_load.cuda12_runtime.cache_clear()
    try:
        assert xformers_load.cuda12_runtime() == str(good / "nvidia/cuda_runtime/lib/"
                                                            "libcudart.so.12")
    finally:
        xformers_load.cuda12_runtime.cache_clear()


def test_one_line_joins_and_cuts():
    assert xformers_load.one_line("a\n  b\n\nc") == "a / b / c"
    cut = xformers_load.one_line("x" * 50, limit=10)
    assert cut == "x" * 9 + "…"
