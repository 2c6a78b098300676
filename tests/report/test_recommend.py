"""attnbench recommend: winners, ties, crossovers and exclusions on hand-built records."""

from __future__ import annotations

import json
import random
import re
import zlib
from pathlib import Path
from typing import Any

import pytest

from attnbench.case import Case
from attnbench.cli import main
from attnbench.measure.timing import summarize
from attnbench.record import new_record
from attnbench.report.groups import read_runs
from attnbench.report.recommend import Options, Point, recommend
from attnbench.report.recommend_case import parse_bytes
from attnbench.report.recommend_json import from_dict, to_dict
from attnbench.results_writer import RunWriter

REPO = Path(__file__).resolve().parents[2]
CPU = {"host": "h", "cpu": "Test CPU", "cores": 2}


class Named:
    """What new_record reads of a backend: its name and framework."""

    def __init__(self, name: str):
        self.name, self.framework = name, "numpy"


def timing(median: float, seed: int) -> dict[str, Any]:
    """40 samples within ±1 % of the median: a tight, plausible timing."""
    rng = random.Random(seed)
    samples = [median * (1 + rng.uniform(-0.01, 0.01)) for _ in range(40)]
    return {**summarize(samples), "samples_ms": samples}


def agreement(passed: bool, ratio: float) -> dict[str, Any]:
    out = {"name": "out", "max_abs_err": ratio * 1e-3, "bound": 1e-3, "error_over_bound": ratio,
           "nonfinite": 0, "passed": passed, "rule": "test"}
    return {"passed": passed, "outputs": [out]}


def rec(backend: str, seq: int, ms: float, status: str = "ok", *, seq_q: int | None = None,
        peak: float = 2**20, ratio: float = 0.1, head_dim: int = 64,
        passed: bool | None = None, timed: bool = True) -> dict[str, Any]:
    """A record of a causal fp32 CPU case; ok and mismatch records are checked, and timed
    unless not timed (a check run's)."""
    case = Case(1, 8, 8, seq if seq_q is None else seq_q, seq, head_dim, mask="causal")
    fields: dict[str, Any] = {}
    if status in ("ok", "mismatch"):
        ok = status == "ok" if passed is None else passed
        fields = {"timing": timing(ms, seed=zlib.crc32(f"{backend} {seq} {seq_q}".encode())),
                  "agreement": agreement(ok, ratio), "memory": {"peak_bytes": peak}}
        if not timed:
            fields = {"agreement": fields["agreement"]}
    elif status == "unsupported":
        fields = {"reasons": [f"{backend} cannot run this case"]}
    else:
        fields = {"error": f"{backend} raised"}
    return new_record("test", case, Named(backend), status, **fields)


def write_run(folder: Path, records: list[dict[str, Any]],
              env: dict[str, Any] | None = None) -> Path:
    writer = RunWriter(folder, {"run_id": folder.name, "environment": env or CPU})
    for r in records:
        writer.append(r)
    writer.close(True)
    return folder


def judged(tmp_path: Path, records: list[dict[str, Any]], options: Options | None = None):
    return recommend(read_runs([write_run(tmp_path / "run", records)]), options or Options())


def points(result: Any, bucket: int = 0) -> dict[int, Point]:
    return {p.length: p for p in result.buckets[bucket].points}


def test_a_clear_winner_with_its_margin_and_significance(tmp_path: Path):
    result = judged(tmp_path, [rec("fast", 1024, 1.0), rec("slow", 1024, 2.0)])
    p = points(result)[1024]
    assert (p.winner, p.verdict, p.next, p.tied) == ("fast", "clear", "slow", [])
    assert p.margin == pytest.approx(2.0, rel=0.03) and p.p_value < 0.001


def test_a_tie_within_noise_is_said_and_prefer_decides_it(tmp_path: Path):
    records = [rec("a", 1024, 1.00), rec("b", 1024, 1.03), rec("c", 1024, 3.0)]
    p = points(judged(tmp_path / "1", records))[1024]
    assert (p.winner, p.verdict, p.tied, p.preferred) == ("a", "tie", ["b"], False)
    assert p.next == "c" and p.margin == pytest.approx(3.0, rel=0.03)
    chosen = points(judged(tmp_path / "2", records, Options(prefer=("b", "a"))))[1024]
    assert (chosen.winner, chosen.tied, chosen.preferred) == ("b", ["a"], True)
    assert chosen.margin == pytest.approx(3.0 / 1.03, rel=0.03)  # from the chosen winner
    ignored = points(judged(tmp_path / "3", records, Options(prefer=("c",))))[1024]
    assert ignored.winner == "a"  # prefer breaks ties only: c is clearly slower


