"""The matmul roof: measured on this CPU, and the fraction of it put into records."""

from __future__ import annotations

import pytest

from attnbench.measure.roof import measure_roofs, roof_fraction


def test_cpu_roof_is_measured_per_dtype():
    roofs = measure_roofs("cpu", ["float32", "float64"], seconds=0.05)
    assert set(roofs) == {"float32", "float64"}
    for value in roofs.values():
        assert value is not None and 1e8 < value < 1e14  # a real CPU: 0.1 GFLOP/s .. 100 TFLOP/s


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
