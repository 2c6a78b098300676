"""Agreement: each record's error over its bound, a dot per case per backend; above 1 fails."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from attnbench.record import VERIFIED, Status, error_ratio
from attnbench.report.groups import Group
from attnbench.report.plot_kit import group_place, log_y, plain_text, run_label
from attnbench.sanitize import plain

FLOOR = 1e-4  # error ratios below this are drawn at it (an exact match has ratio 0)


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
    log_y(ax)
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
    fig.suptitle(f"{group_place(g)}: agreement with the float64 oracle", fontsize=11)
    run_label(fig, g)
    return fig
