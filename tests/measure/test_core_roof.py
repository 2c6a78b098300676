"""One core's matmul rate times the cores: measured on this CPU on one thread, the thread
settings left as they were."""

from __future__ import annotations

import torch

from attnbench.measure.ceiling import cpu_ceiling
from attnbench.measure.core_roof import CORE_N, measure_core_roof
from attnbench.measure.roof import core_roof, measure_roofs
from attnbench.measure.threads import available_cores


def test_the_cores_rate_is_one_threads_best_times_the_cores():
    got = measure_core_roof(0.05)
    assert got is not None and got["cores"] == available_cores()
    assert got["flops_per_s"] == got["per_core_flops_per_s"] * got["cores"]
    # a real core: above 0.1 GFLOP/s, and no core does more than the machine's ceiling
    assert 1e8 < got["per_core_flops_per_s"] < cpu_ceiling("float32", cores=1)
    assert str(CORE_N) in got["method"] and "one thread" in got["method"]


def test_the_threads_are_restored():
    torch.set_num_threads(2)
    try:
        measure_core_roof(0.01)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(available_cores())


def test_the_cpu_roofs_carry_it_and_core_roof_reads_it():
    roofs = measure_roofs("cpu", ["float32"], seconds=0.02)
    assert core_roof(roofs) == roofs["cores"]["flops_per_s"] > 0
    assert core_roof({}) is None and core_roof({"cores": {"flops_per_s": True}}) is None
    assert core_roof({"cores": {"flops_per_s": -1.0}}) is None
