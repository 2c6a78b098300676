"""The impossible-throughput rule: above 2 x the most the device was measured to do, a record
fails; the most is the matmul roof or, where higher, the cores' rate (a busy machine's roof)."""

from __future__ import annotations

from attnbench.run.outcome import judge_throughput


def _record(gflops: float) -> dict:
    return {"device": "cpu", "dtype": "float32", "status": "ok", "gflops_per_s": gflops}


def test_above_twice_the_roof_is_an_error_that_says_why():
    rec = _record(500.0)
    judge_throughput(rec, {"cpu": {"float32": 200e9}})
    assert rec["status"] == "error" and "impossible_throughput" in rec["flags"]
    assert "2.5 x the most the device was measured to do (200 GFLOP/s" in rec["error"]
    below = _record(399.0)
    judge_throughput(below, {"cpu": {"float32": 200e9}})
    assert below["status"] == "ok" and "flags" not in below


def test_a_roof_measured_on_a_busy_machine_does_not_fail_real_work():
    """Measured here with six torch processes running matmuls: the roof 0.3-5 GFLOP/s, one
    thread 102 GFLOP/s; a tiny case at 15 GFLOP/s is real work."""
    roofs = {"cpu": {"float32": 0.6e9, "cores": {"flops_per_s": 2 * 102e9}}}
    rec = _record(15.0)
    judge_throughput(rec, roofs)
    assert rec["status"] == "ok" and "flags" not in rec
    faked = _record(1e6)
    judge_throughput(faked, roofs)
    assert faked["status"] == "error"
    assert "its cores times one core's matmul rate, above its matmul roof of 0.6" in faked["error"]


def test_the_cores_rate_alone_still_judges_and_nothing_measured_judges_nothing():
    """No matmul roof in the dtype (none measurable): the cores' rate is still a limit."""
    rec = _record(1e6)
    judge_throughput(rec, {"cpu": {"float32": None, "cores": {"flops_per_s": 1e9}}})
    assert rec["status"] == "error" and "its cores times one core's matmul rate)" in rec["error"]
    unjudged = _record(1e6)
    judge_throughput(unjudged, {"cpu": {"float32": None}})
    assert unjudged["status"] == "ok"
