"""Contention during a run: per-record readings where they change, --wait-idle, the verdict in
run.json; and end to end, a run beside a real CPU hog is busy while the same run alone is not."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnbench.case import Case
from attnbench.measure import busy, contention
from attnbench.run import watch as watch_mod

HZ = contention.clock_ticks()


class FakeMachine:
    """Stands in for /proc (contention.snapshot and probe are replaced by it in these tests):
    time moves only when told, and other processes use the cores they are told to."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cores: int = 2):
        self.t, self.cores, self.busy_ticks, self.others = 0.0, cores, 0.0, 0.0
        self.load = 0.2
        monkeypatch.setattr(contention, "snapshot", self.snapshot)
        monkeypatch.setattr(contention, "probe", self.probe)

    def run(self, seconds: float, others: float | None = None) -> None:
        self.others = self.others if others is None else others
        self.t += seconds
        self.busy_ticks += self.others * seconds * HZ

    def snapshot(self, *args, **kwargs) -> contention.Snapshot:
        idle = self.t * self.cores * HZ - self.busy_ticks
        return contention.Snapshot(self.t, {"user": int(self.busy_ticks), "idle": int(idle)},
                                   self.cores, (self.load, self.load, self.load))

    def probe(self, seconds: float = 0.25, root: object = "/", cpus: object = None) -> dict:
        a = self.snapshot()
        self.run(seconds)
        return contention.window(a, self.snapshot())


def timed(noisy: bool = False) -> dict:
    return {"status": "ok", "timing": {"median_ms": 1.0, "noisy": noisy}}


def test_records_carry_readings_only_where_they_change(monkeypatch):
    machine = FakeMachine(monkeypatch)
    w = watch_mod.Watch({}, None, gpu=False)
    recs = []
    for others in (0.0, 0.05, 1.5, 1.6, 0.0):
        machine.run(2.0, others)
        recs.append(timed())
        w.observe(recs[-1])
    stored = [r.get("contention") for r in recs]
    assert stored[0]["others_cores"] == 0.0 and stored[1] is None  # 0.05 cores: no change
    assert stored[2]["others_cores"] == pytest.approx(1.5, abs=0.01) and stored[2]["under_load"]
    assert stored[3] is None and stored[4]["under_load"] is False
    assert w.counts == {"windows": 5, "under_load": 2, "timed": 5, "noisy": 0}


