"""A group's report plots (matplotlib, no GUI) drawn and saved as PNG and SVG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from attnbench.report.groups import Group
from attnbench.report.plot_agreement import agreement
from attnbench.report.plot_kit import Plot, plain_text
from attnbench.report.plot_memory import memory
from attnbench.report.plot_roofline import roofline
from attnbench.report.plot_timing import latency, speedup, throughput
from attnbench.results_writer import writing


@plain_text
def save_group(g: Group, out: Path, cmap: dict[str, str], baseline: str) -> list[Plot]:
    """Draw every plot the group has data for; save each as PNG and SVG under out."""
    kinds: list[tuple[str, str, Callable[[], Figure | None]]] = [
        ("latency", "median latency", lambda: latency(g, cmap)),
        ("throughput", "achieved FLOP/s", lambda: throughput(g, cmap)),
        ("roofline", "roofline", lambda: roofline(g, cmap)),
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
