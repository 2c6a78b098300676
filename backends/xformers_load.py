"""Making xformers run where its wheel was built for another CUDA, and saying why it cannot.

xformers 0.0.35's _C.so needs libcudart.so.12 (built for torch 2.10 + CUDA 12.8, through torch's
stable C ABI, so it loads in torch 2.11); without it xformers refuses every CUDA operator. A
`flash_attn` that is only flash-attn-4's namespace package breaks `import xformers.ops`.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from attnbench.plugin.backend import import_failure

MAX_REASON = 1500  # characters of xformers' own explanation kept in a reason
CUDART12 = ("nvidia", "cuda_runtime", "lib", "libcudart.so.12")  # nvidia-cuda-runtime-cu12


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """A multi-line message on one line (its lines joined by ' / '), cut to limit characters."""
    text = " / ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return text if len(text) <= limit else text[:limit - 1] + "…"


@cache
def cuda12_runtime() -> str | None:
    """Make libcudart.so.12 loadable before xformers' _C.so asks for it (xformers 0.0.35 was
    built against CUDA 12.8; a torch built for CUDA 13 brings only libcudart.so.13): 'system'
    where the loader finds it, else the path of the one an nvidia-cuda-runtime-cu12 wheel put
    on sys.path (loaded here, RTLD_GLOBAL, so that _C.so's dependency resolves to it), else
    None. docs/gpu.md says how to bring the wheel."""
    try:
        ctypes.CDLL("libcudart.so.12", mode=ctypes.RTLD_GLOBAL)
        return "system"
    except OSError:
        pass
    for entry in sys.path:
        path = Path(entry or ".", *CUDART12)
        if path.is_file():
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                return str(path)
            except OSError:
                continue
    return None


@contextmanager
def flash_attn_hidden() -> Iterator[None]:
    """While xformers.ops imports: hide a `flash_attn` that is not FlashAttention-2.

    xformers imports flash_attn.flash_attn_interface whenever importlib finds `flash_attn`;
    flash-attn-4 alone installs flash_attn/cute as a namespace package, so that import fails
    and xformers.ops with it. Hidden (sys.modules entry None: find_spec says absent), xformers
    uses PyTorch's own flash kernels, as it does without flash-attn; restored afterwards."""
    if (importlib.util.find_spec("flash_attn") is None
            or importlib.util.find_spec("flash_attn.flash_attn_interface") is not None):
        yield
        return
    missing = object()
    saved = sys.modules.get("flash_attn", missing)
    sys.modules["flash_attn"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if saved is missing:
            sys.modules.pop("flash_attn", None)
        else:
            sys.modules["flash_attn"] = saved  # type: ignore[assignment]


def chain(exc: BaseException, depth: int = 6) -> list[BaseException]:
    """exc and the exceptions it was raised from (its cause, or the one it interrupted)."""
    out = [exc]
    while len(out) < depth and (nxt := out[-1].__cause__ or out[-1].__context__) is not None:
        out.append(nxt)
    return out


@cache
def xformers_failure() -> str | None:
    """Why xformers cannot run here (its C++/CUDA library not loaded, xformers.ops not
    importable), with xformers' whole explanation on one line; None when it can."""
    cuda12_runtime()
    failure = import_failure("xformers")
    if failure:
        return failure
    lib = sys.modules.get("xformers._cpp_lib") or importlib.import_module("xformers._cpp_lib")
    exc = getattr(lib, "_cpp_library_load_exception", None)
    if exc is not None:  # then xformers refuses every CUDA operator
        return one_line("xformers' C++/CUDA library (_C.so) did not load: "
                        + "; ".join(str(e) for e in reversed(chain(exc))))
    try:
        with flash_attn_hidden():
            importlib.import_module("xformers.ops")
    except Exception as exc:  # any failure of xformers.ops is the reason
        return one_line(f"xformers.ops not importable: {type(exc).__name__}: {exc}")
    return None
