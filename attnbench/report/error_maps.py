"""Where each mismatch is wrong: its error map (head × query rows, key blocks) and pattern."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from attnbench.report.groups import Group
from attnbench.report.plot_kit import plain_text
from attnbench.report.render import Heading, Image, Text
from attnbench.results_writer import writing
from attnbench.sanitize import plain

MAX_MAPS = 12  # error maps drawn per report (the Not ok table lists every mismatch)


def diagnosed(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The failed outputs of a record that carry a diagnosis with a row map."""
    outputs = (rec.get("agreement") or {}).get("outputs") or []
    return [o for o in outputs if isinstance(o, dict) and not o.get("passed")
            and isinstance(o.get("diagnosis"), dict)
            and isinstance(o["diagnosis"].get("row_map"), dict)]


def _matrix(row_map: dict[str, Any]) -> np.ndarray | None:
    try:
        m = np.asarray(row_map.get("ratio"), dtype=float)
    except (TypeError, ValueError):
        return None
    return m if m.ndim == 2 and m.size and np.isfinite(m).all() else None


@plain_text
def error_figure(rec: dict[str, Any], diagnosis: dict[str, Any]) -> Figure | None:
    """Heat map of error/bound per head and band of query rows (≤ 1 is within the bound), and
    the share of the error left when each key block is left out of the oracle."""
    m = _matrix(diagnosis["row_map"])
    if m is None:
        return None
    key_map = diagnosis.get("key_map") if isinstance(diagnosis.get("key_map"), dict) else None
    fig = Figure(figsize=(7.5 if key_map else 4.6, 2.8), layout="constrained")
    axes = fig.subplots(1, 2 if key_map else 1, squeeze=False).ravel()
    ax = axes[0]
    shown = np.clip(m, 1e-3, None)
    im = ax.imshow(shown, aspect="auto", interpolation="nearest", cmap="magma_r",
                   norm=LogNorm(vmin=min(0.1, shown.min()), vmax=max(10.0, shown.max())))
    fig.colorbar(im, ax=ax, label="error / bound")
    rows = diagnosis["row_map"].get("rows") or []
    ticks = list(range(0, len(rows), max(1, len(rows) // 6)))
    ax.set_xticks(ticks, [str(rows[i]) for i in ticks], fontsize=7)
    ax.set_xlabel("query rows (first of each band)", fontsize=8)
    ax.set_ylabel("head", fontsize=8)
    if key_map:
        _key_panel(axes[1], key_map)
    ax.set_yticks(range(m.shape[0]) if m.shape[0] <= 16 else
                  range(0, m.shape[0], -(-m.shape[0] // 8)))
    title = [plain(f"{rec.get('backend')} {rec.get('case_id')}")[:120],
             *textwrap.wrap(plain(str(diagnosis.get("pattern", ""))), 110)[:3]]
    fig.suptitle("\n".join(title), fontsize=8)
    return fig


def _key_panel(ax: Any, key_map: dict[str, Any]) -> None:
    left = [float(x) for x in key_map.get("error_left") or []]
    blocks = key_map.get("blocks") or []
    ax.bar(range(len(left)), np.minimum(left, 1.5), color="#d62728")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_ylim(0, 1.5)
    ax.set_xticks(range(len(blocks)), [str(b[0]) for b in blocks], fontsize=6, rotation=90)
    ax.set_xlabel("key block left out (first key)", fontsize=8)
    ax.set_ylabel("share of the error left (≤ 1.5)", fontsize=8)


def mismatch_section(groups: list[Group], out: Path) -> list[Any]:
    """The error maps of the first MAX_MAPS diagnosed mismatches, each with its pattern."""
    blocks: list[Any] = []
    for g in groups:
        for r in g.records:
            for o in diagnosed(r):
                if len(blocks) >= 2 * MAX_MAPS:
                    break
                fig = error_figure(r, o["diagnosis"])
                if fig is None:
                    continue
                png = out / f"errors-{len(blocks) // 2 + 1}.png"
                with writing(png):
                    out.mkdir(parents=True, exist_ok=True)
                    fig.savefig(png, dpi=100)
                where = f"{g.run.label} {g.scenario}: {r.get('backend')} {r.get('case_id')}"
                blocks += [Text(f"{where}, {o.get('name')}: {o['diagnosis'].get('pattern')}"),
                           Image(png, f"error map of {where}")]
    if not blocks:
        return []
    intro = Text("Each mismatch's error over its bound per head and band of query rows (the "
                 "batch folded in; ≤ 1 is within the bound) and, where drawn, the share of the "
                 "error left when the oracle leaves a block of keys out (near 0: the backend "
                 "computed attention without those keys). The pattern is checked against the "
                 "oracle, not guessed (attnbench/verify/diagnose.py).")
    return [Heading(2, "Where it is wrong"), intro, *blocks]
