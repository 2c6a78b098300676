"""Tables of benchmarks/false_alarms.py: false alarms, tightness, calibration and power."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from alarm_bugs import BUGS
from alarm_grid import BANDS

DTYPES = ["bfloat16", "float16", "float32", "float64"]
CHECKS = ("element", "rel_l2", "scale", "softmax_scale")


def summarise(results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Counts and worst ratios over every case of the study."""
    alarms, pairs = [], 0
    tight: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(CHECKS, 0.0))
    by_impl: dict[str, float] = defaultdict(float)
    for r in results:
        for name, c in r["correct"].items():
            pairs += 1
            if not c["passed"]:
                alarms.append({"case": r["case"], "impl": name, "ratio": c["ratio"],
                               "worst": c["worst"]})
            key = "baseline" if name.startswith("baseline") else "implementations"
            for check in CHECKS:
                t = tight[f"{r['dtype']} {key}"]
                t[check] = max(t[check], c["checks"][check])
            by_impl[f"{name} {r['dtype']}"] = max(by_impl[f"{name} {r['dtype']}"], c["ratio"])
    power: dict[str, dict[str, dict[str, Counter]]] = {}
    missed: list[dict[str, Any]] = []
    excess: dict[str, float] = {}  # bug dtype -> how far above the worst correct a miss was
    for r in results:
        for name, b in r["bugs"].items():
            cell = power.setdefault(name, {}).setdefault(r["dtype"], {})
            cell.setdefault(r["band"], Counter())[b["class"]] += 1
            cell.setdefault("all", Counter())[b["class"]] += 1
            if b["class"] == "missed":
                missed.append({"case": r["case"], "bug": name, "ratio": b["ratio"],
                               "excess": b["excess"], "effect": b["effect"],
                               "worst_correct": r["worst_correct"]})
                key = f"{name} {r['dtype']}"
                excess[key] = max(excess.get(key, 0.0), b["excess"])
    return {"cases": len(results), "pairs": pairs, "false_alarms": len(alarms),
            "false_alarm_examples": alarms[:20], "tightness": dict(tight),
            "worst_by_impl": dict(sorted(by_impl.items())),
            "power": {b: {d: {k: dict(c) for k, c in v.items()} for d, v in p.items()}
                      for b, p in power.items()},
            "missed_examples": missed[:40], "missed_total": len(missed),
            "missed_excess_max": dict(sorted(excess.items())),
            "seconds": round(seconds, 1),
            "model_seconds_max": max((r["model_s"] for r in results), default=0.0)}


def _cell(c: dict[str, int] | None) -> str:
    if not c:
        return "–"
    n = sum(c.values())
    return (f"{c.get('caught', 0)}/{n} ({c.get('below', 0)} below, "
            f"{c.get('missed', 0)} missed)")


def markdown(s: dict[str, Any]) -> str:
    """The study's tables as Markdown (docs/agreement.md)."""
    lines = [f"{s['cases']} cases, {s['pairs']} case × implementation pairs, "
             f"{s['false_alarms']} false alarms, {s['seconds']:.0f} s.", "",
             "| dtype | worst correct: element | rel L2 | scale | softmax scale | baseline: "
             "element | rel L2 | scale | softmax scale |", "|---|" + "---|" * 8]
    for dt in DTYPES:
        imp = s["tightness"].get(f"{dt} implementations")
        base = s["tightness"].get(f"{dt} baseline")
        if imp:
            b = [f"{base[c]:.2f}" for c in CHECKS] if base else ["–"] * len(CHECKS)
            lines.append(f"| {dt} | " + " | ".join(f"{imp[c]:.2f}" for c in CHECKS)
                         + " | " + " | ".join(b) + " |")
    lines += ["", "| bug | " + " | ".join(DTYPES) + " |", "|---|" + "---|" * len(DTYPES)]
    for bug in BUGS:
        if bug in s["power"]:
            lines.append(f"| {bug} | " + " | ".join(
                _cell(s["power"][bug].get(dt, {}).get("all")) for dt in DTYPES) + " |")
    for dt in ("bfloat16", "float16"):
        names = [n for _, n in BANDS]
        lines += ["", f"{dt} by size band (caught/applies, below rounding, missed):", "",
                  "| bug | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for bug in BUGS:
            cells = s["power"].get(bug, {}).get(dt, {})
            if cells:
                lines.append(f"| {bug} | " + " | ".join(_cell(cells.get(n)) for n in names)
                             + " |")
    return "\n".join(lines)
