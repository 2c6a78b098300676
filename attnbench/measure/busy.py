"""Whether a run was made on a busy machine: a pure judgement of its contention readings.

judge(contention) -> {"busy", "reasons", "advice", "seen"}. A run is busy when any holds:
- other processes used at least OTHERS_FRACTION of the cores (at least OTHERS_MIN cores) on
  average over the run, or while more than LOADED_FRACTION of its records were timed;
- CPU steal (time a VM's host gave to its other guests) reached STEAL_PCT of CPU time;
- a matmul roof (at the start, between backends of a long sweep, at the end) fell below
  ROOF_DROP of the best known for this machine, or below ROOF_FALL of the start roof;
- more than NOISY_FRACTION of the timed records were noisy (IQR/median >= 10 %) and another
  rule saw contention too: noisy records alone are a note, not a busy verdict, since some
  machines (a VM on shared cores, frequency scaling) jitter that much with nothing else running
  (seen here: 74 of 96 noisy with other processes at 0.003 cores);
- attnbench's own process (plugin code in it) or the run's processes outside its workers (a
  process a plugin started, one left running after its worker ended) used that many cores;
- another process used the GPU (the run's own parent and workers are not "another"), a process
  the run left outside its workers did, or the GPU was slowed down while idle.
Load average and iowait are shown, not judged: the load counts this run's own threads and lags
a minute behind, and iowait is idle time.
"""

from __future__ import annotations

from typing import Any

from attnbench.measure.ceiling import stored_ceiling

OTHERS_FRACTION, OTHERS_MIN = 0.2, 0.5
LOADED_FRACTION = 0.25
STEAL_PCT = 10.0
ROOF_DROP, ROOF_FALL = 0.6, 0.7
NOISY_FRACTION, NOISY_MIN_RECORDS = 0.5, 3

ADVICE_CPU = ("rerun on an idle machine (`attnbench run --wait-idle` waits for one), give the "
              "run fewer threads than the free cores (`--threads N`), or pin it to cores nothing "
              "else uses (`taskset -c LIST attnbench run ...`)")
ADVICE_STEAL = "steal means the VM's host is overcommitted: rerun later or on a dedicated machine"
ADVICE_GPU = ("wait for the other GPU processes to end (nvidia-smi lists them) or pick an idle "
              "GPU (CUDA_VISIBLE_DEVICES)")


def others_limit(cores: int) -> float:
    """Cores other processes may use before a run counts as busy."""
    return max(OTHERS_MIN, OTHERS_FRACTION * cores)


NOT_JUDGED_REMOTE = ("not judged busy or idle: its cases ran on {} nodes, and the readings here "
                     "are of the driver's machine only")


def judge(c: dict[str, Any]) -> dict[str, Any]:
    """The verdict on one run's readings (see the module docstring for the rules)."""
    if c.get("executor") not in (None, "local"):  # the readings are the driver's machine
        return {"busy": False, "reasons": [], "advice": "", "seen": seen(c),
                "notes": [NOT_JUDGED_REMOTE.format(c["executor"])]}
    reasons: list[str] = []
    advice: list[str] = []
    cpu = _others(c) + _parent(c) + _stray(c) + _loaded(c) + _roofs(c)
    steal = _steal(c)
    noisy = _noisy(c)
    notes = [] if cpu or steal else [
        f"{n}, though nothing else was seen running: this machine's timings jitter by "
        "themselves; compare medians with care" for n in noisy]
    cpu += noisy if cpu or steal else []
    gpu = _gpu(c.get("before")) + _gpu(c.get("after"))
    reasons += cpu + steal + list(dict.fromkeys(gpu))
    if cpu or steal:
        advice.append(ADVICE_CPU)
    if steal:
        advice.append(ADVICE_STEAL)
    if gpu:
        advice.append(ADVICE_GPU)
    busy = bool(reasons)
    text = ("its timings are not reliable: " + "; ".join(advice)) if busy else ""
    return {"busy": busy, "reasons": reasons, "advice": text, "seen": seen(c),
            "notes": notes + list(dict.fromkeys(_unattributed(c.get("before"))
                                                + _unattributed(c.get("after"))))}


def _unattributed(reading: Any) -> list[str]:
    """GPU processes whose pid this machine's /proc does not list (another PID namespace, as
    in a container): neither this run's nor, for sure, another's; said, not judged."""
    gpu = (reading or {}).get("gpu") if isinstance(reading, dict) else None
    found = gpu.get("unattributed") if isinstance(gpu, dict) else None
    if not isinstance(found, list) or not found:
        return []
    names = ", ".join(f"{p.get('name')} (pid {p.get('pid')})" for p in found
                      if isinstance(p, dict))
    return [f"nvidia-smi listed GPU processes whose pids are not visible here (another PID "
            f"namespace?), so they could be this run's own or another's: {names}"]


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) and x > 0 else None


