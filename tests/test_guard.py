"""The guard: plugin calls in the parent under a time limit, exceptions and overruns as data."""

from __future__ import annotations

import time

from attnbench.case import Case
from attnbench.plugin import guard
from attnbench.plugin.registry import build_registry
from attnbench.record import Status

CASE_64 = Case(1, 2, 2, 64, 64, 16)
CASE_32 = Case(1, 2, 2, 32, 32, 16)


def test_a_value_an_exception_and_an_overrun():
    assert guard.call("f()", lambda: 3).value == 3
    raised = guard.call("f()", lambda: {}["missing"])
    assert raised.failure == "f() raised KeyError: 'missing'" and isinstance(raised.error, KeyError)
    exits = guard.call("f()", lambda: exit(3))  # SystemExit from a plugin is data too
    assert exits.failure == "f() raised SystemExit: 3"
    t0 = time.perf_counter()
    slow = guard.call("f()", time.sleep, 30, limit=0.2)
    assert slow.failure == "f() did not return within 0.2 s"
    assert time.perf_counter() - t0 < 5


def test_a_backend_that_overran_is_not_called_again(plugin_path):
    reg = build_registry([plugin_path("parent_calls.py")], autoload=False)
    b = reg.get("test-unsupported-sleeps")
    assert guard.parent_record(b, "s", CASE_32, limit=5) is None  # fine on other lengths
    rec = guard.parent_record(b, "s", CASE_64, limit=0.3)
    assert rec["status"] == Status.ERROR and rec["backend"] == b.name
    assert rec["error"] == "test-unsupported-sleeps: unsupported() did not return within 0.3 s"
    t0 = time.perf_counter()
    again = guard.parent_record(b, "s", CASE_32, limit=5)
    assert time.perf_counter() - t0 < 1
    assert again["error"].endswith("not called: unsupported() did not return within 0.3 s")


def test_raising_methods_become_records_and_reasons(plugin_path):
    reg = build_registry([plugin_path("parent_calls.py")], autoload=False)
    raises = reg.get("test-unsupported-raises")
    rec = guard.parent_record(raises, "s", CASE_64)
    assert rec["status"] == Status.ERROR
    assert rec["error"] == ("test-unsupported-raises: unsupported() raised ValueError: "
                            "unsupported() fails on purpose")
    broken = reg.get("test-availability-raises")
    assert guard.availability(broken) == [
        "availability() raised KeyError: 'availability() fails on purpose'"]
    assert guard.plannable(broken, ["cpu"])  # in the plan, so that its cases show as errors
    assert not guard.plannable(reg.get("xformers"), ["cpu"])


def test_a_method_returning_no_list_is_a_failure():
    out = guard.reasons("unsupported()", lambda: "not a list")
    assert out.failure == "unsupported() returned str, not a list of strings"
