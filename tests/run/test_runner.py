"""Runner pieces: progress output, default timeout, torn-line repair, plan description."""

from __future__ import annotations

import io
import re

from attnbench.case import Case
from attnbench.measure.timing import TimerConfig
from attnbench.run.execute import Options
from attnbench.run.plan import make_plan
from attnbench.run.progress import Progress, RichProgress, auto_progress, record_line
from attnbench.run.runner import _cut_torn_tail, default_timeout

REC = {"case_id": "b1-h2:2-q32-k32-d16-float32-none-fwd", "backend": "numpy-naive",
       "status": "ok", "timing": {"median_ms": 0.0123}}


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_progress_prints_one_line_a_record():
    out = io.StringIO()
    p = auto_progress(out)
    assert type(p) is Progress
    with p.running(total=4, done=1):
        p.starting(REC["case_id"], "numpy-naive")
        p.advance(REC)
        p.advance({**REC, "status": "crashed", "error": "worker killed by SIGSEGV", "timing": None})
    lines = out.getvalue().splitlines()
    assert lines[0] == "resuming: 1/4 records already done"
    assert lines[1] == f"[2/4] {REC['case_id']} numpy-naive: ok 0.012 ms"
    assert lines[2].endswith("crashed (worker killed by SIGSEGV)")


def test_rich_progress_on_a_terminal():
    out = Tty()
    p = auto_progress(out)
    assert isinstance(p, RichProgress)
    with p.running(total=2):
        p.starting(REC["case_id"], "numpy-naive")
        p.advance(REC)
        p.advance({**REC, "status": "timeout", "error": "no reply within 3 s", "timing": None})
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())  # drop terminal codes
    assert "2/2" in text and "timeout (no reply within 3 s)" in text


def test_record_line_without_timing():
    assert record_line(1, 1, {"case_id": "c", "backend": "b", "status": "unsupported"}) == \
        "[1/1] c b: unsupported"


def test_default_timeout_grows_with_the_budget():
    assert default_timeout(Options(timer=TimerConfig(budget_s=2.0))) == 320.0
    assert default_timeout(Options(time_it=False)) == 300.0


def test_cut_torn_tail(tmp_path):
    f = tmp_path / "records.jsonl"
    f.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    _cut_torn_tail(f)
    assert f.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    _cut_torn_tail(f)  # a clean file is left alone
    assert f.read_bytes() == b'{"a": 1}\n{"b": 2}\n'


def test_plan_describe_lists_every_case(registry, tmp_path):
    from attnbench.scenario import load_scenario

    (tmp_path / "s.toml").write_text(
        'name = "s"\n[base]\nbatch = 1\nheads = 2\nhead_dim = 16\n[sweep]\nseq_len = [8, 16]\n')
    plan = make_plan(registry, [load_scenario(tmp_path / "s.toml")], ["numpy-naive"], ["cpu"], [])
    d = plan.describe()
    assert d["backends"] == ["numpy-naive"] and d["devices"] == ["cpu"] and d["total"] == 2
    assert d["cases"][0] == f"s/{Case(1, 2, 2, 8, 8, 16).id}/cpu"
    assert plan.catalog is not None and plan.catalog.get("numpy-naive").name == "numpy-naive"
