"""The pytest plugin (entry point `pytest11`): `pytest --attnbench-backend NAME|FILE` turns each
(backend, case) of a scenario into a test, with no plugin-specific code.

    pytest --attnbench-backend my_kernel.py [--attnbench-scenario smoke] [--attnbench-dtype D]

A backend is a name (a built-in or an installed plugin's) or a plugin file. Each test runs the
backend's prepare() and call in the pytest process on the case's seeded inputs and judges the
output as `attnbench check` does; a case the backend does not support is a skip with its
reason. Without the option the plugin adds nothing.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

OPTION = "--attnbench-backend"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("attnbench", "attention backends against attnbench's oracle")
    group.addoption(OPTION, action="append", default=[], metavar="NAME|FILE",
                    help="test this backend (a name, or a plugin .py file) on every case of "
                         "the scenarios (repeatable)")
    group.addoption("--attnbench-scenario", action="append", default=[], metavar="S",
                    help="scenario name or .toml path (repeatable; default smoke)")
    group.addoption("--attnbench-dtype", action="append", default=[], metavar="D",
                    help="only the cases of this dtype (repeatable)")
    group.addoption("--attnbench-device", default="cpu", metavar="DEVICE",
                    help="device of the cases (default cpu)")


class BackendCase(pytest.Item):
    """One backend on one case: skipped where unsupported, else judged against the oracle."""

    def __init__(self, *, backend: Any, case: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend, self.case = backend, case

    def runtest(self) -> None:
        from attnbench.plugin.backend import Unsupported
        from attnbench.testing import assert_matches_oracle

        reasons = self.backend.unsupported(self.case)
        if reasons:
            pytest.skip("; ".join(reasons))

        def attention(inputs: Any) -> Any:
            try:
                return self.backend.prepare(inputs)()
            except Unsupported as exc:
                pytest.skip(str(exc))

        assert_matches_oracle(attention, self.case, self.backend.framework)

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, AssertionError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.name


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    specs = config.getoption(OPTION)
    if not specs:
        return
    from attnbench.errors import ScenarioError, UsageError
    from attnbench.testing import cases

    scenarios = config.getoption("--attnbench-scenario") or ["smoke"]
    dtypes = config.getoption("--attnbench-dtype") or None
    try:
        backends = [_backend(spec) for spec in specs]
        params = cases(*scenarios, dtype=dtypes, device=config.getoption("--attnbench-device"))
    except (ScenarioError, UsageError) as exc:
        raise pytest.UsageError(f"attnbench: {exc}") from None
    for backend in backends:
        for p in params:
            (case,) = p.values
            items.append(BackendCase.from_parent(session, name=f"{backend.name}[{case.id}]",
                                                 backend=backend, case=case))


def _backend(spec: str) -> Any:
    """The backend a spec names: a registered name, or the one backend of a plugin file (the
    file's backends by name when it has several: NAME is then file.py::name)."""
    from attnbench.errors import UsageError
    from attnbench.plugin.registry import build_registry

    path, _, name = spec.partition("::")
    if path.endswith(".py"):
        reg = build_registry([path], autoload=False)
        for plugin, reason in reg.failures:
            if plugin == path or plugin == os.path.abspath(path):
                raise UsageError(f"{spec}: the plugin did not load: {reason}")
        mine = [b for n, b in reg.backends.items() if reg.origin_of(n).get("kind") != "builtin"]
        if name:
            mine = [b for b in mine if b.name == name]
        if len(mine) != 1:
            names = ", ".join(b.name for b in mine) or "none"
            raise UsageError(f"{spec}: a plugin file with exactly one backend is needed, or "
                             f"FILE.py::NAME (it has {names})")
        return mine[0]
    reg = build_registry([])
    if spec not in reg.backends:
        raise UsageError(f"unknown backend {spec!r} (known: {', '.join(sorted(reg.backends))})")
    return reg.backends[spec]
