"""What every report plot shares: colours, plain text, panels per variant, axes and legends."""

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

from attnbench.record import Status
from attnbench.report.groups import AXIS_TITLE, Group
from attnbench.sanitize import plain

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39")
STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MAX_OVERLAID_LINES = 12  # more backend x variant lines than this: one panel per variant
# plugin and scenario names are text: no mathtext ($...$), no LaTeX, whatever matplotlibrc says
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}


def plain_text(draw: Callable[..., Any]) -> Callable[..., Any]:
    """Run a drawing function with PLAIN_TEXT: every Text it makes shows its string as it is."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(PLAIN_TEXT):
            return draw(*args, **kwargs)

    return wrapper


def group_place(g: Group) -> str:
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


def panels_for(g: Group, title: str) -> tuple[Figure, dict[str, Axes]]:
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


def legend(panels: dict[str, Axes], g: Group, cmap: dict[str, str], s: Series,
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


def draw_lines(g: Group, s: Series, panels: dict[str, Axes], cmap: dict[str, str]
               ) -> list[float]:
    """One line per (backend, variant) on its panel; the x values drawn."""
    xs = []
    for (backend, variant), pts in s.items():
        x = [p[0] for p in pts]
        panels[variant].plot(x, [p[1] for p in pts], color=cmap[backend], lw=1.8, ms=5,
                             **_style(g, variant, panels))
        xs += x
    return xs


def finish_axes(fig: Figure, panels: dict[str, Axes], g: Group, xs: list[float], ylabel: str,
                logy: bool = True) -> None:
    """Size axis, (log) y axis and its label on every panel; the run's label on the figure."""
    axes = list(dict.fromkeys(panels.values()))
    for ax in axes:
        _x_axis(ax, g, xs)
        if logy:
            log_y(ax)
        ax.set_ylabel(ylabel)
        if len(axes) > 1:
            ax.label_outer()
    run_label(fig, g)


def run_label(fig: Figure, g: Group) -> None:
    """The run's label, small and grey, in the figure's bottom left corner."""
    fig.text(0.005, 0.002, plain(f"run {g.run.label}"), ha="left", va="bottom", fontsize=7,
             color="grey")


def tick_number(v: float, _pos: Any = None) -> str:
    """A tick label a person reads at once: 0.05, 3, 250, 12k."""
    if v >= 10_000:
        return f"{v / 1000:g}k"
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def log_y(ax: Axes) -> None:
    """Log y axis with plain-number labels; minor ticks (2, 5) labelled on narrow ranges."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(tick_number))

    def minor(v: float, _pos: Any = None) -> str:
        lo, hi = ax.get_ylim()
        mant = round(v / 10 ** np.floor(np.log10(v)), 6) if v > 0 else 0
        return tick_number(v) if hi / max(lo, 1e-300) < 60 and mant in (2.0, 5.0) else ""

    ax.yaxis.set_minor_formatter(FuncFormatter(minor))
