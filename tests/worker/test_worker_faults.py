"""A worker that lies, floods, leaks, leaves early or leaves children: each is one record."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from attnbench.plugin.registry import build_registry
from attnbench.record import invalid_reason
from attnbench.run.execute import Options
from attnbench.run.plan import make_plan
from attnbench.run.runner import RunConfig, run_plan
from attnbench.scenario import load_scenario

pytestmark = pytest.mark.process

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins"
PLUGINS = ["forges_reply.py", "leaves_early.py", "leaks.py", "huge_texts.py", "spawns.py",
           "unsupported_raises.py"]
BACKENDS = ["test-forges-reply", "test-floods-reply", "test-child-fds", "test-closes-input",
            "test-leaks", "test-huge-texts", "test-spawns", "test-spawns-dies",
            "test-unsupported-raises"]
# the bad case (seq 64) comes first; the two after it show what the next worker does
SCENARIO = """name = "tiny"
[base]
batch = 1
heads = 2
head_dim = 16
[sweep]
seq_len = [64, 32, 16]
"""


def _plan(tmp: Path, backends: list[str]):
    (tmp / "tiny.toml").write_text(SCENARIO)
    reg = build_registry([str(PLUGIN_DIR / p) for p in PLUGINS], autoload=False)
    return make_plan(reg, [load_scenario(tmp / "tiny.toml")], backends, ["cpu"], [])


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    pidfile = tmp / "pids.txt"
    os.environ["ATTNBENCH_TEST_PIDFILE"] = str(pidfile)  # the workers inherit it
    try:
        config = RunConfig(out_dir=tmp / "run", opts=Options(time_it=False),
                           meta={"command": "test"}, timeout_s=60.0)
        result = run_plan(_plan(tmp, BACKENDS), config)
    finally:
        del os.environ["ATTNBENCH_TEST_PIDFILE"]
    by = {(r["backend"], r["seq_kv"]): r for r in result.records}
    return result, by, pidfile


def test_the_run_finishes_with_one_valid_record_each(faults):
    result, by, _ = faults
    assert result.finished and len(result.records) == 3 * len(BACKENDS)
    lines = (result.out_dir / "records.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == result.records
    assert all(invalid_reason(r) is None for r in result.records)


def test_a_capability_check_that_raises_is_an_error_record(faults):
    _, by, _ = faults
    got = [by[("test-unsupported-raises", n)] for n in (64, 32, 16)]
    assert [r["status"] for r in got] == ["error"] * 3
    assert "unsupported() raised SystemExit: unsupported() ends the process" in got[0]["error"]


def test_a_forged_reply_is_a_crash_of_that_case(faults):
    _, by, _ = faults
    bad = by[("test-forges-reply", 64)]
    assert bad["status"] == "crashed" and "protocol" in bad["error"], bad
    assert "forged" not in bad
    after = [by[("test-forges-reply", n)] for n in (32, 16)]
    assert [r["status"] for r in after] == ["ok", "ok"]  # replies did not shift
    assert all("forged" not in r for r in after)
    assert after[0]["worker"]["pid"] == after[1]["worker"]["pid"]  # one fresh worker


def test_a_reply_line_over_the_cap_is_a_crash(faults):
    _, by, _ = faults
    bad = by[("test-floods-reply", 64)]
    assert bad["status"] == "crashed" and "64 MiB" in bad["error"], bad
    assert by[("test-floods-reply", 32)]["status"] == "ok"


def test_a_program_the_backend_starts_sees_no_protocol(faults):
    result, by, _ = faults
    assert [by[("test-child-fds", n)]["status"] for n in (64, 32, 16)] == ["ok"] * 3
    log = (result.out_dir / "logs" / "test-child-fds.log").read_text()
    assert "child read 0 bytes from stdin, wrote to fds []" in log


def test_a_worker_that_closes_its_input_costs_one_case(faults):
    _, by, _ = faults
    got = [by[("test-closes-input", n)] for n in (64, 32, 16)]
    assert [r["status"] for r in got] == ["ok", "crashed", "ok"], got
    assert "exited with code 1" in got[1]["error"]
    assert got[2]["worker"]["pid"] != got[0]["worker"]["pid"]


def test_a_leaking_backend_gets_a_fresh_worker_after_its_oom(faults):
    _, by, _ = faults
    got = [by[("test-leaks", n)] for n in (64, 32, 16)]
    assert [r["status"] for r in got] == ["oom", "ok", "ok"], got
    assert got[0]["worker"]["restarted_after"] is True


def test_huge_texts_are_capped_in_the_record_and_the_log(faults):
    result, by, _ = faults
    bad = by[("test-huge-texts", 64)]
    assert bad["status"] == "error" and bad["error"].startswith("RuntimeError: huge xxx")
    assert "characters cut" in bad["error"]
    line = next(x for x in (result.out_dir / "records.jsonl").read_bytes().splitlines()
                if b'"test-huge-texts"' in x and b"-q64-" in x)
    assert len(line) < 300_000  # texts capped before the worker sent them
    log = result.out_dir / "logs" / "test-huge-texts.log"
    assert log.stat().st_size <= 1 << 20
    assert Path(f"{log}.1").stat().st_size <= 1 << 20  # 3 MB printed, 2 MB kept at most


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie is dead, waiting for init to reap it


def test_processes_a_backend_starts_die_with_its_worker(faults):
    _, by, pidfile = faults
    pids = [int(x) for x in pidfile.read_text().split()]
    assert len(pids) == 4  # three from test-spawns, one from test-spawns-dies
    assert by[("test-spawns-dies", 64)]["status"] == "crashed"
    assert "exited with code 7" in by[("test-spawns-dies", 64)]["error"]
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]


def test_a_worker_that_exits_while_idle_costs_the_next_case(tmp_path):
    """The worker is stopped between its cases; its thread's exit happens when it runs again,
    before the next case is answered: that case is crashed, then a fresh worker."""
    def pause_after_the_bad_case(rec):  # the thread's timer runs out during this pause
        if rec["seq_kv"] == 64:
            time.sleep(2)

    config = RunConfig(out_dir=tmp_path / "run", opts=Options(time_it=False),
                       meta={"command": "test"}, timeout_s=60.0,
                       on_record=pause_after_the_bad_case)
    result = run_plan(_plan(tmp_path, ["test-exits-idle"]), config)
    got = [r for r in result.records]
    assert result.finished and [r["status"] for r in got] == ["ok", "crashed", "ok"], got
    assert "exited with code 0" in got[1]["error"]
    assert got[2]["worker"]["pid"] != got[0]["worker"]["pid"]


def test_a_plugin_import_that_hangs_in_the_worker_obeys_the_timeout(cli, tmp_path, plugin_path):
    (tmp_path / "tiny.toml").write_text(SCENARIO.replace("[64, 32, 16]", "[64, 32]"))
    t0 = time.monotonic()
    proc = cli("check", "-s", "tiny.toml", "-b", "test-hangs-on-import", "--timeout", "2",
               "--plugin", plugin_path("hangs_in_worker_import.py"), "--out", "run")
    assert proc.returncode == 1, proc.stderr  # a failed check, not a usage error or a hang
    assert time.monotonic() - t0 < 60  # two starts of 2 s, not two of 120 s
    records = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["timeout", "timeout"]
    assert all("did not start within 2 s" in r["error"] for r in records)


def test_the_workers_of_a_run_start_side_by_side(cli, tmp_path, plugin_path):
    """Each worker's import waits for the other's: started one after the other, the first
    would fail; started side by side (prestart), both start and every case is ok."""
    (tmp_path / "tiny.toml").write_text(SCENARIO.replace("[64, 32, 16]", "[64, 32]"))
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    proc = cli("check", "-s", "tiny.toml", "-b", "test-twin-first", "-b", "test-twin-second",
               "--plugin", plugin_path("meets_its_twin.py"), "--out", "run",
               env={"ATTNBENCH_TEST_RENDEZVOUS": str(meeting)})
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok"] * 4, records
    assert len(list(meeting.iterdir())) == 2  # one start each, no restart
