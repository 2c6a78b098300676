"""The roofline of a group: every timed case at its FLOPs per byte against what it achieved."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from attnbench.record import Status
from attnbench.report.groups import Group
from attnbench.report.plot_kit import (
    MARKERS,
    STYLES,
    group_place,
    log_y,
    plain_text,
    run_label,
    tick_number,
)
from attnbench.sanitize import plain


def _points(g: Group) -> dict[str, list[tuple[float, float]]]:
    """backend -> (FLOPs per byte, achieved FLOP/s) of its ok records."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in g.records:
        x, y = r.get("arithmetic_intensity"), r.get("gflops_per_s")
        if (r.get("status") == Status.OK and isinstance(x, (int, float)) and x > 0
                and isinstance(y, (int, float)) and y > 0):
            out.setdefault(str(r["backend"]), []).append((float(x), float(y) * 1e9))
    return out


@plain_text
def roofline(g: Group, cmap: dict[str, str]) -> Figure | None:
    """Log-log FLOPs/byte vs achieved FLOP/s, one marker per case, under the roofline
    min(matmul roof, intensity x copy bandwidth) of each dtype the group uses."""
    points = _points(g)
    if not points:
        return None
    xs = [p[0] for pts in points.values() for p in pts]
    span = np.geomspace(min(xs) / 2, max(xs) * 2, 200)
    bandwidth = g.run.bandwidth(g.device)
    dtypes = sorted({str(r.get("dtype")) for r in g.records})
    peaks = [p for d in dtypes if (p := g.run.roof(g.device, d))]
    top = max([p[1] for pts in points.values() for p in pts] + peaks)
    unit, div = ("TFLOP/s", 1e12) if top >= 1e12 else ("GFLOP/s", 1e9)
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    handles = []
    for i, (backend, pts) in enumerate(sorted(points.items())):
        ax.scatter([p[0] for p in pts], [p[1] / div for p in pts], color=cmap[backend], s=22,
                   marker=MARKERS[i % len(MARKERS)], zorder=3)
        handles.append(Line2D([], [], color=cmap[backend], marker=MARKERS[i % len(MARKERS)],
                              lw=0, label=plain(backend)))
    for i, dtype in enumerate(dtypes):
        peak = g.run.roof(g.device, dtype)
        if peak is None and bandwidth is None:
            continue
        line = np.minimum(peak or np.inf, span * bandwidth if bandwidth else np.inf)
        ax.plot(span, line / div, color="black", lw=1.2, ls=STYLES[i % len(STYLES)])
        handles.append(Line2D([], [], color="black", ls=STYLES[i % len(STYLES)],
                              label=_roof_label(dtype, peak, bandwidth)))
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(tick_number))
    log_y(ax)
    ax.set_xlabel("arithmetic intensity (matmul FLOPs per byte of q, k, v, out)")
    ax.set_ylabel(f"achieved {unit}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.85)
    fig.suptitle(f"{group_place(g)}: roofline", fontsize=11)
    run_label(fig, g)
    return fig


def _roof_label(dtype: str, peak: float | None, bandwidth: float | None) -> str:
    parts = [f"{dtype} roofline:"]
    if peak is not None:
        parts.append(f"matmul {peak / 1e9:.4g} GFLOP/s")
    if bandwidth is not None:
        parts.append(f"copy {bandwidth / 1e9:.4g} GB/s")
    return " ".join(parts)