def _others(c: dict[str, Any]) -> list[str]:
    cores = int(c.get("cores") or 1)
    run = c.get("run") or {}
    used = _num(run.get("others_cores"))
    if used is None or used < others_limit(cores):
        return []
    top = ", ".join(f"{t.get('name')} (pid {t.get('pid')}) {t.get('cores')}"
                    for t in run.get("top_others") or [] if isinstance(t, dict))
    return [f"other processes used {used:.2g} of the {cores} cores on average during the run"
            + (f" (busiest seen: {top})" if top else "")]


def _parent(c: dict[str, Any]) -> list[str]:
    """attnbench's own process, which only waits while workers time (~0.01 cores here; its own
    work between timed calls, the inputs, oracles and verdicts, is not counted), busy: whatever
    runs in it then competes with them."""
    cores = int(c.get("cores") or 1)
    used = _num((c.get("run") or {}).get("parent_cores"))
    if used is None or used < others_limit(cores):
        return []
    return [f"attnbench's own process used {used:.2g} of the {cores} cores during the run "
            "(it only waits while workers time): plugin code running in it, such as a thread a "
            "plugin started, competed with the timed cases"]


def _stray(c: dict[str, Any]) -> list[str]:
    """The run's own processes outside its workers (measure/ownership.py), busy: a process a
    plugin started in attnbench's process, or one left running after its worker ended."""
    cores = int(c.get("cores") or 1)
    run = c.get("run") or {}
    used = _num(run.get("stray_cores"))
    if used is None or used < others_limit(cores):
        return []
    top = ", ".join(f"{t.get('name')} (pid {t.get('pid')}) {t.get('cores')}"
                    for t in run.get("top_stray") or [] if isinstance(t, dict))
    return [f"processes this run started outside its workers used {used:.2g} of the {cores} "
            "cores (a process a plugin started in attnbench's own process, or one left "
            "running after its worker ended)" + (f": {top}" if top else "")]


def _loaded(c: dict[str, Any]) -> list[str]:
    recs = c.get("records") or {}
    n, loaded = int(recs.get("windows") or 0), int(recs.get("under_load") or 0)
    if not n or loaded <= LOADED_FRACTION * n or _others(c):
        return []  # already said for the whole run
    limit = others_limit(int(c.get("cores") or 1))
    return [f"{loaded} of {n} records ran while other processes used {limit:.2g} cores or more"]


def _steal(c: dict[str, Any]) -> list[str]:
    steal = _num((c.get("run") or {}).get("steal_pct"))
    if steal is None or steal < STEAL_PCT:
        return []
    return [f"CPU steal was {steal:.3g} % of CPU time during the run (the VM's host ran its "
            "other guests)"]


def _roofs(c: dict[str, Any]) -> list[str]:
    out = []
    start, end = c.get("roof_start") or {}, c.get("roof_end") or {}
    best = c.get("roof_best_known") or {}
    during = [d.get("roofs") or {} for d in c.get("roof_during") or [] if isinstance(d, dict)]
    for device, per in start.items():
        for dtype, s in (per or {}).items() if isinstance(per, dict) else ():
            s, e = _num(s), _num((end.get(device) or {}).get(dtype))
            mid = [x for d in during if (x := _num((d.get(device) or {}).get(dtype)))]
            b = _num(((best.get(device) or {}).get(dtype) or {}).get("flops_per_s"))
            if b and b > stored_ceiling(str(device), str(dtype), _int(c.get("cores"))):
                b = None  # no hardware reaches it: not a bar (a forged cache entry)
            measured = [x for x in (s, *mid, e) if x]
            if not measured:
                continue
            low = min(measured)
            what = f"the {dtype} matmul roof on {device} was {_g(s)} GFLOP/s at the start" + (
                f" and {_g(e)} at the end" if e else "") + (
                f" (lowest {_g(min(mid))} in between)" if mid and min(mid) < min(s or 1e30,
                                                                                 e or 1e30) else "")
            if b and low < ROOF_DROP * b:
                out.append(f"{what}, {100 * low / b:.0f} % of the best known {_g(b)} GFLOP/s "
                           "on this machine")
            elif s and low < ROOF_FALL * s:
                out.append(f"{what}: it fell to {100 * low / s:.0f} % during the run")
    return out


def _g(x: float | None) -> str:
    return "–" if not x else f"{x / 1e9:.3g}"


def _noisy(c: dict[str, Any]) -> list[str]:
    recs = c.get("records") or {}
    timed, noisy = int(recs.get("timed") or 0), int(recs.get("noisy") or 0)
    if timed < NOISY_MIN_RECORDS or noisy <= NOISY_FRACTION * timed:
        return []
    return [f"{noisy} of {timed} timed records were noisy (IQR/median of 10 % or more)"]


