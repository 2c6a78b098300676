"""Plugin loading: files, module names, entry points, failures, clashes, autoload switch."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from attnbench.case import Case
from attnbench.errors import UsageError
from attnbench.plugin.registry import BUILTIN_MODULES, build_registry
from attnbench.run.execute import CaseData, Options, execute

PLUGIN_SOURCE = '''
"""A tiny plugin written by a test: {name} wraps the numpy-naive computation."""

from attnbench import hookimpl
from attnbench.backends.numpy_naive import NumpyNaive


class Mine(NumpyNaive):
    name = "{name}"


@hookimpl
def attnbench_backends():
    return [Mine()]
'''


def write_module(folder: Path, module: str, backend: str) -> Path:
    path = folder / f"{module}.py"
    path.write_text(PLUGIN_SOURCE.format(name=backend))
    return path


def make_distribution(root: Path, backend: str = "from-entry-point") -> None:
    """A distribution `mypkg` on a sys.path folder, declaring an `attnbench` entry point."""
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text(PLUGIN_SOURCE.format(name=backend))
    info = root / "mypkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[attnbench]\nmine = mypkg\n")


def runs_ok(reg, name: str) -> bool:
    case = Case(1, 2, 2, 5, 7, 4, mask="causal")
    opts = Options(time_it=False, memory=False)
    rec = execute(reg.get(name), "t", case, lambda: CaseData(case, 0), opts)
    return rec["status"] == "ok"


def test_builtins_register_through_the_hook(registry):
    origins = set(registry.origins.values())
    assert origins <= set(BUILTIN_MODULES)
    assert {"numpy-naive", "torch-sdpa", "torch-sdpa-math"} <= set(registry.backends)


def test_plugin_from_file(plugin_path):
    spec = plugin_path("wrong_scale.py")
    reg = build_registry([spec], autoload=False)
    assert reg.origins["wrong-scale"] == spec
    assert not any(spec in name for name, _ in reg.failures)


def test_plugin_from_module_name(tmp_path, monkeypatch):
    write_module(tmp_path, "attnbench_test_modplugin", "from-module")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = build_registry(["attnbench_test_modplugin"], autoload=False)
    assert reg.origins["from-module"] == "attnbench_test_modplugin"
    assert runs_ok(reg, "from-module")


def test_cli_module_plugin_via_pythonpath_and_a_broken_plugin(cli, plugin_path, tmp_path):
    """`list --plugin MODULE --plugin BROKEN.py`: the module's backend is listed, the broken
    plugin is reported by name with its reason, and the built-ins are still there."""
    write_module(tmp_path, "attnbench_test_clipplugin", "from-pythonpath")
    proc = cli("list", "--plugin", "attnbench_test_clipplugin",
               "--plugin", plugin_path("raises_on_import.py"), env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "from-pythonpath" in proc.stdout and "numpy-naive" in proc.stdout
    assert "raises_on_import.py" in proc.stdout and "broken on purpose" in proc.stdout


def test_unknown_plugin_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no_such_plugin_module"):
        build_registry(["no_such_plugin_module"], autoload=False)
    with pytest.raises(UsageError, match="no such file"):
        build_registry([str(tmp_path / "missing.py")], autoload=False)


@pytest.fixture
def distribution(tmp_path, monkeypatch):
    """A fresh `mypkg` distribution on sys.path (a module of that name from before forgotten)."""
    make_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mypkg", raising=False)
    return tmp_path


def test_entry_point_is_found(distribution):
    reg = build_registry(autoload=True)
    assert "from-entry-point" in reg.backends
    assert "mine" in reg.origins["from-entry-point"]
    assert runs_ok(reg, "from-entry-point")


@pytest.mark.parametrize("value,found", [("1", False), ("0", True), ("", True)])
def test_autoload_switch(distribution, monkeypatch, value: str, found: bool):
    monkeypatch.setenv("ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD", value)
    assert ("from-entry-point" in build_registry().backends) is found


def test_plugin_raising_on_import_is_reported(plugin_path):
    spec = plugin_path("raises_on_import.py")
    reg = build_registry([spec, plugin_path("wrong_scale.py")], autoload=False)
    reasons = dict(reg.failures)
    assert spec in reasons
    assert "RuntimeError" in reasons[spec] and "broken on purpose" in reasons[spec]
    assert "wrong-scale" in reg.backends and runs_ok(reg, "numpy-naive")


def test_two_backends_with_one_name(plugin_path):
    spec = plugin_path("duplicate_name.py")
    with pytest.raises(UsageError) as info:
        build_registry([spec], autoload=False)
    msg = str(info.value)
    assert "numpy-naive" in msg and spec in msg and "attnbench.backends.numpy_naive" in msg


def test_duplicate_name_in_cli_exits_2(cli, plugin_path):
    proc = cli("list", "--plugin", plugin_path("duplicate_name.py"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "numpy-naive" in lines[0] and "duplicate_name.py" in lines[0]


def test_unknown_hook_is_reported(plugin_path):
    spec = plugin_path("unknown_hook.py")
    reg = build_registry([spec], autoload=False)
    reasons = dict(reg.failures)
    assert spec in reasons and "attnbench_no_such_hook" in reasons[spec]
    assert "numpy-naive" in reg.backends


def test_loading_a_file_twice_is_harmless(plugin_path):
    spec = plugin_path("wrong_scale.py")
    first = build_registry([spec], autoload=False)
    second = build_registry([spec, spec], autoload=False)
    assert first.origins["wrong-scale"] == second.origins["wrong-scale"] == spec


def test_hook_returning_a_non_backend_is_a_usage_error(tmp_path):
    path = tmp_path / "bad_return.py"
    path.write_text(textwrap.dedent('''
        """Returns something that is not a Backend."""
        from attnbench import hookimpl

        @hookimpl
        def attnbench_backends():
            return ["not a backend"]
    '''))
    with pytest.raises(UsageError, match="returned 'not a backend', not an attnbench.Backend"):
        build_registry([str(path)], autoload=False)


DEFECT_MESSAGES = {
    "name-type": "backend name 42 is not 1-64 characters",
    "name-chars": "backend name 'bad name[/]' is not 1-64 characters",
    "framework": "backend 'test-defective': framework 'jax' is not one of numpy, torch",
    "capabilities-none": "capabilities is None, not an attnbench.Capabilities",
    "dtype": "capabilities.dtypes is ('float8',): need a non-empty tuple of float64",
    "head-dim": "capabilities.head_dim_min is 0, not a positive int",
    "per-device": "capabilities.per_device['cuda']: 'cuda' is not one of the devices ('cpu',)",
    "per-device-key": "capabilities.per_device['cpu'] must map some of dtypes, masks",
    "min-versions": "capabilities.min_versions['numpy'] = 'latest': need a module name",
    "why-not": "capabilities.why_not is {'flash': 'no reason'}: need a mapping of window",
    "raises": "reading the backend's attributes raised RuntimeError: the name property fails",
}


@pytest.mark.parametrize("defect", sorted(DEFECT_MESSAGES))
def test_an_invalid_backend_is_a_usage_error_naming_the_plugin(plugin_path, monkeypatch, defect):
    monkeypatch.setenv("ATTNBENCH_TEST_DEFECT", defect)
    spec = plugin_path("invalid_backend.py")
    with pytest.raises(UsageError) as info:
        build_registry([spec], autoload=False)
    msg = str(info.value)
    assert msg.startswith(f"plugin {spec!r}: ") and DEFECT_MESSAGES[defect] in msg, msg
    assert "\n" not in msg


@pytest.mark.process
@pytest.mark.parametrize("verb", ["list", "run", "check"])
def test_invalid_backend_in_the_cli_is_one_line_exit_2(cli, plugin_path, verb):
    proc = cli(verb, "--plugin", plugin_path("invalid_backend.py"),
               env={"ATTNBENCH_TEST_DEFECT": "capabilities-none"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid_backend.py" in lines[0], proc.stderr
    assert "capabilities is None" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.process
def test_an_attribute_that_never_returns_is_a_usage_error(cli, plugin_path):
    proc = cli("list", "--plugin", plugin_path("invalid_backend.py"),
               env={"ATTNBENCH_TEST_DEFECT": "sleeps", "ATTNBENCH_PLUGIN_CALL_TIMEOUT": "1"},
               timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(
        "reading the backend's attributes did not return within 1 s"), proc.stderr


def test_every_builtin_overrides_only_prepare_and_init(registry):
    """Built-in backends say what they support as data (capabilities, per_device,
    min_versions): none overrides unsupported(), availability() or device_reasons()."""
    from attnbench.plugin.backend import Backend

    for name, backend in registry.backends.items():
        own = {m for cls in type(backend).__mro__ if cls not in Backend.__mro__
               for m, v in vars(cls).items() if callable(v) and not m.startswith("__")}
        assert own <= {"prepare"}, (name, own)


def test_scenario_dirs_hook_adds_a_folder(plugin_path, tmp_path, monkeypatch):
    from attnbench.scenario import resolve_scenario

    (tmp_path / "mine.toml").write_text('name = "mine"\n[base]\nbatch = 1\nheads = 1\n'
                                        'head_dim = 8\nseq_len = 16\n')
    monkeypatch.setenv("ATTNBENCH_TEST_SCENARIO_DIR", str(tmp_path))
    reg = build_registry([plugin_path("observer.py")], autoload=False)
    assert reg.scenario_dirs() == [str(tmp_path)]
    assert resolve_scenario("mine", reg.scenario_dirs()).path == str(tmp_path / "mine.toml")


def test_a_scenario_dirs_hook_that_raises_is_reported(tmp_path):
    path = tmp_path / "bad_dirs.py"
    path.write_text('"""Raises in attnbench_scenario_dirs."""\nfrom attnbench import hookimpl\n\n'
                    "@hookimpl\ndef attnbench_scenario_dirs():\n    raise OSError('no dirs')\n")
    reg = build_registry([str(path)], autoload=False)
    assert (str(path), "attnbench_scenario_dirs() raised OSError: no dirs") in reg.failures
    assert reg.scenario_dirs() == [] and "numpy-naive" in reg.backends


@pytest.mark.process
def test_record_written_is_called_once_per_record_with_the_record(cli, plugin_path, tmp_path):
    observed, out = tmp_path / "observed.jsonl", tmp_path / "run"
    (tmp_path / "mine.toml").write_text('name = "mine"\n[base]\nbatch = 1\nheads = 2\n'
                                        'head_dim = 8\n[sweep]\nseq_len = [16, 32]\n')
    proc = cli("check", "-s", "mine", "-b", "numpy-naive", "-b", "xformers", "--device", "cpu",
               "--plugin", plugin_path("observer.py"), "--out", str(out),
               env={"ATTNBENCH_TEST_SCENARIO_DIR": str(tmp_path),
                    "ATTNBENCH_TEST_OBSERVED": str(observed)})
    assert proc.returncode == 0, proc.stderr
    written = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    seen = [json.loads(x) for x in observed.read_text().splitlines()]
    assert len(written) == 4 and seen == written  # ok and unsupported records alike


@pytest.mark.process
def test_a_plugin_whose_import_never_finishes_is_reported(cli, plugin_path):
    proc = cli("list", "--plugin", plugin_path("hangs_on_import.py"),
               "--plugin", plugin_path("wrong_scale.py"),
               env={"ATTNBENCH_PLUGIN_CALL_TIMEOUT": "1"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "hangs_on_import.py failed: import did not return within 1 s" in (
        " ".join(proc.stdout.split()))
    assert "wrong-scale" in proc.stdout and "numpy-naive" in proc.stdout


@pytest.mark.process
def test_a_backend_cannot_write_records_under_another_name(cli, plugin_path, tmp_path):
    """Records carry the name a backend registered under, whatever its .name says later."""
    (tmp_path / "tiny.toml").write_text('name = "tiny"\n[base]\nbatch = 1\nheads = 2\n'
                                        'head_dim = 16\n[sweep]\nseq_len = [16, 32]\n')
    proc = cli("check", "-s", "tiny.toml", "--plugin", plugin_path("shapeshifts.py"),
               "-b", "test-shapeshifts", "-b", "numpy-naive", "--out", "run")
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    names = [json.loads(line)["backend"] for line in lines]
    assert sorted(names) == ["numpy-naive"] * 2 + ["test-shapeshifts"] * 2


def test_a_build_during_another_builds_import_waits_for_the_whole_plugin(tmp_path):
    """A registry built while another build is still importing the same file plugin gets its
    backend (it once took the half-run module from sys.modules and lost the backend, silently)."""
    import threading

    started = tmp_path / "import-started"
    path = tmp_path / "slow_import_plugin.py"
    path.write_text(f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\n"
                    "time.sleep(1.0)\n" + PLUGIN_SOURCE.format(name="slow-one"))
    first: list = []
    thread = threading.Thread(target=lambda: first.append(build_registry([str(path)],
                                                                         autoload=False)))
    thread.start()
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = build_registry([str(path)], autoload=False)  # the first is inside the import now
    thread.join()
    for reg in (first[0], second):
        assert not reg.failures
        assert "slow-one" in reg.backends


@pytest.mark.process
def test_a_plugin_cannot_rewrite_other_backends_in_the_catalog(cli, tmp_path, plugin_path):
    """A real plugin patches numpy-naive's capabilities, torch-naive's availability and the
    catalog's describe() (pointing numpy-naive at its own zero-returning impostor): each
    plugin is described by a process of its own, so the built-ins stay as they are."""
    (tmp_path / "tiny.toml").write_text("[base]\nbatch = 1\nheads = 2\nhead_dim = 16\n"
                                        "dtype = \"float32\"\nseq_len = 32\n")
    plugin = plugin_path("rewrites_rivals.py")
    proc = cli("check", "-s", "tiny.toml", "-b", "numpy-naive", "-b", "torch-naive",
               "-b", "test-rewrites-rivals", "--plugin", plugin, "--out", "run")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    got = {r["backend"]: r["status"] for r in records}
    assert got == {"numpy-naive": "ok", "torch-naive": "ok", "test-rewrites-rivals": "ok"}, got
    listed = cli("list", "--plugin", plugin)
    row = next(line for line in listed.stdout.splitlines() if "numpy-naive" in line)
    assert "float32" in row and "built-in" in row, row


def test_a_backend_name_given_by_two_plugins_is_a_usage_error(cli, plugin_path, tmp_path):
    """Two plugins (each described by its own catalog process) offering one name: one line."""
    twin = tmp_path / "twin.py"
    twin.write_text(Path(plugin_path("meets_its_twin.py")).read_text())
    proc = cli("list", "--plugin", plugin_path("meets_its_twin.py"), "--plugin", str(twin))
    assert proc.returncode == 2 and "provided twice" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
