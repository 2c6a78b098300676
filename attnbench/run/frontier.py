"""`attnbench run --frontier`: double the sequence length per backend until it fails or a limit."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from attnbench.case import MAX_INT, Case
from attnbench.case_checks import variant_problem
from attnbench.errors import UsageError
from attnbench.plugin.backend import name_of
from attnbench.record import STOPPED, Status
from attnbench.results_writer import writing
from attnbench.run.plan import Plan, RunResult
from attnbench.run.runner import RunConfig, open_sweep
from attnbench.run.sweep import Sweep
from attnbench.run.tasks import Pool

STOPS = (*STOPPED, Status.UNSUPPORTED)  # a size the backend refuses ends its climb too
DEFAULT_MAX = {"cpu": 65536, "cuda": 262144}
RESUME_REFUSED = ("--resume cannot continue a --frontier run (its chains are not a plan to "
                  "finish); start the --frontier run again into a new --out")


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
        return {"scenario": self.scenario, "backend": name_of(self.backend),
                "device": self.case.device, "start_case": self.start,
                "reached_seq_kv": self.reached,
                "stopped_at_seq_kv": self.stopped_at, "stop": self.status, "reason": self.reason}

    start: str = ""


def doubled(case: Case) -> Case:
    """The same case with twice the keys (and queries, unless a single decode query).

    What is measured in positions grows with them: each document, each query length (when
    the queries double) and each key length doubles; window and page sizes stay (a model's)."""
    seq_q = case.seq_q if case.seq_q == 1 else case.seq_q * 2

    def twice(lens: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return None if lens is None else tuple(2 * n for n in lens)

    return replace(case, seq_q=seq_q, seq_kv=case.seq_kv * 2, doc_lens=twice(case.doc_lens),
                   q_lens=twice(case.q_lens) if seq_q != case.seq_q else case.q_lens,
                   kv_lens=twice(case.kv_lens))


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
    problem = variant_problem(nxt) or (None if nxt.seq_kv <= MAX_INT else "over 2**31-1 keys")
    if nxt.seq_kv > limit:
        chain.status, chain.reason = "limit", f"next length {nxt.seq_kv} is over --frontier-max"
        rec["frontier_stop"] = "limit"
    elif problem:
        chain.status, chain.reason = "limit", f"the case cannot double to {nxt.seq_kv}: {problem}"
        rec["frontier_stop"] = "limit"
    else:
        chain.case = nxt


def run_frontier(plan: Plan, config: RunConfig) -> RunResult:
    """Climb every chain, backend by backend in one worker each; one run folder, one writer.

    Records go to records.jsonl as each finishes, worker logs to logs/, where each chain
    stopped to frontier.json (written also when the run is interrupted).
    """
    if config.resume:
        raise UsageError(RESUME_REFUSED)
    chains = [Chain(s, b, c, start=c.id) for s, c in starts(plan) for b in plan.backends]
    with open_sweep(plan, config, sum(_levels(c, config.frontier_max) for c in chains)) as sweep:
        sweep.writer.write_meta(frontier={"max_seq_kv": config.frontier_max,
                                          "chains": len(chains)})
        try:
            if config.opts.time_it:
                sweep.measure_roofs(config.roof_s)
            with sweep.tasks.pool() as pool:
                for backend in plan.backends:
                    _climb(sweep, pool, backend, [c for c in chains if c.backend is backend],
                           config.frontier_max)
            if config.opts.time_it:
                sweep.measure_end_roofs(config.roof_s)
        except KeyboardInterrupt as exc:  # SIGINT/SIGTERM: open_sweep marks run.json stopped
            _interrupted(chains, str(exc) or "interrupted by SIGINT")
            raise
        finally:
            _write_stops(sweep.out, chains)
    return sweep.result


def _interrupted(chains: list[Chain], why: str) -> None:
    """Chains still climbing when the run stopped: said so in frontier.json, not "running"."""
    for chain in chains:
        if chain.status == "running":
            chain.stopped_at, chain.status = chain.case.seq_kv, "interrupted"
            chain.reason = f"the run stopped before this length finished ({why})"


def _limit(case: Case, frontier_max: int | None) -> int:
    return frontier_max or DEFAULT_MAX.get(case.device, 65536)


def _levels(chain: Chain, frontier_max: int | None) -> int:
    """At most how many cases a chain runs (the progress total)."""
    n, case = 1, chain.case
    while doubled(case).seq_kv <= _limit(case, frontier_max):
        n, case = n + 1, doubled(case)
    return n


def _climb(sweep: Sweep, pool: Pool, backend: Any, chains: list[Chain],
           frontier_max: int | None) -> None:
    """One backend's chains, level by level, in its worker (restarted after a crash)."""
    while live := [c for c in chains if c.status == "running"]:
        for chain in live:
            rec, = sweep.records(pool, chain.scenario, chain.case, [backend])
            _advance(chain, rec, _limit(chain.case, frontier_max))
            sweep.finish(rec)


def _write_stops(out: Path, chains: list[Chain]) -> None:
    with writing(out / "frontier.json"):
        (out / "frontier.json").write_text(json.dumps([c.to_dict() for c in chains], indent=2))