def test_finish_judges_the_run_and_raises_the_best_known_roof(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("ATTNBENCH_ROOF_CACHE", str(tmp_path / "roofs.json"))
    machine = FakeMachine(monkeypatch)
    env = {"host": "h", "cpu": "c", "cores": 2, "versions": {}}
    w = watch_mod.Watch({"environment": env, "run_id": "r1"}, None, gpu=False)
    machine.run(10.0, 0.0)
    idle = w.finish({"cpu": {"float32": 1.8e11, "unmeasured": {}}}, {"cpu": {"float32": 1.7e11}},
                    0.5)
    assert idle["busy"]["busy"] is False
    assert idle["contention"]["roof_best_known"] == {}  # the first run on this key
    assert idle["contention"]["cost_s"]["end_roof"] == 0.5
    w = watch_mod.Watch({"environment": env, "run_id": "r2"}, None, gpu=False)
    machine.run(10.0, 1.8)
    loaded = w.finish({"cpu": {"float32": 0.3e11}}, {"cpu": {"float32": 0.28e11}}, 0.5)
    reasons = loaded["busy"]["reasons"]
    assert any("other processes used 1.8 of the 2 cores" in r for r in reasons)
    assert any("16 % of the best known 180 GFLOP/s" in r for r in reasons), reasons


def test_wait_idle_waits_with_a_progress_line_then_starts(monkeypatch):
    machine = FakeMachine(monkeypatch)
    machine.others, machine.load = 1.8, 3.9
    real_probe = machine.probe
    calls = []

    def probe(seconds: float = 0.25, root: object = "/", cpus: object = None) -> dict:
        calls.append(seconds)
        if len(calls) == 4:  # the hog ends after the third window of --wait-idle
            machine.others, machine.load = 0.0, 0.4
        return real_probe(seconds)

    monkeypatch.setattr(contention, "probe", probe)
    out = io.StringIO()
    w = watch_mod.Watch({}, None, gpu=False, wait_idle_s=60, stream=out)
    w.wait_until_idle()
    assert w.waited == {"before_s": pytest.approx(0, abs=1), "idle": True}
    assert "waiting for an idle machine before the run: load 3.90 on 2 cores, other processes " \
           "use 1.8 cores" in out.getvalue()


def test_wait_idle_gives_up_after_its_seconds_and_pauses_between_cases(monkeypatch):
    machine = FakeMachine(monkeypatch)
    machine.others = 1.5
    out = io.StringIO()
    w = watch_mod.Watch({}, None, gpu=False, wait_idle_s=0, stream=out)
    w.wait_until_idle()
    assert w.waited["idle"] is False and "still busy after 0 s; going on" in out.getvalue()
    assert w.pause_if_loaded() == 0.0 and "pausing" not in out.getvalue()  # no record yet
    machine.run(1.0)
    w.observe(timed())  # a record others ran beside
    assert w.pause_if_loaded() >= 0 and "pausing between cases: load" in out.getvalue()
    machine.run(1.0, 0.0)
    rec = timed()
    w.observe(rec, paused_s=3.0)
    assert rec["contention"]["paused_s"] == 3.0
    assert w.pause_if_loaded() == 0.0  # that record ran alone: no pause


# --- end to end: the real CLI, a real hog ---------------------------------------------------

TOML = """name = "busytiny"
description = "small cases for the busy-machine tests"
[base]
batch = 1
heads = 2
head_dim = 16
[sweep]
seq_len = [64, 128, 256]
"""


def small_run(cli, tmp_path: Path, name: str, *extra: str, env: dict | None = None):
    scenario = tmp_path / "busytiny.toml"
    scenario.write_text(TOML)
    out = tmp_path / name
    env = {"ATTNBENCH_ROOF_CACHE": str(tmp_path / "roofs.json"), **(env or {})}
    proc = cli("run", "-s", str(scenario), "-b", "numpy-naive", "--budget", "0.1", "--out",
               str(out), *extra, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, json.loads((out / "run.json").read_text())


@pytest.mark.alone  # judges the machine's load
def test_the_same_run_alone_is_not_busy(cli, tmp_path: Path):
    before = contention.probe(2.0)  # decide idle-ness from readings taken before the test
    limit = busy.others_limit(before["cores"])
    if before["others_cores"] >= limit / 2 or before["steal_pct"] >= busy.STEAL_PCT / 2:
        pytest.skip(f"the host is busy before the test starts (other processes "
                    f"{before['others_cores']:.2g} cores, steal {before['steal_pct']:.2g} %): "
                    "an idle run cannot be made here")
    proc, meta = small_run(cli, tmp_path, "alone")
    after = contention.probe(2.0)  # the run's processes are gone: only others show here
    if meta["busy"]["busy"] and after["others_cores"] >= limit / 2:
        pytest.skip(f"other processes started during the test (others "
                    f"{after['others_cores']:.2g} cores just after it): not an idle run")
    assert meta["busy"]["busy"] is False, (before, meta["busy"], after)
    assert "busy machine" not in proc.stderr
    c = meta["contention"]
    assert c["roof_end"]["cpu"]["float32"] > 0 and c["records"]["timed"] == 3
    assert c["cost_s"]["end_roof"] > 0


@pytest.mark.alone  # judges the machine's load
def test_a_run_beside_a_cpu_hog_is_busy(cli, tmp_path: Path):
    # enough hogs to pass the busy limit by half again (one on 2 cores), leaving cores free
    # so that the run stays short
    limit = busy.others_limit(contention.read_cpu(Path("/"))[1])
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(math.ceil(1.5 * limit))]
    try:
        proc, meta = small_run(cli, tmp_path, "hogged", "--wait-idle", "1")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert meta["busy"]["busy"] is True
    assert any(r.startswith("other processes used") for r in meta["busy"]["reasons"])
    assert "WARNING: this run was made on a busy machine" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("  seen: load")  # said last
    pids = {h.pid for h in hogs}
    assert pids & {t["pid"] for t in meta["contention"]["run"].get("top_others", [])}
    assert "waiting for an idle machine" in proc.stderr and "still busy after" in proc.stderr
    assert meta["contention"]["wait_idle"]["idle"] is False
    assert "pausing between cases" in proc.stderr  # the hogs are still there after a case
    records = [json.loads(x) for x in (tmp_path / "hogged" / "records.jsonl").open()]
    assert any((r.get("contention") or {}).get("paused_s") for r in records)


@pytest.mark.process  # a sweep in worker processes
def test_a_long_sweep_measures_the_roofs_between_backends(monkeypatch, tmp_path: Path):
    from attnbench.measure.timing import TimerConfig
    from attnbench.plugin.registry import build_registry
    from attnbench.run import sweep
    from attnbench.run.execute import Options
    from attnbench.run.plan import make_plan
    from attnbench.run.runner import RunConfig, run_plan
    from attnbench.scenario import load_scenario

    monkeypatch.setattr(sweep, "ROOF_EVERY_S", 0.0)  # the backend starts "long after" the roof
    (tmp_path / "t.toml").write_text(TOML.replace("64, 128, 256", "32"))
    plan = make_plan(build_registry(autoload=False), [load_scenario(tmp_path / "t.toml")],
                     ["numpy-naive"], ["cpu"], [])
    opts = Options(timer=TimerConfig(budget_s=0.05), memory=False)
    result = run_plan(plan, RunConfig(out_dir=tmp_path / "run", opts=opts, roof_s=0.02,
                                      meta={"command": "test"}))
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    during = meta["contention"]["roof_during"]
    assert [d["roofs"]["cpu"]["float32"] > 0 for d in during] == [True]
    assert meta["contention"]["roof_end"]["cpu"]["float32"] > 0
    assert isinstance(meta["busy"]["busy"], bool) and result.busy == meta["busy"]
    first = json.loads((tmp_path / "run" / "records.jsonl").read_text().splitlines()[0])
    assert set(first["contention"]) >= {"others_cores", "steal_pct", "load1", "under_load"}


@pytest.mark.process
@pytest.mark.alone  # judges the machine's load
def test_a_plugin_spinning_in_its_worker_takes_no_cpu_from_other_cases(plugin_path, tmp_path):
    """A plugin whose import leaves a thread spinning (in its catalog, observer and backend
    worker: never in attnbench's own process) runs only while its worker runs its own case:
    between cases the worker's process group is stopped, so it cannot slow another backend."""
    from attnbench.run.catalog import load_catalog
    from attnbench.run.tasks import TaskRunner
    from attnbench.worker.execute import Options

    catalog = load_catalog([plugin_path("spins_in_parent.py")], autoload=False)
    backend = catalog.get("test-spins-in-parent")
    runner = TaskRunner({"options": Options(time_it=False, memory=False).to_dict()}, tmp_path,
                        60.0)
    try:
        with runner.pool() as pool:
            rec, = runner.round(pool, "t", Case(1, 2, 2, 16, 16, 8), [backend])
            assert rec["status"] == "ok"
            pid = rec["worker"]["pid"]
            deadline = time.monotonic() + 2  # SIGSTOP is delivered asynchronously
            while _proc_state(pid)[0] != "T" and time.monotonic() < deadline:
                time.sleep(0.01)
            state, cpu = _proc_state(pid)
            time.sleep(0.5)
            assert state == "T" and _proc_state(pid) == ("T", cpu)  # stopped: no CPU taken
    finally:
        runner.close()


def _proc_state(pid: int) -> tuple[str, int]:
    """(state letter, utime + stime in ticks) of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[11]) + int(fields[12])


@pytest.mark.alone  # judges the machine's load
def test_a_process_escaping_its_workers_group_is_killed_not_other(cli, tmp_path: Path,
                                                                  plugin_path):
    """A backend leaves a process in a session of its own, which the pause and the kill of its
    worker's process group miss; it would spin on after the worker ended. It was seen under
    the worker, so it is the run's: killed by the run and named, never among the others."""
    mark = tmp_path / "orphan.pid"
    scenario = tmp_path / "busytiny.toml"
    scenario.write_text(TOML)
    proc = cli("run", "-s", str(scenario), "-b", "numpy-naive", "-b", "test-leaves-orphan",
               "--plugin", plugin_path("leaves_orphan.py"), "--budget", "0.1", "--out",
               str(tmp_path / "orphaned"),
               env={"ATTNBENCH_ROOF_CACHE": str(tmp_path / "roofs.json"),
                    "ATTNBENCH_TEST_MARK": str(mark)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    pid = int(mark.read_text())
    meta = json.loads((tmp_path / "orphaned" / "run.json").read_text())
    run = meta["contention"]["run"]
    assert pid in {k["pid"] for k in meta["contention"]["killed_escaped"]}, meta["contention"]
    assert pid not in {t["pid"] for t in run.get("top_others", [])}
    assert not Path(f"/proc/{pid}").exists() or _proc_state(pid)[0] == "Z"


@pytest.mark.alone  # judges the machine's load
def test_a_plain_run_has_no_stray_process(cli, tmp_path: Path):
    """The workers (and the roof workers) are recognised as workers: a run without a hostile
    plugin has no stray reading, loaded machine or not."""
    _, meta = small_run(cli, tmp_path, "plain")
    run = meta["contention"]["run"]
    assert run["stray_cores"] == 0 and "top_stray" not in run, run
    assert not any("outside its workers" in r for r in meta["busy"]["reasons"])
