"""Mask functions a scenario names (key mask_mod): found, checked and evaluated as visibility.

A reference is "package.module:function" (imported) or "path/to/file.py:function" (loaded from
that file; a relative path is read against the scenario's folder and kept absolute), optionally
with a call of Python literals, "module:factory(128, seed=0)", whose result is the function.

The function is flex_attention's mask_mod written for NumPy: fn(b, h, q_idx, kv_idx) returns
booleans, True where the query sees the key. attnbench calls it with b the batch element (an
int), h = 0 (the mask must be the same for every head), q_idx int64 of shape (R, 1) and kv_idx
int64 of shape (1, seq_kv): a function of comparisons and arithmetic works on torch tensors
too. It narrows the case's other masks (causal, windows, lengths, documents): a key is visible
where both say so. The function runs in a child process of its own for attnbench's side (the
oracle, the checks: attnbench/mask_eval.py) and in the worker for the backend's inputs, never
in the process that makes verdicts; reports never run it (a record carries its picture, see
picture()).
"""

from __future__ import annotations

import ast
import base64
import functools
import importlib
import re
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from attnbench.errors import UsageError
from attnbench.pyfile import exec_file


class Case(Protocol):
    """What this module reads of an attnbench.case.Case (a lower layer: it cannot import it)."""

    batch: int
    seq_q: int
    seq_kv: int
    mask_mod: str | None


REFERENCE = re.compile(r"^(?P<target>[^:()]+):(?P<name>[A-Za-z_]\w*)(?:\((?P<args>.*)\))?$",
                       re.DOTALL)
CHUNK_ENTRIES = 2**22  # (row, key) pairs evaluated at once: 4 MiB of booleans
PICTURE_PIXELS = 48  # per side of the picture a record carries


class MaskModError(ValueError, UsageError):
    """A mask function that cannot be found, called, or returns something else than booleans
    (bad input: the CLI says so in one line, exit 2, even when it shows only mid-run)."""


def parse(ref: str) -> tuple[str, str, tuple[Any, ...], dict[str, Any]]:
    """(module or file, function name, literal args, literal kwargs) of a reference."""
    m = REFERENCE.match(ref.strip()) if isinstance(ref, str) else None
    if m is None:
        raise MaskModError(f"{ref!r} is not \"module:function\", \"file.py:function\" or "
                           "either with a call of literals, \"module:factory(8)\"")
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if m["args"] is not None and m["args"].strip():
        try:
            call = ast.parse(f"f({m['args']})", mode="eval").body
            assert isinstance(call, ast.Call)
            args = tuple(ast.literal_eval(a) for a in call.args)
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
        except (SyntaxError, ValueError, TypeError, AssertionError, RecursionError,
                MemoryError) as e:
            raise MaskModError(f"{ref!r}: the arguments must be Python literals "
                               f"({type(e).__name__})") from None
    return m["target"].strip(), m["name"], args, kwargs


def absolute(ref: str, folder: str | Path) -> str:
    """The reference with a relative file path made absolute against folder."""
    target, _, rest = ref.strip().partition(":")
    if not target.endswith(".py") or Path(target).is_absolute():
        return ref.strip()
    return f"{(Path(folder) / target).resolve()}:{rest}"


def short_name(ref: str) -> str:
    """What a case id calls the function: its name, and its arguments when it has any
    ('prefix_lm_8'), or a checksum of them when they are long or not plain."""
    _, name, args, kwargs = parse(ref)
    if not args and not kwargs:
        return name
    parts = [str(a) for a in args] + [f"{k}{v}" for k, v in sorted(kwargs.items())]
    text = "_".join(parts)
    if len(text) <= 24 and re.fullmatch(r"[A-Za-z0-9_.\-]*", text):
        return f"{name}_{text}"
    return f"{name}_{zlib.crc32(text.encode()):08x}"


@functools.lru_cache(maxsize=32)
def load(ref: str) -> Callable[..., Any]:
    """The mask function a reference names (the factory called when the reference calls it)."""
    target, name, args, kwargs = parse(ref)
    try:
        module = _module(target)
    except MaskModError:
        raise
    except Exception as e:  # the user's module raised while it was imported
        raise MaskModError(f"{ref!r}: importing {target} raised {type(e).__name__}: {e}") from None
    if not hasattr(module, name):
        raise MaskModError(f"{ref!r}: {target} has no {name!r}")
    fn = getattr(module, name)
    if _calls(ref):
        try:
            fn = fn(*args, **kwargs)
        except Exception as e:
            raise MaskModError(f"{ref!r}: calling {name} raised {type(e).__name__}: {e}") from None
    if not callable(fn):
        raise MaskModError(f"{ref!r}: {name} is a {type(fn).__name__}, not a function")
    return fn  # type: ignore[no-any-return]