def _gpu(reading: Any) -> list[str]:
    gpu = (reading or {}).get("gpu") if isinstance(reading, dict) else None
    if not isinstance(gpu, dict):
        return []
    out = [f"another process was on the GPU: {p.get('name')} (pid {p.get('pid')}, "
           f"{p.get('memory_mib')} MiB)" for p in gpu.get("other_processes") or []
           if isinstance(p, dict)]
    out += [f"a process this run left outside its workers was on the GPU: {p.get('name')} "
            f"(pid {p.get('pid')}, {p.get('memory_mib')} MiB)"
            for p in gpu.get("stray_processes") or [] if isinstance(p, dict)]
    for g in gpu.get("gpus") or []:
        slow = g.get("slowdowns")
        if isinstance(slow, list) and slow:
            out.append(f"GPU {g.get('index')} was slowed down while idle: {', '.join(slow)}")
    return out


def seen(c: dict[str, Any]) -> str:
    """One line of what was measured: load, others' CPU, steal, iowait, roofs, noisy records."""
    run = c.get("run") or {}
    cores = c.get("cores")
    parts = []
    load = (c.get("before") or {}).get("load")
    if isinstance(load, list) and load:
        parts.append(f"load {load[0]:.2f} on {cores} cores before the run")
    for name, fmt in (("others_cores", "other processes {:.2g} cores"),
                      ("steal_pct", "steal {:.2g} %"), ("iowait_pct", "iowait {:.2g} %")):
        if _num(run.get(name)) is not None:
            parts.append(fmt.format(run[name]))
    if _num(run.get("stray_cores")):
        parts.append(f"the run's own processes outside its workers {run['stray_cores']:.2g} "
                     "cores")
    for device, per in (c.get("roof_start") or {}).items():
        for dtype, s in (per or {}).items() if isinstance(per, dict) else ():
            if _num(s):
                e = _num(((c.get("roof_end") or {}).get(device) or {}).get(dtype))
                b = (((c.get("roof_best_known") or {}).get(device) or {}).get(dtype) or {})
                parts.append(f"{device} {dtype} roof {_g(s)}" + (f"→{_g(e)}" if e else "")
                             + (f" GFLOP/s (best known {_g(_num(b.get('flops_per_s')))})"
                                if b else " GFLOP/s"))
    recs = c.get("records") or {}
    if recs.get("timed"):
        parts.append(f"noisy {recs.get('noisy', 0)} of {recs['timed']}")
    return ", ".join(parts)


def run_verdict(meta: dict[str, Any]) -> dict[str, Any] | None:
    """A run's verdict from its stored readings (run.json `contention`, and a resumed run's
    earlier sessions under `contention_earlier`) under today's rules, so a run judged by older
    rules reads the same as a new one; else its stored `busy`."""
    readings = meta.get("contention")
    verdict = meta.get("busy") if isinstance(meta.get("busy"), dict) else None
    if isinstance(readings, dict) and "error" not in readings:
        try:
            verdict = judge(readings)
        except Exception:  # damaged readings: the stored verdict stands
            pass
    earlier = meta.get("contention_earlier")
    return with_earlier(verdict, earlier if isinstance(earlier, list) else [])


def with_earlier(verdict: dict[str, Any] | None, earlier: list[Any]) -> dict[str, Any] | None:
    """A resumed run's verdict: busy when this session or any earlier one was (records
    measured beside a hog stay in the run after a quiet resume)."""
    reasons: list[str] = []
    for i, readings in enumerate(earlier, 1):
        try:
            old = judge(readings) if isinstance(readings, dict) and "error" not in readings \
                else None
        except Exception:  # damaged readings of an old session: nothing to add
            old = None
        if old and old["busy"]:
            reasons += [f"session {i} of this resumed run: {r}" for r in old["reasons"]]
    if not reasons:
        return verdict
    base = verdict or {"busy": False, "reasons": [], "advice": "", "seen": "", "notes": []}
    return {**base, "busy": True, "reasons": [*base.get("reasons", []), *reasons],
            "advice": base.get("advice") or "its timings are not reliable: " + ADVICE_CPU}


def warning_lines(verdict: dict[str, Any] | None, what: str = "this run") -> list[str]:
    """The loud warning for a busy verdict, as lines; a NOTE line for each note of a run that
    was not busy (noisy timings with nothing else seen); none otherwise."""
    if not isinstance(verdict, dict):
        return []
    if not verdict.get("busy"):
        return [f"NOTE: {what}: {n}" for n in verdict.get("notes") or []]
    lines = [f"WARNING: {what} was made on a busy machine; {verdict.get('advice')}"]
    lines += [f"  - {r}" for r in verdict.get("reasons") or []]
    if verdict.get("seen"):
        lines.append(f"  seen: {verdict['seen']}")
    return lines
