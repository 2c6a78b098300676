"""The busy-machine judgement: each rule fires on its own, an idle run is not busy, and the
warning says what was seen and what to do. Readings are built by hand (the judgement is pure)."""

from __future__ import annotations

import copy

import pytest

from attnbench.measure.busy import judge, others_limit, warning_lines

GF = 1e9
IDLE = {
    "cores": 2,
    "before": {"load": [0.3, 0.2, 0.1], "others_cores": 0.02, "steal_pct": 0.0,
               "gpu": "unmeasured: no CUDA case"},
    "run": {"others_cores": 0.05, "steal_pct": 0.3, "iowait_pct": 0.1},
    "after": {"gpu": "unmeasured: no CUDA case"},
    "records": {"windows": 84, "under_load": 2, "timed": 84, "noisy": 5},
    "roof_start": {"cpu": {"float32": 176 * GF}},
    "roof_end": {"cpu": {"float32": 172 * GF}},
    "roof_best_known": {"cpu": {"float32": {"flops_per_s": 179 * GF}}},
}


def readings(**changes) -> dict:
    """IDLE with some readings changed, a path spelt with __: readings(run__others_cores=1.2)."""
    c = copy.deepcopy(IDLE)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = c
        for key in path:
            node = node[key]
        node[last] = value
    return c


def test_an_idle_run_is_not_busy():
    verdict = judge(IDLE)
    assert verdict["busy"] is False and verdict["reasons"] == [] and verdict["advice"] == ""
    assert "cpu float32 roof 176→172 GFLOP/s (best known 179)" in verdict["seen"]
    assert warning_lines(verdict) == []


@pytest.mark.parametrize("changes,words", [
    ({"run__others_cores": 1.2, "run__top_others": [{"pid": 9, "name": "hog", "cores": 1.0}]},
     "other processes used 1.2 of the 2 cores on average during the run (busiest seen: hog "
     "(pid 9) 1.0)"),
    ({"records__under_load": 30}, "30 of 84 records ran while other processes used 0.5 cores"),
    ({"run__steal_pct": 25.0}, "CPU steal was 25 % of CPU time"),
    ({"roof_start__cpu__float32": 28 * GF, "roof_end__cpu__float32": 30 * GF},
     "the float32 matmul roof on cpu was 28 GFLOP/s at the start and 30 at the end, 16 % of the "
     "best known 179 GFLOP/s on this machine"),
    ({"roof_best_known": {}, "roof_end__cpu__float32": 100 * GF},
     "it fell to 57 % during the run"),
    ({"records__noisy": 54, "run__steal_pct": 12.0}, "54 of 84 timed records were noisy"),
], ids=["others", "spikes", "steal", "roof vs best", "roof fell", "noisy with steal"])
def test_each_rule_makes_a_run_busy(changes: dict, words: str):
    verdict = judge(readings(**changes))
    assert verdict["busy"] is True
    assert any(words in r for r in verdict["reasons"]), verdict["reasons"]
    assert "--wait-idle" in verdict["advice"] and "--threads" in verdict["advice"]
    assert "taskset" in verdict["advice"]


def test_noisy_records_alone_are_a_note_not_a_busy_verdict():
    verdict = judge(readings(records__noisy=54))
    assert verdict["busy"] is False and verdict["reasons"] == []
    assert "54 of 84 timed records were noisy" in verdict["notes"][0]
    lines = warning_lines(verdict, "run x")
    assert lines and lines[0].startswith("NOTE: run x: 54 of 84") and "WARNING" not in lines[0]
    with_roof = judge(readings(records__noisy=54, roof_best_known={},
                               roof_end__cpu__float32=100 * GF))
    assert with_roof["busy"] and any("noisy" in r for r in with_roof["reasons"])
    assert with_roof["notes"] == []


def test_steal_advice_and_gpu_neighbours():
    steal = judge(readings(run__steal_pct=30.0))
    assert "overcommitted" in steal["advice"]
    gpu = {"gpus": [{"index": 0, "slowdowns": ["hardware thermal slowdown"]}],
           "other_processes": [{"pid": 77, "name": "train.py", "memory_mib": 30000}]}
    verdict = judge(readings(before__gpu=gpu))
    assert verdict["busy"] and "CUDA_VISIBLE_DEVICES" in verdict["advice"]
    assert "another process was on the GPU: train.py (pid 77, 30000 MiB)" in verdict["reasons"]
    assert "GPU 0 was slowed down while idle: hardware thermal slowdown" in verdict["reasons"]


def test_thresholds_are_relative_to_the_cores():
    assert others_limit(2) == 0.5 and others_limit(64) == pytest.approx(12.8)
    assert not judge(readings(cores=64, run__others_cores=4.0))["busy"]
    assert not judge(readings(records__timed=2, records__noisy=2))["busy"]  # too few to judge


