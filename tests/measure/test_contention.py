"""Contention readings: parsed from a fake /proc tree, rates between snapshots, GPU via a fake
nvidia-smi, and one real reading of this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.measure import contention as c

HZ = 100
WORKER_CMD = b"/usr/bin/python3\0-m\0attnbench.worker.child\0"


def stat_line(pid: int, name: str, ppid: int, utime: int, stime: int = 0, cutime: int = 0,
              start: int = 1000, session: int = 1) -> str:
    """A /proc/<pid>/stat line in the kernel's layout (fields 1..22 and a few more)."""
    fields = ["S", ppid, session, session, 0, -1, 0, 0, 0, 0, 0, utime, stime, cutime, 0, 20, 0,
              1, 0, start, 1000, 100]
    return f"{pid} ({name}) " + " ".join(map(str, fields)) + "\n"


class FakeProc:
    """A fake root with proc/stat, proc/loadavg and proc/<pid>/stat: the readers are pointed at
    it instead of the real /proc, so the numbers of a test are known exactly."""

    def __init__(self, root: Path, ncpu: int = 2):
        self.root, self.ncpu = root, ncpu
        (root / "proc").mkdir(parents=True)

    def write(self, cpu: dict[str, int], load: str, procs: list[str]) -> None:
        values = " ".join(str(cpu.get(k, 0)) for k in c.STAT_FIELDS)
        lines = [f"cpu  {values} 0 0"] + [f"cpu{i} 0 0 0 0 0 0 0 0" for i in range(self.ncpu)]
        (self.root / "proc/stat").write_text("\n".join(lines) + "\nintr 1 2 3\n")
        (self.root / "proc/loadavg").write_text(f"{load} 2/84 3486\n")
        for old in (self.root / "proc").glob("[0-9]*"):
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        for line in procs:
            pid = line.split()[0]
            (self.root / "proc" / pid).mkdir()
            (self.root / "proc" / pid / "stat").write_text(line)
            cmd = WORKER_CMD if "(worker)" in line else b"python\0-c\0spin\0"
            (self.root / "proc" / pid / "cmdline").write_bytes(cmd)


def test_parse_stat_reads_a_name_with_spaces_and_parentheses():
    info = c.parse_stat(stat_line(42, "my (odd) prog", 7, utime=30, stime=12, cutime=5))
    assert (info.name, info.ppid, info.ticks, info.child_ticks, info.start) == (
        "my (odd) prog", 7, 42, 5, 1000)
    assert c.parse_stat("garbage") is None


def test_window_counts_others_and_leaves_this_run_out(tmp_path: Path):
    fake = FakeProc(tmp_path)
    me, worker, other = 100, 101, 200
    fake.write({"user": 1000, "idle": 1000}, "0.50 0.40 0.30",
               [stat_line(me, "attnbench", 1, 10), stat_line(worker, "python", me, 50),
                stat_line(other, "hog", 1, 400)])
    a = c.snapshot(tmp_path, me=me, reaped=10)
    # 2 s at 100 ticks/s on 2 CPUs = 400 ticks: the worker used 100, the hog 180, steal 40
    fake.write({"user": 1280, "idle": 1080, "steal": 40}, "1.50 0.60 0.35",
               [stat_line(me, "attnbench", 1, 10), stat_line(worker, "python", me, 150),
                stat_line(other, "hog", 1, 580)])
    b = c.snapshot(tmp_path, me=me, reaped=10)
    b.t = a.t + 2.0
    w = c.window(a, b, hz=HZ)
    assert w["cores"] == 2 and w["load"] == [1.5, 0.6, 0.35]
    assert w["others_cores"] == pytest.approx(0.9)  # 280 busy ticks - 100 of ours, over 2 s
    assert w["steal_pct"] == pytest.approx(10.0)  # 40 of 400 ticks
    assert w["top_others"] == [{"pid": other, "name": "hog", "cores": 0.9}]


def test_a_reaped_worker_still_counts_as_ours(tmp_path: Path):
    fake = FakeProc(tmp_path)
    me = 100
    fake.write({"user": 1000, "idle": 1000}, "0.1 0.1 0.1",
               [stat_line(me, "attnbench", 1, 10), stat_line(101, "python", me, 50)])
    a = c.snapshot(tmp_path, me=me, reaped=10)
    # the worker used 50 more ticks, exited and was reaped: os.times() now holds its 100
    fake.write({"user": 1050, "idle": 1350}, "0.1 0.1 0.1", [stat_line(me, "attnbench", 1, 10)])
    b = c.snapshot(tmp_path, me=me, reaped=110)
    b.t = a.t + 2.0
    assert c.window(a, b, hz=HZ)["others_cores"] == 0.0


