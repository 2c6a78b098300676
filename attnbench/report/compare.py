"""`attnbench compare BASE NEW`: per-case ratio, significance, verdict and the regression gate."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from attnbench.errors import UsageError
from attnbench.measure.busy import run_verdict, warning_lines
from attnbench.record import NOT_OK, Status, median_ms, record_key
from attnbench.report.groups import Run, read_runs
from attnbench.sanitize import plain

ALPHA = 0.05
DEFAULTS = {"cpu": (0.10, 0.050), "cuda": (0.05, 0.010)}  # (threshold, min_abs ms) per device
ENV_KEYS = ("host", "cpu", "gpu", "python", "versions")
GPU_KEYS = ("name", "driver", "cuda")  # not clocks, temperature, power: they vary every run


@dataclass
class Row:
    """One case and backend present in both runs."""

    key: tuple[str, str, str, str]
    base_status: str
    new_status: str
    base_ms: float | None
    new_ms: float | None
    p_value: float | None
    verdict: str  # faster, slower, same, regression, new failure, fixed, untimed
    gated: bool
    unreliable: bool = False  # a timing verdict between runs either of which was busy

    @property
    def ratio(self) -> float | None:
        return self.new_ms / self.base_ms if self.base_ms and self.new_ms else None


def mann_whitney_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Mann-Whitney U p-value; scipy when importable, else the normal approximation."""
    if len(a) < 2 or len(b) < 2:
        return None
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:
        return _mann_whitney_normal(a, b)
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _mann_whitney_normal(a: list[float], b: list[float]) -> float:
    """U with mid-ranks for ties, normal approximation with tie and continuity corrections."""
    pooled = sorted((v, i) for i, v in enumerate(a + b))
    ranks = [0.0] * len(pooled)
    ties, i = 0.0, 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[pooled[k][1]] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    n1, n2 = len(a), len(b)
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def timing_samples(rec: dict[str, Any]) -> list[float]:
    """The raw samples in ms; none when a stored list holds anything but finite numbers."""
    s = (rec.get("timing") or {}).get("samples_ms")
    ok = isinstance(s, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in s)
    return [float(x) for x in s] if ok else []


