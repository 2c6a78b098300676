"""Report plots (matplotlib, no GUI): latency, throughput, memory, agreement, speedup per group."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from attnbench.record import VERIFIED, Status, error_ratio, median_ms, peak_bytes
from attnbench.report.groups import AXIS_TITLE, Group
from attnbench.results_writer import writing
from attnbench.sanitize import plain

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39")
STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MAX_OVERLAID_LINES = 12  # more backend x variant lines than this: one panel per variant
FLOOR = 1e-4  # error ratios below this are drawn at it (an exact match has ratio 0)
# plugin and scenario names are text: no mathtext ($...$), no LaTeX, whatever matplotlibrc says
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}


def plain_text(draw: Callable[..., Any]) -> Callable[..., Any]:
    """Run a drawing function with PLAIN_TEXT: every Text it makes shows its string as it is."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(PLAIN_TEXT):
            return draw(*args, **kwargs)

    return wrapper


def _where(g: Group) -> str:
    """'scenario on device' for a title, one line of printable text."""
    return plain(f"{g.scenario} on {g.device}")


@dataclass
class Plot:
    """One saved plot: its title and the files written."""

    title: str
    png: Path
    svg: Path


def colours(backends: list[str]) -> dict[str, str]:
    """One colour per backend, from the sorted names: the same in every plot of a report."""
    return {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(sorted(set(backends)))}


Series = dict[tuple[str, str], list[tuple[float, float, dict[str, Any]]]]


def series(g: Group, value: Callable[[dict[str, Any]], float | None]) -> Series:
    """(backend, variant) -> sorted (x, y, record) of ok records that have a value."""
    out: Series = {}
    for r in g.records:
        y = value(r) if r.get("status") == Status.OK else None
        if y is not None and y > 0 and isinstance(r.get(g.axis), (int, float)):
            out.setdefault((r["backend"], g.variant(r)), []).append((float(r[g.axis]), y, r))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in sorted(out.items())}


