"""`attnbench run --frontier`: double the sequence length per backend until it fails or a limit."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.errors import UsageError
from attnbench.execute import Options
from attnbench.record import STOPPED
from attnbench.results import RunWriter, new_run_id
from attnbench.runner import Plan, RunResult, run_plan

STOPS = (*STOPPED, "unsupported")  # a size the backend refuses ends its climb too
DEFAULT_MAX = {"cpu": 65536, "cuda": 262144}


@dataclass
class Chain:
    """One backend doubling one starting case; where it got and why it stopped."""

    scenario: str
    backend: Any
    case: Case
    reached: int | None = None
    stopped_at: int | None = None
    status: str = "running"
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "backend": self.backend.name, "device": self.case.device,
                "start_case": self.start, "reached_seq_kv": self.reached,
                "stopped_at_seq_kv": self.stopped_at, "stop": self.status, "reason": self.reason}

    start: str = ""


def doubled(case: Case) -> Case:
    """The same case with twice the keys (and queries, unless a single decode query)."""
    seq_q = case.seq_q if case.seq_q == 1 else case.seq_q * 2
    return replace(case, seq_q=seq_q, seq_kv=case.seq_kv * 2)


def starts(plan: Plan) -> list[tuple[str, Case]]:
    """Per scenario and variant (every field but the lengths), its smallest case."""
    best: dict[tuple[str, Case], tuple[str, Case]] = {}
    for scenario, case in plan.items:
        key = (scenario, replace(case, seq_q=0, seq_kv=0))
        if key not in best or case.seq_kv < best[key][1].seq_kv:
            best[key] = (scenario, case)
    return list(best.values())


def _stop_reason(rec: dict[str, Any]) -> str:
    return str(rec.get("error") or "; ".join(rec.get("reasons") or []) or rec.get("status"))


def _advance(chain: Chain, rec: dict[str, Any], limit: int) -> None:
    """Update a chain with the record of its current case."""
    status = str(rec.get("status"))
    if status in STOPS:
        chain.stopped_at, chain.status, chain.reason = chain.case.seq_kv, status, _stop_reason(rec)
        rec["frontier_stop"] = status
        return
    chain.reached = chain.case.seq_kv
    nxt = doubled(chain.case)
    if nxt.seq_kv > limit:
        chain.status, chain.reason = "limit", f"next length {nxt.seq_kv} is over --frontier-max"
        rec["frontier_stop"] = "limit"
    else:
        chain.case = nxt


def run_frontier(plan: Plan, out_dir: Path | None, opts: Options, meta: dict[str, Any],
                 limit: int | None = None, **run_kw: Any) -> RunResult:
    """Run every chain level by level; records go to one run folder, stops to frontier.json.

    run_kw (progress, timeout_s...) is passed on to each run_plan call.
    """
    if run_kw.pop("resume", False):
        raise UsageError("--resume cannot continue a --frontier run; start a new one")
    run_id = new_run_id()
    out = Path(out_dir) if out_dir else Path("results") / run_id
    writer = RunWriter(out, {"run_id": run_id, **meta})
    result = RunResult(out)
    chains = [Chain(s, b, c, start=c.id) for s, c in starts(plan) for b in plan.backends]
    try:
        while any(c.status == "running" for c in chains):
            for backend in plan.backends:
                live = [c for c in chains if c.backend is backend and c.status == "running"]
                if live:
                    step = replace(plan, items=[(c.scenario, c.case) for c in live],
                                   backends=[backend])
                    _level(live, step, opts, limit, writer, result, run_kw)
        result.finished = True
    finally:
        _write_stops(out, chains)
        writer.close(result.finished, records=len(result.records))
    return result


def _level(live: list[Chain], plan: Plan, opts: Options, limit: int | None,
           writer: RunWriter, result: RunResult, run_kw: dict[str, Any]) -> None:
    """Run the current case of every live chain of one backend (one run_plan call)."""
    with tempfile.TemporaryDirectory(prefix="attnbench-frontier-") as tmp:
        known = {"roofs": writer.meta["roofs"]} if writer.meta.get("roofs") else {}
        step = run_plan(plan, Path(tmp) / "step", opts, known, **run_kw)  # roof measured once
        step_meta = json.loads((Path(tmp) / "step" / "run.json").read_text())
    if step_meta.get("roofs") and "roofs" not in writer.meta:
        writer.write_meta(roofs=step_meta["roofs"])
    by_item = {(r["scenario"], r["case_id"]): r for r in step.records}
    for chain in live:
        rec = by_item.get((chain.scenario, chain.case.id))
        if rec is None:  # the step was interrupted before this case
            raise KeyboardInterrupt
        _advance(chain, rec, limit or DEFAULT_MAX.get(chain.case.device, 65536))
        writer.append(rec)
        result.records.append(rec)


def _write_stops(out: Path, chains: list[Chain]) -> None:
    (out / "frontier.json").write_text(json.dumps([c.to_dict() for c in chains], indent=2))