def test_workers_are_ours_and_strays_get_their_own_reading(tmp_path: Path):
    """me (100) has a worker (101: its own session, the worker module) with a child (102), and
    a process a plugin started (103), which even leads a session of its own; then the worker
    is killed: 102, reparented to init but still in the worker's session, and 104, which
    called setsid under the worker and was seen then, keep spinning. None of them is
    "other"; 103, 102 and 104 are stray; the hog 200 is other."""
    fake = FakeProc(tmp_path)
    me, worker, child, plugin, escaped, hog = 100, 101, 102, 103, 104, 200
    fake.write({"user": 1000, "idle": 1000}, "0.1 0.1 0.1", [
        stat_line(me, "attnbench", 1, 10, session=50),
        stat_line(worker, "worker", me, 50, session=worker),
        stat_line(child, "python", worker, 20, session=worker),
        stat_line(plugin, "spinner", me, 30, session=plugin),
        stat_line(escaped, "daemon", worker, 5, session=escaped),
        stat_line(hog, "hog", 1, 400)])
    tracker = c.Tracker()
    a = c.snapshot(tmp_path, me=me, reaped=10, tracker=tracker)
    assert a.own == {me, worker, child, plugin, escaped}
    assert a.legit == {me, worker, child, escaped} and a.stray == {plugin}
    # 2 s on 2 CPUs (400 ticks): worker +40 then killed and reaped (os.times: +90 in all),
    # child +60, plugin +100, escaped +50, hog +100: busy 350 ticks, others' 100
    fake.write({"user": 1350, "idle": 1050}, "0.1 0.1 0.1", [
        stat_line(me, "attnbench", 1, 10, session=50),
        stat_line(child, "python", 1, 80, session=worker),
        stat_line(plugin, "spinner", me, 130, session=plugin),
        stat_line(escaped, "daemon", 1, 55, session=escaped),
        stat_line(hog, "hog", 1, 500)])
    b = c.snapshot(tmp_path, me=me, reaped=10 + 90, tracker=tracker)
    b.t = a.t + 2.0
    assert b.legit == {me} and b.stray == {child, plugin, escaped}
    w = c.window(a, b, hz=HZ)
    assert w["others_cores"] == pytest.approx(0.5)  # the hog's 100 ticks over 2 s
    assert w["stray_cores"] == pytest.approx(1.05)  # 60 + 100 + 50 ticks
    assert [t["pid"] for t in w["top_stray"]] == [plugin, child, escaped]
    assert [t["pid"] for t in w["top_others"]] == [hog]


def test_escaped_are_those_once_below_a_worker_outside_every_live_workers_group(
        tmp_path: Path):
    """Escaped (killed by the run before each task): a process once below a worker that is
    outside every live worker's process group, where the worker's pause does not reach it.
    Not the worker's own group (102), not a process the parent started (103), not a zombie."""
    fake = FakeProc(tmp_path)
    me, worker, child, plugin, daemon, dead = 100, 101, 102, 103, 104, 105
    fake.write({"user": 1000, "idle": 1000}, "0.1 0.1 0.1", [
        stat_line(me, "attnbench", 1, 10, session=50),
        stat_line(worker, "worker", me, 50, session=worker),
        stat_line(child, "python", worker, 20, session=worker),
        stat_line(plugin, "nvidia-smi", me, 30, session=plugin),
        stat_line(daemon, "daemon", worker, 5, session=daemon),
        stat_line(dead, "gone", worker, 5, session=dead).replace(" S ", " Z ", 1)])
    tracker = c.Tracker()
    assert tracker.classify(c.read_procs(tmp_path), me, tmp_path).escaped == {daemon}
    fake.write({"user": 1000, "idle": 1000}, "0.1 0.1 0.1", [  # the worker ended
        stat_line(me, "attnbench", 1, 10, session=50),
        stat_line(child, "python", 1, 20, session=worker),
        stat_line(plugin, "nvidia-smi", me, 30, session=plugin),
        stat_line(daemon, "daemon", 1, 5, session=daemon)])
    assert tracker.classify(c.read_procs(tmp_path), me, tmp_path).escaped == {child, daemon}


