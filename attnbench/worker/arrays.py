"""Arrays between a worker and its parent: outputs and gradients as .npy files, exact in any dtype.

A worker does not judge its own outputs (its process holds plugin code, which could change the
judgement): it writes each array it was asked for into the run's exchange folder and names the
file in its reply; the parent reads it back and verifies it. The values are written exactly:
float16, float32 and float64 as themselves, bfloat16 as its 16 raw bits (read back into float32,
which holds every bfloat16 value exactly). Files are read with allow_pickle=False, and a file
whose name, type, size or shape is not what the reply says is refused, never trusted.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}\.npy$")
STORED = {"float64": "<f8", "float32": "<f4", "float16": "<f2", "bfloat16": "<u2"}


class ArrayRefused(Exception):
    """An array the worker named cannot be read as it says (a sentence saying why)."""


def dtype_name(x: Any) -> str:
    """An array's dtype as a case spells it: 'float32', 'bfloat16' (torch's prefix dropped);
    an array's or tensor's own, read past a subclass that would say another."""
    if isinstance(x, np.ndarray):
        return str(np.ndarray.dtype.__get__(x))
    if _is_torch(x):
        torch = sys.modules["torch"]
        with _no_torch_function(torch):  # a subclass's __torch_function__ is not asked
            return str(torch.Tensor.dtype.__get__(x)).removeprefix("torch.")
    return str(getattr(x, "dtype", type(x).__name__)).removeprefix("torch.")


def _is_torch(x: Any) -> bool:
    """Whether x is a torch tensor (not an object that names a torch module as its own)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _no_torch_function(torch: Any) -> Any:
    """A context in which torch calls no __torch_function__ (no tensor subclass's, no
    TorchFunctionMode's) and no TorchDispatchMode: none a plugin left entered in its worker."""
    stack = contextlib.ExitStack()
    disable = getattr(torch._C, "DisableTorchFunction", None)
    if disable is not None:
        stack.enter_context(disable())
    dispatch = getattr(getattr(torch.utils, "_python_dispatch", None), "_disable_current_modes",
                       None)  # private to torch: used where it is there
    if dispatch is not None:
        stack.enter_context(dispatch())
    return stack


def to_host(x: Any) -> tuple[np.ndarray, str]:
    """The exact host copy of a NumPy array or a plain torch tensor, and the dtype it had.

    bfloat16 comes back as its uint16 bits (NumPy has no bfloat16). A torch.Tensor subclass is
    refused: its __torch_function__ or __torch_dispatch__ runs when it is copied, so it could
    compute its values then, after the timing, and hand back others to any other reader."""
    name = dtype_name(x)
    if _is_torch(x):
        import torch

        if type(x) not in (torch.Tensor, torch.nn.Parameter):  # Parameter: no overrides
            raise TypeError(f"a {type(x).__name__}, a subclass of torch.Tensor: only a plain "
                            "torch.Tensor is read (a subclass can compute its values as they "
                            "are copied out, after the timing)")
        with _no_torch_function(torch):
            t = x.detach()
            if t.dtype == torch.bfloat16:
                return t.contiguous().view(torch.int16).cpu().numpy().view(np.uint16), name
            return t.cpu().numpy(), name
    if isinstance(x, np.ndarray):
        return np.ndarray.view(x, np.ndarray), name  # the values, not a subclass's methods
    raise TypeError(f"a {type(x).__name__}, not an array")


@dataclass
class Shipped:
    """What a reply says of one array: its file, dtype (as the backend returned it), shape."""

    file: str
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "dtype": self.dtype, "shape": list(self.shape)}


def ship(x: Any, folder: Path, name: str) -> dict[str, Any]:
    """Write x to folder/name.npy (worker side); the reply's entry, or {"error": why}."""
    try:
        host, dtype = to_host(x)
    except Exception as exc:  # a list, None, a tensor that cannot be copied: said, not raised
        return {"error": f"{type(exc).__name__}: {exc}"[:300], "dtype": dtype_name(x)}
    if dtype not in STORED:
        return {"error": f"dtype {dtype} cannot be compared", "dtype": dtype,
                "shape": [int(n) for n in getattr(x, "shape", ())]}
    return write(host, dtype, folder, name)


def write(host: np.ndarray, dtype: str, folder: Path, name: str) -> dict[str, Any]:
    """Write a host array (bfloat16 as its bits) to folder/name.npy; its entry."""
    file = f"{name}.npy"
    with open(folder / file, "wb") as fh:
        np.save(fh, np.ascontiguousarray(host).astype(STORED[dtype], copy=False),
                allow_pickle=False)
    return Shipped(file, dtype, tuple(int(n) for n in host.shape)).to_dict()