def test_a_crossover_where_the_winner_changes(tmp_path: Path):
    records = [rec("short", n, 1.0 if n < 1024 else 4.0) for n in (256, 512, 1024, 2048)]
    records += [rec("long", n, 2.0) for n in (256, 512, 1024, 2048)]
    bucket = judged(tmp_path, records).buckets[0]
    assert [(r.start, r.end, r.winner) for r in bucket.ranges] == [
        (256, 512, "short"), (1024, 2048, "long")]
    assert [(c.after, c.before, c.old, c.new) for c in bucket.crossovers] == [
        (512, 1024, "short", "long")]


def test_two_names_of_one_kernel_make_no_crossover(tmp_path: Path):
    """Tied at every length, the fastest of the two alternating: one range, no crossover."""
    records = [rec("sdpa", n, 1.0 + 0.01 * (n == 512)) for n in (256, 512, 1024)]
    records += [rec("cudnn", n, 1.005) for n in (256, 512, 1024)]
    bucket = judged(tmp_path, records).buckets[0]
    assert [p.winner for p in bucket.points] == ["sdpa", "cudnn", "sdpa"]
    assert [(r.start, r.end, r.winner, r.tied) for r in bucket.ranges] == [
        (256, 1024, "sdpa", ["cudnn"])]
    assert bucket.crossovers == []


def test_a_fastest_backend_with_a_mismatch_in_the_bucket_is_never_recommended(tmp_path: Path):
    records = [rec("wrong", 256, 0.1), rec("wrong", 1024, 0.4, "mismatch"),
               rec("right", 256, 1.0), rec("right", 1024, 4.0),
               rec("wrong", 256, 0.1, head_dim=128), rec("right", 256, 1.0, head_dim=128)]
    result = judged(tmp_path, records)
    d64, d128 = (b for b in result.buckets if b.key.head_dim == 64), (
        b for b in result.buckets if b.key.head_dim == 128)
    d64, d128 = next(d64), next(d128)
    assert [p.winner for p in d64.points] == ["right", "right"]  # even where wrong was ok
    assert [(e.backend, e.kind) for e in d64.excluded] == [("wrong", "failing")]
    assert "mismatch at b1-h8:8-q1024-k1024-d64" in d64.excluded[0].reason
    assert d128.points[0].winner == "wrong"  # another bucket: its records there are ok


def test_an_unverified_or_failed_record_bars_its_backend(tmp_path: Path):
    records = [rec("unchecked", 256, 0.1, passed=False), rec("crashing", 256, 0.1),
               rec("crashing", 512, 0.1, "crashed"), rec("steady", 256, 1.0),
               rec("steady", 512, 1.0)]
    bucket = judged(tmp_path, records).buckets[0]
    assert {(e.backend, e.kind) for e in bucket.excluded} == {
        ("unchecked", "unverified"), ("crashing", "failing")}
    assert {p.winner for p in bucket.points} == {"steady"}


def test_memory_budget_and_error_bound_exclude_at_the_case(tmp_path: Path):
    records = [rec("greedy", 1024, 1.0, peak=10 * 2**30, ratio=0.9),
               rec("lean", 1024, 2.0, peak=2**30, ratio=0.1)]
    assert points(judged(tmp_path / "1", records))[1024].winner == "greedy"
    budget = points(judged(tmp_path / "2", records, Options(memory_budget=parse_bytes("8GiB"))))
    assert budget[1024].winner == "lean"
    assert [(e.backend, e.kind) for e in budget[1024].excluded] == [("greedy", "memory")]
    assert "10 GiB over the budget 8 GiB" in budget[1024].excluded[0].reason
    accurate = points(judged(tmp_path / "3", records, Options(max_error_over_bound=0.5)))
    assert accurate[1024].winner == "lean"
    assert [(e.backend, e.kind) for e in accurate[1024].excluded] == [("greedy", "error")]


def test_unsupported_and_oom_leave_a_backend_out_of_that_case_only(tmp_path: Path):
    records = [rec("big", 256, 0.5), rec("big", 4096, 0.0, "oom"), rec("other", 256, 1.0),
               rec("other", 4096, 9.0), rec("narrow", 256, 0.0, "unsupported")]
    bucket = judged(tmp_path, records).buckets[0]
    assert bucket.excluded == []
    assert [p.winner for p in bucket.points] == ["big", "other"]
    assert {(e.backend, e.kind) for p in bucket.points for e in p.excluded} == {
        ("big", "oom"), ("narrow", "unsupported")}