def test_adopting_a_child_the_run_did_not_launch_is_escaped(tmp_path: Path, monkeypatch):
    """With the run's process a subreaper (ownership.adopt_orphans), an orphan of a worker (a
    double fork: never seen below it) is the run's child: escaped, to be killed, even when it
    names itself a worker; a zombie one is only reaped; children the caller had before the run
    began and the workers it launched are left alone."""
    from attnbench.measure import ownership

    fake = FakeProc(tmp_path)
    me, worker, mine, orphan, spoof, dead = 100, 101, 102, 103, 104, 105
    monkeypatch.setattr(ownership, "_LAUNCHED", {worker})
    first = [stat_line(me, "attnbench", 1, 10, session=50),
             stat_line(mine, "loader", me, 10, session=50)]
    fake.write({"user": 1000, "idle": 1000}, "0.1 0.1 0.1", first)
    tracker = c.Tracker()
    tracker.adopt(c.read_procs(tmp_path), me)
    fake.write({"user": 1000, "idle": 1000}, "0.1 0.1 0.1", [
        *first, stat_line(worker, "worker", me, 50, session=worker),
        stat_line(orphan, "daemon", me, 5, session=orphan),
        stat_line(spoof, "worker", me, 5, session=spoof),
        stat_line(dead, "gone", me, 5, session=dead).replace(" S ", " Z ", 1)])
    ours = tracker.classify(c.read_procs(tmp_path), me, tmp_path)
    assert ours.escaped == {orphan, spoof} and ours.adopted == {orphan, spoof, dead}
    assert worker in ours.legit and spoof not in ours.legit
    assert c.Tracker().classify(c.read_procs(tmp_path), me, tmp_path).escaped == set()


def test_a_stray_that_ends_under_init_takes_no_cpu_into_others(tmp_path: Path):
    """A leftover reaped by init (not by this run) would drop its ticks from the run's total
    and show them as others' CPU; they are kept."""
    fake = FakeProc(tmp_path)
    me = 100
    fake.write({"user": 1000, "idle": 1000}, "0.1 0.1 0.1", [
        stat_line(me, "attnbench", 1, 10, session=50),
        stat_line(101, "worker", me, 50, session=101),
        stat_line(102, "leftover", 101, 300, session=101)])
    tracker = c.Tracker()
    a = c.snapshot(tmp_path, me=me, reaped=10, tracker=tracker)
    fake.write({"user": 1000, "idle": 1400}, "0.1 0.1 0.1", [
        stat_line(me, "attnbench", 1, 10, session=50)])  # both gone: 102 was reaped by init
    b = c.snapshot(tmp_path, me=me, reaped=60, tracker=tracker)
    b.t = a.t + 2.0
    assert c.window(a, b, hz=HZ)["others_cores"] == 0.0 and tracker.lost == 300


def test_without_proc_stat_the_rates_are_unmeasured(tmp_path: Path):
    (tmp_path / "proc").mkdir()
    a = c.snapshot(tmp_path, me=1, reaped=0)
    w = c.window(a, c.snapshot(tmp_path, me=1, reaped=0))
    assert w["others_cores"] is None and w["load"].startswith("unmeasured:")


def test_cpu_freq_reads_cpufreq_or_says_why_not(tmp_path: Path):
    assert c.cpu_freq(tmp_path).startswith("unmeasured: no readable cpufreq")
    for i, khz in enumerate((1200000, 3000000)):
        d = tmp_path / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_cur_freq").write_text(f"{khz}\n")
        (d / "cpuinfo_max_freq").write_text("3500000\n")
    assert c.cpu_freq(tmp_path) == {"min_mhz": 1200.0, "mean_mhz": 2100.0, "max_mhz": 3000.0,
                                    "rated_max_mhz": 3500.0}


def fake_smi(replies: dict[str, str]):
    """Stands in for nvidia-smi (none here) to test the parsing of its CSV: the reply whose
    key starts the first argument, OSError (a field this driver lacks) otherwise."""
    def run(args: list[str]) -> str:
        for prefix, text in replies.items():
            if args[0].startswith(prefix):
                return text
        raise OSError("nvidia-smi exited 2: Field is not a valid field to query")
    return run


def test_gpu_reading_names_other_processes_and_slowdowns():
    run = fake_smi({"--query-gpu=index,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,"
                    "utilization.gpu,clocks_event_reasons": "0, 1980, 1980, 45, 120.5, 0, "
                                                            "0x0000000000000001\n"
                                                            "1, 900, 1980, 91, 300.0, 0, "
                                                            "0x0000000000000060\n",
                    "--query-compute-apps": "4242, python, 20480\n"})
    r = c.gpu_reading(run, own=frozenset({7}))
    assert r["gpus"][0]["slowdowns"] == [] and r["gpus"][0]["temperature_c"] == 45
    assert r["gpus"][1]["slowdowns"] == ["software thermal slowdown", "hardware thermal slowdown"]
    assert r["other_processes"] == [{"pid": 4242, "name": "python", "memory_mib": 20480}]
    assert c.gpu_reading(run, own=frozenset({4242}))["other_processes"] == []


