"""The guard: plugin calls under a time limit (catalog, observers); exceptions, overruns as data."""

from __future__ import annotations

import time

from attnbench.plugin import guard
from attnbench.plugin.catalog import from_registry
from attnbench.plugin.registry import build_registry


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
    b = reg.get("test-availability-sleeps")
    out = guard.reasons("availability()", b.availability, limit=0.3, owner=b)
    assert out.failure == "availability() did not return within 0.3 s"
    t0 = time.perf_counter()
    again = guard.reasons("availability()", b.availability, limit=5, owner=b)
    assert time.perf_counter() - t0 < 1
    assert again.failure.endswith("not called: availability() did not return within 0.3 s")


def test_raising_methods_become_reasons_and_a_broken_backend_is_planned(plugin_path,
                                                                       monkeypatch):
    monkeypatch.setenv(guard.LIMIT_ENV, "1")  # its test-availability-sleeps never returns
    reg = build_registry([plugin_path("parent_calls.py")], autoload=False)
    broken = reg.get("test-availability-raises")
    assert guard.availability(broken) == [
        "availability() raised KeyError: 'availability() fails on purpose'"]
    catalog = from_registry(reg)  # what the catalog process describes
    info = catalog.get("test-availability-raises")
    assert info.broken and info.availability == (
        "availability() raised KeyError: 'availability() fails on purpose'",)
    assert catalog.plannable(info, ["cpu"])  # in the plan, so that its cases show as errors
    assert not catalog.plannable(catalog.get("xformers"), ["cpu"])


def test_a_method_returning_no_list_is_a_failure():
    out = guard.reasons("unsupported()", lambda: "not a list")
    assert out.failure == "unsupported() returned str, not a list of strings"