def _calls(ref: str) -> bool:
    """Whether a reference calls its function (a factory), even with no arguments: "m:f()"."""
    m = REFERENCE.match(ref.strip())
    return bool(m and m["args"] is not None)


def _module(target: str) -> Any:
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise MaskModError(f"{target!r}: no such file")
        key = f"attnbench_mask_mod_{zlib.crc32(str(path.resolve()).encode()):08x}"
        if key in sys.modules:
            return sys.modules[key]
        return exec_file(key, path)
    try:
        return importlib.import_module(target)
    except ImportError as e:
        raise MaskModError(f"module {target!r} cannot be imported ({e})") from None


def evaluate_here(ref: str, b: int, rows: np.ndarray, seq_kv: int) -> np.ndarray:
    """Boolean (len(rows), seq_kv): the mask function on batch element b's rows, run in this
    process (attnbench/mask_eval.py decides which process that is)."""
    fn = load(ref)
    q_idx = np.asarray(rows, dtype=np.int64)[:, None]
    kv_idx = np.arange(seq_kv, dtype=np.int64)[None, :]
    try:
        got = np.asarray(fn(b, 0, q_idx, kv_idx))
    except Exception as e:
        raise MaskModError(f"mask_mod {ref!r} raised {type(e).__name__}: {e}") from None
    if got.dtype != np.bool_:
        raise MaskModError(f"mask_mod {ref!r} returned {got.dtype} values, not booleans")
    try:
        return np.broadcast_to(got, (len(rows), seq_kv))
    except ValueError:
        raise MaskModError(f"mask_mod {ref!r} returned shape {got.shape}, which does not "
                           f"broadcast to (rows, keys) = ({len(rows)}, {seq_kv})") from None


def row_chunks(case: Case) -> list[np.ndarray]:
    """The query rows in chunks of at most CHUNK_ENTRIES (row, key) pairs."""
    step = max(1, CHUNK_ENTRIES // max(1, case.seq_kv))
    return [np.arange(a, min(a + step, case.seq_q)) for a in range(0, case.seq_q, step)]


def picture(case: Case, visible: Callable[[np.ndarray], np.ndarray],
            most: int = PICTURE_PIXELS) -> np.ndarray:
    """(rows, cols) in [0, 1]: the fraction of visible pairs in each block of a batch element,
    visible(rows) giving its boolean rows; blocks split the rows and keys evenly."""
    rows = _edges(case.seq_q, most)
    cols = _edges(case.seq_kv, most)
    width = np.diff(cols).astype(np.float64)
    out = np.zeros((len(rows) - 1, len(cols) - 1))
    for chunk in row_chunks(case):
        vis = visible(chunk)
        per_col = np.add.reduceat(vis, cols[:-1], axis=1)  # visible keys per (row, block)
        which = np.searchsorted(rows, chunk, side="right") - 1
        np.add.at(out, which, per_col / width)
    return out / np.diff(rows)[:, None]


def _edges(n: int, most: int) -> np.ndarray:
    """Block boundaries splitting 0..n into at most `most` near-equal blocks."""
    return np.unique(np.linspace(0, n, min(n, most) + 1).round().astype(np.int64))


def encode(shades: np.ndarray) -> dict[str, Any]:
    """A picture as a record field: its size and its shades (0..255) in base64."""
    pixels = np.rint(np.clip(shades, 0.0, 1.0) * 255).astype(np.uint8)
    return {"rows": int(pixels.shape[0]), "cols": int(pixels.shape[1]),
            "shades": base64.b64encode(pixels.tobytes()).decode("ascii")}


def decode(field: Any) -> np.ndarray | None:
    """A record's picture back as (rows, cols) in [0, 1]; None when it is missing or damaged."""
    if not isinstance(field, dict):
        return None
    rows, cols, text = field.get("rows"), field.get("cols"), field.get("shades")
    if not (isinstance(rows, int) and isinstance(cols, int) and isinstance(text, str)):
        return None
    if not (0 < rows <= 4 * PICTURE_PIXELS and 0 < cols <= 4 * PICTURE_PIXELS):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    if len(raw) != rows * cols:
        return None
    return np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols) / 255.0