def test_missing_readings_are_not_taken_for_idle_or_busy():
    verdict = judge({"cores": 2, "run": {"others_cores": None, "steal_pct": None}})
    assert verdict["busy"] is False and verdict["seen"] == ""


def test_the_warning_names_the_reasons_and_what_was_seen():
    lines = warning_lines(judge(readings(run__others_cores=1.9)), "the new run x")
    assert lines[0].startswith("WARNING: the new run x was made on a busy machine; its timings "
                               "are not reliable: rerun on an idle machine")
    assert lines[1].startswith("  - other processes used 1.9 of the 2 cores")
    assert lines[-1].startswith("  seen: load 0.30 on 2 cores before the run, other processes "
                                "1.9 cores")


def test_a_roof_between_backends_counts_too():
    verdict = judge(readings(roof_best_known={}, roof_during=[
        {"at_s": 700.0, "roofs": {"cpu": {"float32": 90 * GF}}}]))
    assert verdict["busy"]
    assert ("the float32 matmul roof on cpu was 176 GFLOP/s at the start and 172 at the end "
            "(lowest 90 in between): it fell to 51 % during the run") in verdict["reasons"]


def test_a_stored_run_is_judged_again_by_todays_rules():
    from attnbench.measure.busy import run_verdict

    noisy_only = readings(records__noisy=54)
    old = {"contention": noisy_only, "busy": {"busy": True, "reasons": ["54 of 84 noisy"]}}
    assert run_verdict(old)["busy"] is False and run_verdict(old)["notes"]
    assert run_verdict({"busy": {"busy": True}}) == {"busy": True}  # no readings: as stored
    assert run_verdict({"contention": {"error": "x"}, "busy": None}) is None


def test_a_resumed_run_stays_busy_when_an_earlier_session_was():
    """A hog beside session 1, a quiet resume: the run still holds session 1's records, so
    its verdict (stored and re-judged) is busy and says which session."""
    from attnbench.measure.busy import run_verdict
    from attnbench.run.runner import _earlier_sessions

    hogged = readings(run__others_cores=1.2)
    meta = {"contention": hogged, "busy": judge(hogged)}  # run.json after session 1
    earlier = _earlier_sessions(meta)
    assert earlier == [hogged]
    resumed = {"contention": IDLE, "busy": judge(IDLE), "contention_earlier": earlier}
    verdict = run_verdict(resumed)
    assert verdict["busy"] is True and verdict["advice"]
    assert verdict["reasons"][0].startswith("session 1 of this resumed run: other processes")
    assert run_verdict({"contention": IDLE, "contention_earlier": [IDLE]})["busy"] is False
    assert _earlier_sessions({"contention_earlier": [IDLE], "contention": hogged}) == [
        IDLE, hogged]


def test_a_ray_run_is_not_judged_from_the_driver_machine():
    """The cases of a Ray run ran on its nodes: readings of the driver's machine say nothing
    about them (and Ray's own processes there count as others), so no verdict, a note why."""
    verdict = judge({**readings(run__others_cores=1.5), "executor": "ray"})
    assert verdict["busy"] is False and verdict["reasons"] == []
    assert verdict["notes"] == ["not judged busy or idle: its cases ran on ray nodes, and the "
                                "readings here are of the driver's machine only"]
    assert judge({**readings(run__others_cores=1.5), "executor": "local"})["busy"] is True


def test_a_best_known_roof_no_hardware_reaches_is_no_bar():
    """A run.json that stored a forged best-known roof (1e18 FLOP/s, from a cache a plugin
    wrote) is not judged busy for it; a plausible best known still counts."""
    forged = judge(readings(roof_best_known__cpu__float32__flops_per_s=1e18))
    assert forged["busy"] is False, forged
    real = judge(readings(roof_best_known__cpu__float32__flops_per_s=400 * GF))
    assert real["busy"] is True and "best known 400" in real["reasons"][0]


def test_stray_processes_of_the_run_make_it_busy_and_are_named():
    """The run's own processes outside its workers (a plugin's process, a leftover) count as
    their own reading: at the busy limit the run is busy and they are named."""
    stray = judge(readings(run__stray_cores=0.8,
                           run__top_stray=[{"pid": 4242, "name": "spinner", "cores": 0.8}]))
    assert stray["busy"] is True
    assert "outside its workers used 0.8 of the 2 cores" in stray["reasons"][0]
    assert "spinner (pid 4242) 0.8" in stray["reasons"][0]
    assert judge(readings(run__stray_cores=0.3))["busy"] is False