def staged(x: np.ndarray, dtype: str) -> np.ndarray:
    """Float64 values exactly representable in dtype, as the host array `write` stores."""
    if dtype == "bfloat16":
        import torch

        return to_host(torch.from_numpy(x).to(torch.bfloat16))[0]
    return x.astype(STORED[dtype])


def staged_all(arrays: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """A case's inputs as its workers get them (each in the case dtype's storage, bfloat16 as
    its bits): converted once per case by the parent, loaded by each worker."""
    return {n: staged(a, dtype) for n, a in arrays.items()}


def receive_all(folder: Path, entries: Any, shapes: dict[str, tuple[int, ...]]
                ) -> dict[str, tuple[np.ndarray, str] | str]:
    """Every array a reply names, read into memory now (parent side, right after the reply,
    before any other worker runs): name -> (values, dtype), or the reason it was refused.
    shapes: the shape the case gives each array ("out", "dq", ...); a key "call.name"."""
    out: dict[str, tuple[np.ndarray, str] | str] = {}
    for key, entry in (entries.items() if isinstance(entries, dict) else []):
        try:
            shape = shapes.get(str(key).partition(".")[2])
            if shape is None:
                raise ArrayRefused(f"the reply names an array the case has no use for ({key!r})")
            out[str(key)] = receive(folder, entry, shape)
        except ArrayRefused as exc:
            out[str(key)] = str(exc)
    return out


def receive(folder: Path, entry: Any, expected: tuple[int, ...] | None = None
            ) -> tuple[np.ndarray, str]:
    """Read an array a worker shipped (parent side) into memory: values as float16/32/64, and
    the dtype the backend returned. ArrayRefused when the entry or the file is not what it
    says, or not of the expected shape (None: the shape the entry says)."""
    if not isinstance(entry, dict):
        raise ArrayRefused(f"the reply's array entry is a {type(entry).__name__}")
    if "error" in entry and entry.get("contract") is True:  # the result broke the plugin API
        raise ArrayRefused(str(entry["error"]))
    if "error" in entry:
        raise ArrayRefused(f"the output is not an array the harness can read: {entry['error']}")
    file, dtype, shape = entry.get("file"), entry.get("dtype"), entry.get("shape")
    if not isinstance(file, str) or not NAME.match(file) or dtype not in STORED:
        raise ArrayRefused(f"the reply names no valid array file ({file!r}, {dtype!r})")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ArrayRefused(f"the reply gives no valid shape ({shape!r})")
    data = _read(folder / file, np.dtype(STORED[dtype]), tuple(shape),
                 tuple(shape) if expected is None else expected)
    if dtype == "bfloat16":
        return (data.astype(np.uint32) << 16).view(np.float32), dtype
    return data, dtype


def _read(path: Path, dtype: np.dtype, claimed: tuple[int, ...], expected: tuple[int, ...]
          ) -> np.ndarray:
    """A shipped file's values, read without blocking or trusting its header: a regular file
    (never a FIFO, device or link), its header's dtype and shape those claimed and expected,
    its size exactly header + values. Only then is the data read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ArrayRefused(f"array file {path.name} cannot be opened: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ArrayRefused(f"array file {path.name} is not a regular file (a FIFO, device "
                               "or socket put in its place): refused, not read")
        header, fortran = _header(fh, path.name, dtype, claimed, expected)
        size = int(np.prod(expected, dtype=np.int64)) * dtype.itemsize
        if st.st_size != header + size:
            raise ArrayRefused(f"array file {path.name} is {st.st_size} bytes, not the "
                               f"{header + size} its header and shape make")
        count = size // dtype.itemsize
        data = np.fromfile(fh, dtype=dtype, count=count)
    if data.size != count:
        raise ArrayRefused(f"array file {path.name} changed while it was read")
    return data.reshape(expected, order="F" if fortran else "C")


def _header(fh: Any, name: str, dtype: np.dtype, claimed: tuple[int, ...],
            expected: tuple[int, ...]) -> tuple[int, bool]:
    """The .npy header's length and fortran order, checked against the reply and the case."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}[version]
        shape, fortran, got = read(fh)
    except (KeyError, OSError, ValueError) as exc:
        raise ArrayRefused(f"array file {name} has no valid .npy header: {exc}") from None
    if got != dtype or tuple(shape) != claimed:
        raise ArrayRefused(f"array file {name} holds {got} {list(shape)}, not the "
                           f"{dtype} {list(claimed)} the reply says")
    if tuple(shape) != tuple(expected):
        raise ArrayRefused(f"array file {name} has shape {tuple(shape)}, not the case's "
                           f"{tuple(expected)}: refused, not read")
    return fh.tell(), bool(fortran)
