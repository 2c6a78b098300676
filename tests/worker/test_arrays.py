"""The parent's reading of shipped arrays (worker/arrays.py): files refused without blocking or
reading them when they are not the regular .npy of the case's shape; what a worker ships."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from attnbench.worker import arrays, exchange

SHAPE = (1, 2, 4, 3)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return exchange.task_dir(tmp_path)


def _entry(folder: Path, x: np.ndarray, dtype: str = "float32") -> dict:
    return arrays.write(x, dtype, folder, "t1-first.out")


def test_a_regular_file_of_the_case_shape_is_read_in_every_dtype(folder: Path):
    x = np.arange(24, dtype=np.float32).reshape(SHAPE) / 7
    got = arrays.receive_all(folder, {"first.out": _entry(folder, x)}, {"out": SHAPE})
    assert got["first.out"][1] == "float32" and np.array_equal(got["first.out"][0], x)
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)  # bfloat16 as its bits
    values, dtype = arrays.receive(folder, _entry(folder, bits, "bfloat16"), SHAPE)
    assert dtype == "bfloat16" and np.array_equal(values.view(np.uint32) >> 16, bits)
    fortran = np.asfortranarray(x)
    np.save(folder / "t1-first.out.npy", fortran)
    entry = {"file": "t1-first.out.npy", "dtype": "float32", "shape": list(SHAPE)}
    assert np.array_equal(arrays.receive(folder, entry, SHAPE)[0], x)


def test_a_fifo_or_a_link_is_refused_without_blocking(folder: Path, tmp_path: Path):
    entry = _entry(folder, np.zeros(SHAPE, np.float32))
    path = folder / entry["file"]
    path.unlink()
    os.mkfifo(path)  # no writer: a blocking open would never return
    with pytest.raises(arrays.ArrayRefused, match="not a regular file"):
        arrays.receive(folder, entry, SHAPE)
    path.unlink()
    np.save(tmp_path / "elsewhere.npy", np.zeros(SHAPE, np.float32))
    path.symlink_to(tmp_path / "elsewhere.npy")
    with pytest.raises(arrays.ArrayRefused, match="cannot be opened"):
        arrays.receive(folder, entry, SHAPE)


def test_a_huge_sparse_header_is_refused_before_any_read(folder: Path):
    huge = (2**18, 2**20)
    path = folder / "t1-first.out.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": huge})
        fh.truncate(fh.tell() + 2**40)  # 1 TiB, sparse
    entry = {"file": path.name, "dtype": "float32", "shape": list(huge)}
    got = arrays.receive_all(folder, {"first.out": entry}, {"out": SHAPE})
    assert "not the case's (1, 2, 4, 3): refused, not read" in got["first.out"]


def test_a_file_whose_size_is_not_its_header_and_shape_is_refused(folder: Path):
    entry = _entry(folder, np.zeros(SHAPE, np.float32))
    with open(folder / entry["file"], "ab") as fh:
        fh.write(b"\0" * 4)
    with pytest.raises(arrays.ArrayRefused, match="bytes, not the"):
        arrays.receive(folder, entry, SHAPE)
    with open(folder / entry["file"], "r+b") as fh:
        fh.truncate(os.path.getsize(folder / entry["file"]) - 12)
    with pytest.raises(arrays.ArrayRefused, match="bytes, not the"):
        arrays.receive(folder, entry, SHAPE)


def test_an_array_the_case_has_no_use_for_is_refused(folder: Path):
    entry = _entry(folder, np.zeros(SHAPE, np.float32))
    got = arrays.receive_all(folder, {"first.extra": entry}, {"out": SHAPE})
    assert "has no use for" in got["first.extra"]


def test_an_exception_judging_one_answer_fails_that_record_alone(tmp_path: Path, registry,
                                                                  monkeypatch):
    """Whatever judging one backend's arrays raises (MemoryError here) becomes that backend's
    `error` record; TaskRunner.round never loses the round to a traceback."""
    from attnbench.case import Case
    from attnbench.run import tasks
    from attnbench.verify.casedata import CaseData

    def judge(data, framework, shipped):
        raise MemoryError("Unable to allocate 1.00 TiB")

    monkeypatch.setattr(tasks, "judge", judge)
    runner = tasks.TaskRunner({}, tmp_path, 10.0)
    try:
        case = Case(batch=1, heads_q=2, heads_kv=2, seq_q=4, seq_kv=4, head_dim=3)
        answer = tasks.Result({}, {"pid": 1}, {"first.out": (np.zeros(SHAPE), "float32")})
        rec = runner._verdict(registry.get("numpy-naive"), answer, "s", case,
                              CaseData(case, 0))
    finally:
        runner.close()
    assert rec["status"] == "error" and rec["worker"] == {"pid": 1}
    assert rec["error"] == ("its answer could not be judged: MemoryError: Unable to allocate "
                            "1.00 TiB")


def test_an_object_naming_torch_as_its_module_is_no_tensor(folder: Path):
    """Only a real tensor is one: an object that says it comes from torch (and would compute
    its values only when copied out, after the timing) is refused, not shipped."""
    torch = pytest.importorskip("torch")

    class Lazy:
        __module__ = "torch.lazy"
        dtype, shape = "torch.float32", (2,)

        def detach(self):
            return torch.ones(2)

    entry = arrays.ship(Lazy(), folder, "out")
    assert "error" in entry and "not an array" in entry["error"]
    assert arrays.ship(torch.ones(2), folder, "real") == {"file": "real.npy", "dtype": "float32",
                                                          "shape": [2]}


def test_a_subclass_saying_another_dtype_is_shipped_as_what_it_holds(folder: Path):
    """An ndarray (or tensor) subclass whose `dtype` names a narrower type than it holds is
    shipped with the dtype it holds, so the parent refuses it as the wrong dtype."""

    class Lies(np.ndarray):
        @property
        def dtype(self):
            return np.dtype("float32")

    lying = np.arange(3.0).view(Lies)
    assert lying.dtype == np.float32 and arrays.ship(lying, folder, "o")["dtype"] == "float64"
    torch = pytest.importorskip("torch")

    class LiesToo(torch.Tensor):
        @property
        def dtype(self):
            return torch.float32

    tensor = torch.zeros(2, dtype=torch.float64).as_subclass(LiesToo)
    entry = arrays.ship(tensor, folder, "t")  # refused (a subclass), its dtype said as held
    assert entry["dtype"] == "float64" and "a subclass of torch.Tensor" in entry["error"]


def test_a_tensor_subclass_is_refused_its_torch_function_unasked(folder: Path):
    """A subclass whose __torch_function__ computes the values when `detach` is called (a copy
    out, after the timing) or says another dtype: refused, and its dtype read as held."""
    torch = pytest.importorskip("torch")
    asked: list[str] = []

    class Lazy(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            asked.append(getattr(func, "__name__", str(func)))
            if getattr(func, "__name__", "") == "detach":
                return torch.ones(2)
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **(kwargs or {}))

    lazy = torch.zeros(2, dtype=torch.float64).as_subclass(Lazy)
    asked.clear()
    entry = arrays.ship(lazy, folder, "lazy")
    assert "a subclass of torch.Tensor" in entry["error"] and entry["dtype"] == "float64"
    assert asked == [] and not (folder / "lazy.npy").exists()


def test_a_parameter_is_read_like_a_plain_tensor(folder: Path):
    """nn.Parameter overrides no torch function: a backend returning one is not refused."""
    torch = pytest.importorskip("torch")
    entry = arrays.ship(torch.nn.Parameter(torch.ones(2, 3)), folder, "p")
    assert entry == {"file": "p.npy", "dtype": "float32", "shape": [2, 3]}
