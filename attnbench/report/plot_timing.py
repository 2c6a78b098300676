"""Timing plots over size: median latency with its IQR band, achieved FLOP/s, speedup."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from attnbench.record import Status, median_ms
from attnbench.report.groups import Group
from attnbench.report.plot_kit import (
    STYLES,
    draw_lines,
    finish_axes,
    group_place,
    legend,
    panels_for,
    plain_text,
    series,
)
from attnbench.sanitize import plain


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
    fig, panels = panels_for(g, f"{group_place(g)}: median latency (band: IQR)")
    xs = draw_lines(g, s, panels, cmap)
    for (backend, variant), pts in s.items():
        bands = [(p[0], _band((p[2].get("timing") or {}).get("samples_ms"))) for p in pts]
        bands = [(x, b) for x, b in bands if b]
        if bands:
            panels[variant].fill_between([x for x, _ in bands], [b[0] for _, b in bands],
                                         [b[1] for _, b in bands], color=cmap[backend],
                                         alpha=0.2, lw=0)
    finish_axes(fig, panels, g, xs, "median time per call (ms)")
    legend(panels, g, cmap, s)
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
    fig, panels = panels_for(g, f"{group_place(g)}: achieved {unit}")
    xs = draw_lines(g, s, panels, cmap)
    extra = []
    for i, (dtype, roof) in enumerate(sorted(roofs.items())):
        for ax in dict.fromkeys(panels.values()):
            ax.axhline(roof / div, color="black", lw=1.2, ls=STYLES[i % len(STYLES)])
        extra.append(Line2D([], [], color="black", ls=STYLES[i % len(STYLES)],
                            label=f"matmul roof {dtype}: {roof / div:.3g} {unit}"))
    finish_axes(fig, panels, g, xs, f"achieved {unit} (matmul FLOPs)")
    legend(panels, g, cmap, s, extra)
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
    fig, panels = panels_for(g, plain(f"{group_place(g)}: speedup over {baseline}"))
    xs = draw_lines(g, s, panels, cmap)
    for ax in dict.fromkeys(panels.values()):
        ax.axhline(1.0, color=cmap.get(baseline, "black"), lw=1.2, ls="--")
    extra = [Line2D([], [], color=cmap.get(baseline, "black"), ls="--",
                    label=plain(f"{baseline} = 1"))]
    finish_axes(fig, panels, g, xs, plain(f"× faster than {baseline}"))
    legend(panels, g, cmap, s, extra)
    return fig
