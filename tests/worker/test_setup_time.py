"""Every record times the backend's prepare() (its set-up: masks, plans, packing) apart from its
calls: `prepare_ms`, beside first_call_ms and the timed median, in the record and the report."""

from __future__ import annotations

import importlib.util
import time

import pytest

from attnbench.case import Case
from attnbench.measure.timing import TimerConfig
from attnbench.plugin.registry import build_registry
from attnbench.run.execute import CaseData, Options, execute

# A set-up cost far above any call of these tiny cases: 0.5 s was once met by a first
# torch-naive fwd_bwd call under the parallel tests' load (520 ms), sleeping costs no CPU.
SETUP_S = 2.0


def slow_setup(name: str):
    """A built-in backend whose prepare() takes SETUP_S longer: a real set-up cost."""
    backend = build_registry([], autoload=False).get(name)
    prepare = backend.prepare

    def slow(inputs):
        time.sleep(SETUP_S)
        return prepare(inputs)

    backend.prepare = slow
    return backend


@pytest.mark.parametrize(("name", "mode"), [
    ("numpy-naive", "fwd"),
    pytest.param("torch-naive", "fwd_bwd", marks=pytest.mark.skipif(
        importlib.util.find_spec("torch") is None, reason="torch is not installed")),
])
def test_prepare_is_timed_apart_from_the_calls(name, mode):
    case = Case(1, 2, 2, 64, 64, 16, mode=mode)
    opts = Options(time_it=True, memory=False, timer=TimerConfig(budget_s=0.05))
    plain = build_registry([], autoload=False).get(name)
    warm = execute(plain, "t", case, lambda: CaseData(case, 0), opts)  # the library's first use
    rec = execute(slow_setup(name), "t", case, lambda: CaseData(case, 0), opts)
    assert warm["status"] == rec["status"] == "ok", rec.get("error") or rec.get("agreement")
    assert rec["prepare_ms"] >= SETUP_S * 1e3 > warm["prepare_ms"]
    assert rec["first_call_ms"] < SETUP_S * 1e3  # the set-up is not in the first call
    assert rec["timing"]["median_ms"] < SETUP_S * 1e3