def test_decode_and_prefill_are_separate_buckets(tmp_path: Path):
    records = [rec("decoder", 1024, 0.01, seq_q=1), rec("prefiller", 1024, 0.5, seq_q=1),
               rec("decoder", 1024, 9.0), rec("prefiller", 1024, 1.0)]
    result = judged(tmp_path, records)
    by_phase = {b.key.phase: b for b in result.buckets}
    assert set(by_phase) == {"decode", "prefill"}
    assert by_phase["decode"].key.seq_q == 1 and by_phase["prefill"].key.seq_q is None
    assert by_phase["decode"].points[0].winner == "decoder"
    assert by_phase["prefill"].points[0].winner == "prefiller"


def test_runs_on_one_machine_pool_and_other_machines_stay_apart(tmp_path: Path):
    first = write_run(tmp_path / "a", [rec("x", 256, 1.0), rec("y", 256, 2.0)])
    second = write_run(tmp_path / "b", [rec("x", 256, 1.0, "mismatch"), rec("y", 256, 2.0)])
    other = write_run(tmp_path / "c", [rec("x", 256, 1.0), rec("y", 256, 2.0)],
                      {**CPU, "cpu": "Other CPU"})
    result = recommend(read_runs([first, second, other]))
    assert len(result.buckets) == 2
    pooled = next(b for b in result.buckets if "Test CPU" in b.key.machine)
    assert len(pooled.runs) == 2 and pooled.points[0].winner == "y"  # x failed in run b
    apart = next(b for b in result.buckets if "Other CPU" in b.key.machine)
    assert apart.points[0].winner == "x"


def test_a_check_run_pooled_with_a_timed_one_adds_no_timing(tmp_path: Path):
    timed = write_run(tmp_path / "a", [rec("x", 256, 1.0), rec("y", 256, 2.0)])
    checked = write_run(tmp_path / "b", [rec(b, 256, 0.0, timed=False) for b in "xyz"])
    p = recommend(read_runs([timed, checked])).buckets[0].points[0]
    assert (p.winner, p.next) == ("x", "y")
    assert [(e.backend, e.kind) for e in p.excluded] == [("z", "untimed")]
    budget = recommend(read_runs([timed, checked]), Options(memory_budget=2**30))
    assert budget.buckets[0].points[0].winner == "x"  # memory judged on the timed records


def test_json_round_trip_and_schema(tmp_path: Path, capsys):
    records = [rec("short", n, 1.0 if n < 1024 else 4.0) for n in (256, 1024)]
    records += [rec("long", n, 2.0) for n in (256, 1024)] + [rec("bad", 256, 0.1, "mismatch")]
    run = write_run(tmp_path / "run", records)
    out = tmp_path / "rec.json"
    assert main(["recommend", str(run), "--json", str(out), "--prefer", "long"]) == 0
    data = json.loads(out.read_text())
    assert data["schema"] == "attnbench.recommend/1" and data["runs"][0]["run_id"] == "run"
    assert data["options"]["prefer"] == ["long"]
    bucket = data["buckets"][0]
    assert bucket["key"]["group"] == 1 and bucket["lengths"] == [256, 1024]
    assert [(r["start"], r["winner"]) for r in bucket["ranges"]] == [(256, "short"),
                                                                     (1024, "long")]
    assert bucket["crossovers"] == [{"after": 256, "before": 1024, "old": "short",
                                     "new": "long"}]
    assert bucket["excluded"][0]["backend"] == "bad"
    assert bucket["points"][0]["margin"] == pytest.approx(2.0, rel=0.03)
    again = from_dict(data)
    assert again == recommend(read_runs([run]), Options(prefer=("long",)))
    assert to_dict(again) == data
    shown = capsys.readouterr().out
    assert "crossover between 256 and 1024: short → long" in shown
    assert "bad never recommended here (failing)" in shown


def test_markdown_format_and_a_preferred_name_no_run_has(tmp_path: Path, capsys):
    run = write_run(tmp_path / "run", [rec("a", 256, 1.0), rec("b", 256, 2.0)])
    assert main(["recommend", str(run), "--format", "markdown", "--prefer", "b,typo"]) == 0
    shown = capsys.readouterr()
    assert shown.err == "note: --prefer names typo, which no record of these runs has\n"
    lines = shown.out.splitlines()
    assert lines[0].startswith("| # | device |") and lines[1].startswith("|---|")
    assert re.search(r"\| a \| ×(1\.9\d|2\.0\d) over b \(p\\<0\.001\) \| – \|$", lines[2])