# what `nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,
# nounits` prints (written in its format: no GPU here to record it from) for the run's parent
# (mem_get_info made its CUDA context), its worker, a process its ended worker left, a
# neighbour, and a pid of another PID namespace
H200_APPS = ("3101, /usr/bin/python3, 514\n3188, /usr/bin/python3, 18944\n"
             "3350, /usr/bin/python3, 2048\n7777, python, 40960\n912345, python, 1024\n")


def test_gpu_reading_leaves_the_run_out_and_names_strays_and_neighbours():
    from attnbench.measure.busy import judge

    run = fake_smi({"--query-gpu=index,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,"
                    "utilization.gpu,clocks_event_reasons": "0, 1980, 1980, 38, 118.2, 0, "
                                                            "0x0000000000000001\n",
                    "--query-compute-apps": H200_APPS})
    visible = frozenset({1, 3101, 3188, 3350, 7777})
    r = c.gpu_reading(run, own=frozenset({3101, 3188}), stray=frozenset({3350}),
                      visible=visible)
    assert [p["pid"] for p in r["other_processes"]] == [7777]
    assert [p["pid"] for p in r["stray_processes"]] == [3350]
    assert [p["pid"] for p in r["unattributed"]] == [912345]
    alone = c.gpu_reading(run, own=frozenset({3101, 3188, 3350}), visible=visible - {7777})
    assert alone["other_processes"] == [] and alone["stray_processes"] == []
    idle = {"cores": 2, "run": {"others_cores": 0.0}, "before": {"gpu": alone},
            "after": {"gpu": alone}}
    verdict = judge(idle)
    assert verdict["busy"] is False and "912345" in verdict["notes"][0]
    busy = judge({**idle, "after": {"gpu": r}})["reasons"]
    assert any("another process was on the GPU: python (pid 7777" in x for x in busy)
    assert any("left outside its workers was on the GPU" in x and "3350" in x for x in busy)


def test_gpu_reading_on_an_older_driver_and_without_nvidia_smi():
    old = fake_smi({"--query-gpu=index,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,"
                    "utilization.gpu,clocks_throttle": "0, 1410, 1410, 40, 60, 0, 0x4\n",
                    "--query-compute-apps": ""})
    assert c.gpu_reading(old)["gpus"][0]["slowdowns"] == ["software power cap"]

    def missing(args: list[str]) -> str:
        raise OSError("nvidia-smi not found")
    assert c.gpu_reading(missing) == "unmeasured: nvidia-smi not found"


def test_real_reading_of_this_machine_is_sane():
    snap = c.snapshot()
    assert snap.ncpu >= 1 and snap.cpu and snap.own  # this process is in its own tree
    w = c.probe(0.05)
    assert 0 <= w["others_cores"] <= w["cores"] + 0.5 and 0 <= w["steal_pct"] <= 100


def test_only_the_cpus_this_run_may_use_count(tmp_path: Path):
    """A run pinned to cpu1 (taskset, a cpuset) reads cpu1's line only: a hog on cpu0 is not
    contention for it; a line this parser does not know is skipped, not a crash."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/stat").write_text(
        "cpu  500 0 0 100 0 0 0 0 0 0\ncpu0 400 0 0 0 0 0 0 0 0 0\n"
        "cpu1 100 0 0 100 0 0 0 0 0 0\ncpu2 x y z\nintr 1 2 3\n")
    cpu, n = c.read_cpu(tmp_path, frozenset({1}))
    assert (cpu["user"], cpu["idle"], n) == (100, 100, 1)
    cpu, n = c.read_cpu(tmp_path)
    assert (cpu["user"], n) == (500, 2)  # all CPUs: the aggregate line; cpu2 did not parse


@pytest.mark.alone  # it reads this process's CPU time against the clock: not under xdist load
def test_the_parents_own_work_between_timed_calls_is_not_read_as_competition():
    """parent_cores reads what ran in attnbench's process while workers timed: its own work
    between timed calls (inputs, oracles, verdicts, in own_work) is left out."""
    import time

    from attnbench.measure import contention

    def spin(seconds: float) -> None:  # CPU time, not wall time: the same work under any load
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    a = contention.snapshot()
    with contention.own_work():
        spin(0.3)
    b = contention.snapshot()
    spin(0.3)
    c = contention.snapshot()
    assert contention.window(a, b)["parent_cores"] < 0.15
    assert contention.window(b, c)["parent_cores"] > 0.3