def _panels(g: Group, title: str) -> tuple[Figure, dict[str, Axes]]:
    """One axes for every variant, or one panel per variant when there are many."""
    variants = g.variants()
    if len(variants) <= 1 or len(variants) * len(g.backends()) <= MAX_OVERLAID_LINES:
        fig = Figure(figsize=(7.5, 4.6), layout="constrained")
        ax = fig.add_subplot()
        fig.suptitle(title, fontsize=11)
        return fig, {v: ax for v in variants}
    cols = 2 if len(variants) == 4 else min(3, len(variants))
    rows = -(-len(variants) // cols)
    fig = Figure(figsize=(4.3 * cols, 3.3 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax in axes[len(variants):]:
        ax.set_visible(False)
    for ax, v in zip(axes, variants, strict=False):
        ax.set_title(plain(v), fontsize=9)
    fig.suptitle(title, fontsize=11)
    return fig, dict(zip(variants, axes, strict=False))


def _style(g: Group, variant: str, panels: dict[str, Axes]) -> dict[str, Any]:
    overlaid = len(set(map(id, panels.values()))) == 1 and len(panels) > 1
    i = list(panels).index(variant) if overlaid else 0
    return {"linestyle": STYLES[i % len(STYLES)], "marker": MARKERS[i % len(MARKERS)]}


def _x_axis(ax: Axes, g: Group, xs: list[float]) -> None:
    ax.set_xlabel(AXIS_TITLE.get(g.axis, g.axis))
    ticks = sorted(set(xs))
    if ticks and min(ticks) > 0 and max(ticks) / min(ticks) >= 4:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ticks, [f"{int(t)}" if t == int(t) else f"{t:g}" for t in ticks])
    ax.grid(True, which="major", alpha=0.3)


def _legend(panels: dict[str, Axes], g: Group, cmap: dict[str, str], s: Series,
            extra: list[Line2D] | None = None) -> None:
    """Backends drawn, by colour; variants by line style when they share one axes."""
    handles = [Line2D([], [], color=cmap[b], lw=2, label=plain(b))
               for b in sorted({k[0] for k in s})]
    axes = list(dict.fromkeys(panels.values()))
    if len(axes) == 1 and len(panels) > 1:
        handles += [Line2D([], [], color="black", label=plain(v), **_style(g, v, panels))
                    for v in panels]
    handles += extra or []
    axes[0].legend(handles=handles, fontsize=8, loc="best", framealpha=0.85)


def _lines(g: Group, s: Series, panels: dict[str, Axes], cmap: dict[str, str]) -> list[float]:
    xs = []
    for (backend, variant), pts in s.items():
        x = [p[0] for p in pts]
        panels[variant].plot(x, [p[1] for p in pts], color=cmap[backend], lw=1.8, ms=5,
                             **_style(g, variant, panels))
        xs += x
    return xs


def _finish(fig: Figure, panels: dict[str, Axes], g: Group, xs: list[float], ylabel: str,
            logy: bool = True) -> None:
    axes = list(dict.fromkeys(panels.values()))
    for ax in axes:
        _x_axis(ax, g, xs)
        if logy:
            _log_y(ax)
        ax.set_ylabel(ylabel)
        if len(axes) > 1:
            ax.label_outer()
    _run_label(fig, g)


def _run_label(fig: Figure, g: Group) -> None:
    fig.text(0.005, 0.002, plain(f"run {g.run.label}"), ha="left", va="bottom", fontsize=7,
             color="grey")


def _num(v: float, _pos: Any = None) -> str:
    """A tick label a person reads at once: 0.05, 3, 250, 12k."""
    if v >= 10_000:
        return f"{v / 1000:g}k"
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def _log_y(ax: Axes) -> None:
    """Log y axis with plain-number labels; minor ticks (2, 5) labelled on narrow ranges."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_num))

    def minor(v: float, _pos: Any = None) -> str:
        lo, hi = ax.get_ylim()
        mant = round(v / 10 ** np.floor(np.log10(v)), 6) if v > 0 else 0
        return _num(v) if hi / max(lo, 1e-300) < 60 and mant in (2.0, 5.0) else ""

    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def _band(samples: Any) -> tuple[float, float] | None:
    if isinstance(samples, list) and len(samples) >= 2:
        q25, q75 = np.percentile(np.asarray(samples, dtype=float), [25, 75])
        return float(q25), float(q75)
    return None


@plain_text
def latency(g: Group, cmap: dict[str, str]) -> Figure | None:
    """Median latency vs size with the interquartile range of the samples as a band."""
    s = series(g, median_ms)
    if not s:
        return None
    fig, panels = _panels(g, f"{_where(g)}: median latency (band: IQR)")
    xs = _lines(g, s, panels, cmap)
    for (backend, variant), pts in s.items():
        bands = [(p[0], _band((p[2].get("timing") or {}).get("samples_ms"))) for p in pts]
        bands = [(x, b) for x, b in bands if b]
        if bands:
            panels[variant].fill_between([x for x, _ in bands], [b[0] for _, b in bands],
                                         [b[1] for _, b in bands], color=cmap[backend],
                                         alpha=0.2, lw=0)
    _finish(fig, panels, g, xs, "median time per call (ms)")
    _legend(panels, g, cmap, s)
    return fig


def _flops(rec: dict[str, Any]) -> float | None:
    value = rec.get("gflops_per_s")
    return float(value) * 1e9 if isinstance(value, (int, float)) else None


@plain_text
def throughput(g: Group, cmap: dict[str, str]) -> Figure | None:
    """Achieved FLOP/s vs size, with the device's measured matmul roof when the run has one."""
    s = series(g, _flops)
    if not s:
        return None
    roofs = {}
    for r in g.records:
        roof = g.run.roof(g.device, str(r.get("dtype"))) or r.get("roof_flops_per_s")
        if isinstance(roof, (int, float)) and roof > 0:
            roofs[str(r.get("dtype"))] = float(roof)
    top = max([p[1] for pts in s.values() for p in pts] + list(roofs.values()))
    unit, div = ("TFLOP/s", 1e12) if top >= 1e12 else ("GFLOP/s", 1e9)
    s = {k: [(x, y / div, r) for x, y, r in pts] for k, pts in s.items()}
    fig, panels = _panels(g, f"{_where(g)}: achieved {unit}")
    xs = _lines(g, s, panels, cmap)
    extra = []
    for i, (dtype, roof) in enumerate(sorted(roofs.items())):
        for ax in dict.fromkeys(panels.values()):
            ax.axhline(roof / div, color="black", lw=1.2, ls=STYLES[i % len(STYLES)])
        extra.append(Line2D([], [], color="black", ls=STYLES[i % len(STYLES)],
                            label=f"matmul roof {dtype}: {roof / div:.3g} {unit}"))
    _finish(fig, panels, g, xs, f"achieved {unit} (matmul FLOPs)")
    _legend(panels, g, cmap, s, extra)
    return fig


@plain_text
def memory(g: Group, cmap: dict[str, str]) -> Figure | None:
    """Peak memory vs size, with the naive score-matrix size of each case as a grey reference."""
    s = series(g, peak_bytes)
    if not s:
        return None
    mib = 2.0 ** 20
    s = {k: [(x, y / mib, r) for x, y, r in pts] for k, pts in s.items()}
    fig, panels = _panels(g, f"{_where(g)}: peak memory beyond the inputs")
    xs = _lines(g, s, panels, cmap)
    refs: dict[str, dict[float, float]] = {}
    for r in g.records:
        if isinstance(r.get("score_bytes"), (int, float)) and r.get(g.axis):
            refs.setdefault(g.variant(r), {})[float(r[g.axis])] = r["score_bytes"] / mib
    seen = set()
    for variant, pts in refs.items():
        x = sorted(pts)
        if (id(panels[variant]), tuple(pts[v] for v in x)) in seen:
            continue  # the same reference curve is already on these axes
        seen.add((id(panels[variant]), tuple(pts[v] for v in x)))
        panels[variant].plot(x, [pts[v] for v in x], color="black", lw=1.2, ls=":", zorder=5)
    extra = [Line2D([], [], color="black", lw=1.2, ls=":", label="naive score matrix (one copy)")]
    _finish(fig, panels, g, xs, "peak memory (MiB)")
    _legend(panels, g, cmap, s, extra)
    return fig


@plain_text
def agreement(g: Group, cmap: dict[str, str]) -> Figure | None:
    """Each backend's max error over its allowed bound, every case a dot; above 1 fails."""
    backends = g.backends()
    pts = [(backends.index(r["backend"]), error_ratio(r), r) for r in g.records
           if r.get("status") in VERIFIED]
    pts = [p for p in pts if p[1] is not None]
    if not pts:
        return None
    fig = Figure(figsize=(max(5.0, 1.1 * len(backends) + 2), 4.4), layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    for i, ratio, r in pts:
        y = min(max(ratio, FLOOR), 1e6)
        x = i + rng.uniform(-0.2, 0.2)
        if r["status"] == Status.OK and ratio <= 1:
            ax.plot(x, y, "o", color=cmap[r["backend"]], ms=5, alpha=0.8)
        else:
            ax.plot(x, y, "X", color="#d62728", ms=10, mec="black", mew=0.6)
    ax.axhline(1.0, color="#d62728", lw=1.2, ls="--")
    _log_y(ax)
    top = max(min(max(p[1] for p in pts), 1e6), 1.0)
    ax.set_ylim(top=top * 2.5)
    ax.set_xticks(range(len(backends)), [plain(b) for b in backends], rotation=25, ha="right")
    ax.set_xlim(-0.6, len(backends) - 0.4)
    ax.set_ylabel("max abs error / allowed bound")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(handles=[Line2D([], [], color="#d62728", ls="--", label="bound (fails above)"),
                       Line2D([], [], marker="o", ls="", color="grey", label="case passed"),
                       Line2D([], [], marker="X", ls="", color="#d62728", mec="black",
                              label="case failed")], fontsize=8, loc="best")
    fig.suptitle(f"{_where(g)}: agreement with the float64 oracle", fontsize=11)
    _run_label(fig, g)
    return fig


@plain_text
def speedup(g: Group, cmap: dict[str, str], baseline: str) -> Figure | None:
    """Each backend's speedup over the baseline backend on the same case (above 1: faster)."""
    base = {r["case_id"]: median_ms(r) for r in g.records
            if r["backend"] == baseline and r.get("status") == Status.OK}
    base = {k: v for k, v in base.items() if v}

    def value(r: dict[str, Any]) -> float | None:
        m, b = median_ms(r), base.get(r["case_id"])
        return b / m if m and b else None

    s = {k: v for k, v in series(g, value).items() if k[0] != baseline}
    if not s:
        return None
    fig, panels = _panels(g, plain(f"{_where(g)}: speedup over {baseline}"))
    xs = _lines(g, s, panels, cmap)
    for ax in dict.fromkeys(panels.values()):
        ax.axhline(1.0, color=cmap.get(baseline, "black"), lw=1.2, ls="--")
    extra = [Line2D([], [], color=cmap.get(baseline, "black"), ls="--",
                    label=plain(f"{baseline} = 1"))]
    _finish(fig, panels, g, xs, plain(f"× faster than {baseline}"))
    _legend(panels, g, cmap, s, extra)
    return fig


@plain_text
def save_group(g: Group, out: Path, cmap: dict[str, str], baseline: str) -> list[Plot]:
    """Draw every plot the group has data for; save each as PNG and SVG under out."""
    kinds: list[tuple[str, str, Callable[[], Figure | None]]] = [
        ("latency", "median latency", lambda: latency(g, cmap)),
        ("throughput", "achieved FLOP/s", lambda: throughput(g, cmap)),
        ("memory", "peak memory", lambda: memory(g, cmap)),
        ("agreement", "agreement", lambda: agreement(g, cmap)),
        ("speedup", f"speedup over {baseline}", lambda: speedup(g, cmap, baseline)),
    ]
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    plots = []
    for kind, title, draw in kinds:
        fig = draw()
        if fig is None:
            continue
        png, svg = out / f"{g.slug}-{kind}.png", out / f"{g.slug}-{kind}.svg"
        with writing(png):
            fig.savefig(png, dpi=110)
        with writing(svg):
            fig.savefig(svg, metadata={"Date": None})
        plots.append(Plot(title, png, svg))
    return plots
