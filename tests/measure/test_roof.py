"""The roofs (matmul and copy bandwidth): measured on this CPU, and the fractions of them and
the roofline put into records."""

from __future__ import annotations

import pytest

from attnbench.measure import roof
from attnbench.measure.roof import (
    BANDWIDTH,
    CORES,
    bandwidth_roof,
    measure_bandwidth,
    measure_roofs,
    roof_fraction,
)


def test_cpu_roof_is_measured_per_dtype():
    roofs = measure_roofs("cpu", ["float32", "float64"], seconds=0.05)
    assert set(roofs) == {"float32", "float64", BANDWIDTH, CORES}
    for dtype in ("float32", "float64"):
        assert 1e8 < roofs[dtype] < 1e14  # a real CPU: 0.1 GFLOP/s .. 100 TFLOP/s
    assert 1e8 < bandwidth_roof(roofs) < 1e13  # 0.1 GB/s .. 10 TB/s


def test_the_roofs_compared_at_the_end_of_a_run_are_the_matmul_roofs_alone():
    """The end roof and those between cases: no copy bandwidth and no cores' rate (unused)."""
    roofs = measure_roofs("cpu", ["float32"], seconds=0.05, matmul_only=True)
    assert set(roofs) == {"float32"} and 1e8 < roofs["float32"] < 1e14


def test_a_later_cpu_roof_times_the_matmul_the_first_grew_to(monkeypatch):
    """The end roof of a run times the same n x n matmul as its start (one roof worker)."""
    asked: list[int] = []
    real = roof._cpu_matmul
    monkeypatch.setattr(roof, "_SIZE", {})
    monkeypatch.setattr(roof, "_cpu_matmul", lambda dtype, n: asked.append(n) or real(dtype, n))
    first = roof._cpu_roof("float32", 0.01)
    grown = asked[-1]
    assert asked[0] == 256 and grown == max(asked)
    asked.clear()
    second = roof._cpu_roof("float32", 0.01)
    assert asked == [grown] and first > 0 and second > 0  # rates: the test above


@pytest.mark.alone  # two readings of the hardware compared
def test_the_copy_bandwidth_counts_read_and_write_of_a_buffer_past_the_caches():
    got = measure_bandwidth("cpu", seconds=0.05)
    assert got["buffer_bytes"] >= 256 * 2**20  # larger than any L3 of this class of machine
    rate = got["bytes_per_s"]
    assert 1e8 < rate < 1e13
    # a second, independent reading of the same copy lands within a factor of the first
    # (both are the best of several copies: a busy core slows one, not both, by 3x or more)
    assert 0.2 < measure_bandwidth("cpu", seconds=0.05)["bytes_per_s"] / rate < 5


def _timed(device: str, dtype: str, gflops: float, intensity: float) -> dict:
    return {"device": device, "dtype": dtype, "gflops_per_s": gflops,
            "gbytes_per_s": gflops / intensity, "arithmetic_intensity": intensity}


def test_the_roofline_bounds_low_intensity_by_bandwidth_and_high_by_the_matmul_roof():
    roofs = {"cpu": {"float32": 200e9, BANDWIDTH: {"bytes_per_s": 20e9}}}  # ridge at 10 FLOP/B
    decode = _timed("cpu", "float32", gflops=5.0, intensity=0.5)  # 10 GB/s of 20
    roof_fraction(decode, roofs)
    assert decode["bound_by"] == "memory"
    assert decode["roofline_flops_per_s"] == pytest.approx(0.5 * 20e9)
    assert decode["roofline_fraction"] == pytest.approx(0.5)
    assert decode["bandwidth_fraction"] == pytest.approx(0.5)
    assert decode["roof_fraction"] == pytest.approx(5 / 200)  # the matmul one alone misleads
    prefill = _timed("cpu", "float32", gflops=150.0, intensity=100.0)
    roof_fraction(prefill, roofs)
    assert prefill["bound_by"] == "compute"
    assert prefill["roofline_flops_per_s"] == 200e9
    assert prefill["roofline_fraction"] == pytest.approx(0.75)
    no_copy = _timed("cpu", "float32", gflops=5.0, intensity=0.5)
    roof_fraction(no_copy, {"cpu": {"float32": 200e9, BANDWIDTH: {"bytes_per_s": None}}})
    assert "bound_by" not in no_copy and "roofline_fraction" not in no_copy
    assert no_copy["roof_fraction"] == pytest.approx(5 / 200)


def test_roof_fraction_uses_the_record_device_and_dtype():
    roofs = {"cpu": {"float32": 2.0e11, "float64": None}}
    rec = {"device": "cpu", "dtype": "float32", "gflops_per_s": 50.0}
    roof_fraction(rec, roofs)
    assert rec["roof_flops_per_s"] == 2.0e11
    assert rec["roof_fraction"] == pytest.approx(50.0e9 / 2.0e11)
    untimed = {"device": "cpu", "dtype": "float64", "gflops_per_s": 50.0}
    roof_fraction(untimed, roofs)  # no roof known: nothing is added
    assert "roof_fraction" not in untimed
    other = {"device": "cuda", "dtype": "float32"}
    roof_fraction(other, roofs)
    assert other == {"device": "cuda", "dtype": "float32"}


def test_a_roof_that_cannot_be_measured_says_why():
    from attnbench.measure.roof import UNMEASURED, unmeasured

    roofs = measure_roofs("cpu", ["float32", "no-such-dtype"], seconds=0.01)
    assert roofs["no-such-dtype"] is None and roofs["float32"] > 0
    assert "no-such-dtype" in roofs[UNMEASURED]["no-such-dtype"]
    stored = {"cpu": roofs, "cuda": {"bfloat16": None}}  # a roof worker that died: no reason
    assert unmeasured(stored) == {
        "cpu": {"no-such-dtype": roofs[UNMEASURED]["no-such-dtype"]},
        "cuda": {"bfloat16": "not measured (the roof worker failed)"}}
    rec = {"device": "cpu", "dtype": "no-such-dtype", "gflops_per_s": 1.0}
    roof_fraction(rec, stored)
    assert "roof_fraction" not in rec
