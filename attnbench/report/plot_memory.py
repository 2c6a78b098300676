"""Peak memory over size, with the naive score matrix of each case as a grey reference."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from attnbench.record import peak_bytes
from attnbench.report.groups import Group
from attnbench.report.plot_kit import (
    draw_lines,
    finish_axes,
    group_place,
    legend,
    panels_for,
    plain_text,
    series,
)


@plain_text
def memory(g: Group, cmap: dict[str, str]) -> Figure | None:
    """Peak memory vs size, with the naive score-matrix size of each case as a grey reference."""
    s = series(g, peak_bytes)
    if not s:
        return None
    mib = 2.0 ** 20
    s = {k: [(x, y / mib, r) for x, y, r in pts] for k, pts in s.items()}
    fig, panels = panels_for(g, f"{group_place(g)}: peak memory beyond the inputs")
    xs = draw_lines(g, s, panels, cmap)
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
    finish_axes(fig, panels, g, xs, "peak memory (MiB)")
    legend(panels, g, cmap, s, extra)
    return fig