@pytest.mark.parametrize("args, message", [
    (["recommend", "/nonexistent/run"], "not a run folder"),
    (["recommend", "RUN", "--memory-budget", "8G"], "not a size: '8G'"),
    (["recommend", "RUN", "--memory-budget=-1GiB"], "not a size"),
    (["recommend", "RUN", "--max-error-over-bound", "nan"], "finite"),
    (["recommend", "RUN", "--prefer", "a,,b"], "empty backend name"),
    (["recommend", "RUN", "--format", "html"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, args: list[str],
                                          message: str):
    run = write_run(tmp_path / "run", [rec("a", 256, 1.0)])
    argv = [str(run) if a == "RUN" else a for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnbench: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_sizes():
    assert parse_bytes("8GiB") == 8 * 2**30 and parse_bytes("512 MB") == 512e6
    assert parse_bytes("1e9") == 1e9 and parse_bytes("4096") == 4096
    for bad in ("8G", "0", "GiB", "inf", "1e999GB"):
        with pytest.raises(ValueError):
            parse_bytes(bad)


def test_the_report_has_a_recommendation_section(tmp_path: Path):
    from attnbench.report.write import write_report

    run = write_run(tmp_path / "run", [rec("a", 256, 1.0), rec("b", 256, 2.0)])
    report = write_report([run])
    md, page = report.markdown.read_text(), report.html.read_text()
    assert "## Recommendation" in md and re.search(r"\| \*\*a\*\* \| ×\S+ over b", md)
    assert "Recommendation</h2>" in page and " over b (p&lt;0.001)" in page


def test_the_report_of_a_check_run_says_nothing_can_be_recommended(tmp_path: Path):
    from attnbench.report.recommend_view import NOTHING_TIMED, recommendation_section

    run = write_run(tmp_path / "run", [rec(b, 256, 0.0, timed=False) for b in "ab"])
    blocks = recommendation_section(read_runs([run]))
    assert [getattr(b, "text", None) for b in blocks] == ["Recommendation", NOTHING_TIMED]


def test_on_the_h200_sweep_the_cudnn_kernel_wins_d128_16k_under_two_names():
    """torch-sdpa chose cuDNN there: the two names of one kernel tie; torch-naive never wins."""
    result = recommend(read_runs([REPO / "results/baselines/h200/gpu-sweep"]))
    bucket = next(b for b in result.buckets
                  if b.key.head_dim == 128 and b.key.variant == "none")
    assert "NVIDIA H200" in bucket.key.machine and bucket.key.phase == "prefill"
    p = points(result, result.buckets.index(bucket))[16384]
    assert {p.winner, *p.tied} == {"torch-sdpa", "torch-sdpa-cudnn"} and p.verdict == "tie"
    assert p.next == "torch-sdpa-flash" and p.margin > 1.3
    winners = {q.winner for b in result.buckets for q in b.points}
    assert "torch-naive" not in winners and winners <= {"torch-sdpa", "torch-sdpa-cudnn"}


def test_on_the_cpu_baseline_every_length_has_an_agreeing_winner():
    run = read_runs([REPO / "results/baselines/cpu-2core"])[0]
    result = recommend([run])
    assert {b.key.phase for b in result.buckets} == {"decode", "prefill"}
    status = {(r["case_id"], r["backend"]): r["status"] for r in run.records}
    for b in result.buckets:
        for p in b.points:
            assert p.winner is not None and status[(p.case_id, p.winner)] == "ok"
            fastest = min(m for _, m in p.ranking)
            assert p.winner_ms == fastest  # no --prefer: the fastest of the tied wins


def test_a_real_run_and_a_wrong_check_through_the_cli(cli, real_run, tmp_path: Path):
    """A fresh timed run gets a winner at every length; a check run that caught a wrong
    backend names it excluded (and, untimed, recommends nobody)."""
    out = tmp_path / "rec.json"
    proc = cli("recommend", str(real_run("base")), "--json", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    points = [p for b in json.loads(out.read_text())["buckets"] for p in b["points"]]
    assert points and all(p["winner"] for p in points)
    proc = cli("recommend", str(real_run("wrong")), "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    assert "slow-copy never recommended here (failing): mismatch at" in proc.stdout
    assert "none eligible" in proc.stdout
    proc = cli("recommend", str(tmp_path / "missing"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "not a run folder" in proc.stderr