def ranges_apart(base: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when the p20-p80 ranges of the two timings do not overlap."""
    b, n = base.get("timing") or {}, new.get("timing") or {}
    try:
        return float(n["p20_ms"]) > float(b["p80_ms"]) or float(b["p20_ms"]) > float(n["p80_ms"])
    except (KeyError, TypeError, ValueError):
        return False


def _newly_failing(base_status: str, new_status: str) -> bool:
    """A failure the base did not have; a wrong answer is new unless the base was wrong too."""
    if new_status == Status.MISMATCH:
        return base_status != Status.MISMATCH
    return new_status in NOT_OK and base_status not in NOT_OK


def compare_pair(base: dict[str, Any], new: dict[str, Any], threshold: float | None,
                 min_abs_ms: float | None) -> Row:
    """Verdict for one case: a gated regression needs ratio, absolute change and significance."""
    dev_thr, dev_abs = DEFAULTS.get(str(new.get("device")), DEFAULTS["cpu"])
    thr = dev_thr if threshold is None else threshold
    floor = dev_abs if min_abs_ms is None else min_abs_ms
    bs, ns = str(base.get("status")), str(new.get("status"))
    b_ms, n_ms = median_ms(base), median_ms(new)
    row = Row(record_key(new), bs, ns, b_ms, n_ms, None, "same", False)
    if _newly_failing(bs, ns):
        row.verdict, row.gated = "new failure", True
        return row
    if bs in NOT_OK and ns == Status.OK:
        row.verdict = "fixed"
        return row
    if bs == Status.OK and ns == Status.UNSUPPORTED:
        row.verdict, row.gated = "now unsupported", True  # lost coverage is not a pass
        return row
    if not b_ms or not n_ms:
        row.verdict = "untimed"
        return row
    row.p_value = mann_whitney_p(timing_samples(base), timing_samples(new))
    significant = row.p_value is not None and row.p_value < ALPHA
    if not timing_samples(base) and not timing_samples(new):  # no raw samples stored:
        significant = ranges_apart(base, new)  # the p20-p80 ranges must not overlap
    big = abs(n_ms - b_ms) > floor
    if n_ms / b_ms > 1 + thr and big:
        row.verdict = "regression" if significant else "slower"
        row.gated = significant
    elif b_ms / n_ms > 1 + thr and big and significant:
        row.verdict = "faster"
    return row


def compare_runs(base: Run, new: Run, threshold: float | None = None,
                 min_abs_ms: float | None = None) -> tuple[list[Row], list[tuple]]:
    """Rows for every key in both runs, and the keys only the base run has."""
    new_by_key = {record_key(r): r for r in new.records}
    base_by_key = {record_key(r): r for r in base.records}
    rows = [compare_pair(base_by_key[k], new_by_key[k], threshold, min_abs_ms)
            for k in base_by_key if k in new_by_key]
    missing = [k for k in base_by_key if k not in new_by_key]
    return rows, missing


def geomean_by_backend(rows: list[Row]) -> dict[str, tuple[float, int]]:
    """Geometric mean of new/base median ratios per backend, with the number of cases."""
    logs: dict[str, list[float]] = {}
    for r in rows:
        if r.ratio:
            logs.setdefault(r.key[3], []).append(math.log(r.ratio))
    return {b: (math.exp(sum(v) / len(v)), len(v)) for b, v in sorted(logs.items())}


def environment_differences(base: Run, new: Run) -> list[str]:
    """What differs between the environments the two runs were measured in (device name,
    versions, host...): a Ray run's are its nodes', not its driver's."""
    bs, ns = measured_environments(base), measured_environments(new)
    out = _env_diff(bs[0], ns[0])
    if len(bs) > 1 or len(ns) > 1:
        if {_env_key(e) for e in bs} != {_env_key(e) for e in ns}:
            out.append(f"the runs' node environments differ: {len(bs)} kind(s) in the base run, "
                       f"{len(ns)} in the new one")
    return out


def measured_environments(run: Run) -> list[dict[str, Any]]:
    """The environments a run's records were measured in, distinct (by what compare looks
    at), in order: its Ray nodes' (run.json `nodes`), else its own."""
    nodes = run.meta.get("nodes")
    envs = [n["environment"] for n in nodes.values()
            if isinstance(n, dict) and isinstance(n.get("environment"), dict)
            ] if isinstance(nodes, dict) else []
    return list({_env_key(e): e for e in envs or [run.environment]}.values())


def _env_key(env: dict[str, Any]) -> str:
    return json.dumps(_comparable(env), sort_keys=True, default=str)


def _env_diff(be: dict[str, Any], ne: dict[str, Any]) -> list[str]:
    out = []
    be, ne = _comparable(be), _comparable(ne)
    for key in ENV_KEYS:
        if key == "versions":
            bv, nv = be.get(key) or {}, ne.get(key) or {}
            for lib in sorted(set(bv) | set(nv)):
                if bv.get(lib) != nv.get(lib):
                    out.append(f"{lib} version {bv.get(lib)} vs {nv.get(lib)}")
        elif be.get(key) != ne.get(key):
            out.append(f"{key} {be.get(key)!r} vs {ne.get(key)!r}")
    return out


def _comparable(env: dict[str, Any]) -> dict[str, Any]:
    """The environment without what changes between any two runs (GPU clocks, temperature)."""
    gpu = env.get("gpu")
    view = {k: env.get(k) for k in ENV_KEYS}
    if isinstance(gpu, dict):
        view["gpu"] = {k: gpu.get(k) for k in GPU_KEYS}
    return view


def busy_verdict(run: Run) -> dict[str, Any] | None:
    """A run's busy-machine verdict (its readings judged by today's rules, else run.json
    `busy`), when it was busy."""
    verdict = run_verdict(run.meta)
    return verdict if isinstance(verdict, dict) and verdict.get("busy") is True else None


TIMING_VERDICTS = ("regression", "slower", "faster")


def discount_busy(rows: list[Row], base: Run, new: Run, strict: bool) -> list[Row]:
    """When either run was busy, timing verdicts are unreliable: listed, and (unless strict)
    not gated. Correctness verdicts (new failure, now unsupported) stay gated. Returns the
    timing regressions that are not gated because of it."""
    if busy_verdict(base) is None and busy_verdict(new) is None:
        return []
    spared = []
    for r in rows:
        if r.verdict in TIMING_VERDICTS:
            r.unreliable = True
            if r.gated and not strict:
                r.gated = False
                spared.append(r)
    return spared


def busy_warnings(base: Run, new: Run, strict: bool) -> list[str]:
    """The busy-machine warnings of both runs, and what compare does about them."""
    lines = warning_lines(run_verdict(base.meta), f"the base run {base.label}") + warning_lines(
        run_verdict(new.meta), f"the new run {new.label}")
    if busy_verdict(base) or busy_verdict(new):
        lines.append("compare: timing changes are unreliable and " + (
            "gated anyway (--strict)" if strict else
            "listed, not gated (--strict gates them); correctness failures are still gated"))
    return lines


def load_pair(base: str, new: str) -> tuple[Run, Run]:
    runs = read_runs([base, new])
    return runs[0], runs[1]


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def print_comparison(base: Run, new: Run, rows: list[Row], missing: list[tuple],
                     show_all: bool = False) -> None:
    """Warnings, the cases that changed (or all), the geometric means and a one-line verdict."""
    from rich.table import Table
    from rich.text import Text

    from attnbench.report.tables import console

    out = console()
    diffs = environment_differences(base, new)
    if diffs:
        print("WARNING: the two runs come from different environments; the numbers may not "
              "be comparable: " + plain("; ".join(diffs)), file=sys.stderr)
    table = Table(title=f"{base.label} → {new.label}", title_justify="left")
    for col in ("scenario", "case", "device", "backend", "base ms", "new ms", "ratio", "p",
                "verdict"):
        table.add_column(col, justify="right" if col in ("base ms", "new ms", "ratio", "p")
                         else "left")
    for r in rows:
        if show_all or r.verdict != "same":
            verdict = r.verdict + (f" ({r.base_status} → {r.new_status})"
                                   if r.base_status != r.new_status else "") + (
                " (unreliable: busy machine)" if r.unreliable else "")
            table.add_row(*map(plain, r.key), _fmt(r.base_ms, ".4f"), _fmt(r.new_ms, ".4f"),
                          _fmt(r.ratio, ".3f"), _fmt(r.p_value, ".2g"),
                          Text(verdict, style="bold red" if r.gated else ""))
    if table.row_count:
        out.print(table)
    means = Table(title="geometric mean of new/base per backend", title_justify="left")
    for col in ("backend", "ratio", "cases"):
        means.add_column(col)
    for backend, (g, n) in geomean_by_backend(rows).items():
        means.add_row(plain(backend), f"{g:.3f}", str(n))
    out.print(means)
    for key in missing[:20]:
        print(f"note: {plain(' '.join(key))} is in the base run but not in the new one",
              file=sys.stderr)
    if len(missing) > 20:
        print(f"note: {len(missing) - 20} more records of the base run are not in the new one",
              file=sys.stderr)


def coverage_losses(base: Run, new: Run, missing: list[tuple],
                    rows: list[Row] | None = None) -> list[str]:
    """What the new run lost against the base: backends, cases, timings, an unfinished run."""
    out = []
    if new.meta.get("finished") is not True:
        why = new.meta.get("stopped") or "its run.json does not say finished"
        out.append(f"the new run {new.path} did not finish ({why})")
    new_backends = {r["backend"] for r in new.records}
    per_backend: dict[str, int] = {}
    for key in missing:
        per_backend[key[3]] = per_backend.get(key[3], 0) + 1
    for backend, n in per_backend.items():
        what = "has no records" if backend not in new_backends else f"lacks {n} case(s)"
        out.append(f"backend {backend} {what} in the new run ({n} of the base run's missing)")
    return out + timing_losses(rows or [])


def timing_losses(rows: list[Row]) -> list[str]:
    """Backends whose cases the base run timed and the new run did not (an untimed `check`
    run, a record without samples): no timing verdict can be made for them."""
    lost: dict[str, int] = {}
    for r in rows:
        if r.verdict == "untimed" and r.base_ms and not r.new_ms:
            lost[r.key[3]] = lost.get(r.key[3], 0) + 1
    return [f"backend {b} lost the timing of {n} case(s): the base run timed them, the new "
            "run did not (an untimed check run?)" for b, n in lost.items()]


def run_compare(base_path: str, new_path: str, threshold: float | None, min_abs_ms: float | None,
                show_all: bool = False, allow_missing: bool = False, strict: bool = False
                ) -> int:
    """The compare command: 0 when nothing is gated, 1 on a regression, a new failure or lost
    coverage (missing cases or backends, an unfinished new run) unless allow_missing. When
    either run was busy, timing regressions are listed but not gated unless strict."""
    base, new = load_pair(base_path, new_path)
    rows, missing = compare_runs(base, new, threshold, min_abs_ms)
    if not rows:
        raise UsageError(f"{base_path} and {new_path} have no (scenario, case, device, backend) "
                         "in common: nothing to compare")
    spared = discount_busy(rows, base, new, strict)
    for line in busy_warnings(base, new, strict):  # at the top: before the table
        print(plain(line), file=sys.stderr)
    print_comparison(base, new, rows, missing, show_all)
    if base.meta.get("finished") is not True:
        print(f"note: the base run {base.path} did not finish; only its records are compared",
              file=sys.stderr)
    losses = coverage_losses(base, new, missing, rows)
    for text in losses:
        print(f"{'note' if allow_missing else 'coverage'}: {plain(text)}", file=sys.stderr)
    gated = [r for r in rows if r.gated]
    counts = {v: sum(r.verdict == v for r in rows) for v in dict.fromkeys(r.verdict for r in rows)}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items()) or "no common records"
    if missing:
        summary += f", {len(missing)} missing from the new run"
    if spared:
        summary += (f"; {len(spared)} timing regression(s) not gated, a run was busy: "
                    + ", ".join(sorted({r.key[3] for r in spared})))
    parts = [f"{len(gated)} gated: " + ", ".join(sorted({f"{r.key[3]} ({r.verdict})"
                                                          for r in gated}))] if gated else []
    if losses and not allow_missing:
        parts.append("lost coverage: " + "; ".join(losses) + " (--allow-missing accepts it)")
    if parts:
        print(plain("compare: FAILED, " + "; ".join(parts) + f". [{summary}]"))
        return 1
    print(f"compare: passed [{summary}]")
    return 0
