"""Mask pictures: which keys each query row sees (attnbench.variants), drawn beside a group's table.

One panel per distinct mask of a group (causal, window, lengths, documents; from the smallest
case of each variant), capped; in it, side by side, batch element 0 and each one whose lengths
differ from those already drawn (decode cases, a few queries each, stack every batch element's
rows instead). Large cases are drawn at most MAX_PIXELS a side: each pixel's shade is the exact
fraction of visible (query, key) pairs in its block, from variants.key_ranges, so a thin window
stays visible as a faint line instead of vanishing between sampled rows. A case with a mask
function (mask_mod) is drawn from the picture its record carries (batch element 0, made when it
ran): a report never runs a function a results file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from attnbench import mask_mod, variants
from attnbench.case import Case
from attnbench.case_checks import variant_problem
from attnbench.report.groups import Group, variant_label, variant_value
from attnbench.report.plot_kit import Plot, plain_text
from attnbench.results_writer import writing
from attnbench.sanitize import plain

MAX_PIXELS = 128  # per side of one panel
MAX_SEQ = 2**24  # a record claiming longer sequences is not drawn
MAX_PANELS = 24  # per group
MAX_COLUMNS = 6
MAX_BATCH = 4  # batch elements drawn per mask
STACK_QUERIES = 16  # seq_q up to this (decode): every batch element's rows stacked in one panel
MASK_FIELDS = ("window", "q_lens", "kv_lens", "doc_lens", "mask_mod")  # fields that change the mask
CAPTION = ("which keys (columns) each query row sees, batch element 0 and, side by side, each "
           "one whose lengths differ (decode: one row per batch element); dark = visible. "
           "ALiBi, bias and soft-cap change scores, not visibility, and are not drawn")


def mask_title(rec: dict[str, Any]) -> str:
    """'causal win 128:0 kv_lens 5,3': the record's mask and the variants that shape it."""
    parts = [str(rec.get("mask") or "none")]
    parts += [variant_label(f, variant_value(f, rec, "")) for f in MASK_FIELDS]
    return " ".join(p for p in parts if p)


def _signature(case: Case) -> tuple[Any, ...]:
    return (case.mask, case.seq_q, case.seq_kv, case.window_left, case.window_right,
            case.q_lens, case.kv_lens, case.doc_lens, case.mask_mod)


def mask_cases(g: Group) -> list[tuple[str, Case]]:
    """(title, case) of each distinct mask in the group: the smallest case of each variant."""
    return [(title, case) for title, case, _ in _mask_entries(g)]


def _mask_entries(g: Group) -> list[tuple[str, Case, np.ndarray | None]]:
    """(title, case, its stored picture: None unless it has a mask function) of each mask."""
    smallest: dict[str, dict[str, Any]] = {}
    for r in g.records:
        v = g.variant(r)
        size = (r.get("seq_q") or 0) * (r.get("seq_kv") or 0)
        if v not in smallest or size < smallest[v]["_size"]:
            smallest[v] = {**r, "_size": size}
    out, seen = [], set()
    for v in g.variants():
        if v not in smallest:
            continue
        try:
            case = Case.from_dict(smallest[v])
        except (TypeError, ValueError):  # a record too damaged to name its case
            continue
        stored = mask_mod.decode(smallest[v].get("mask_picture")) if case.mask_mod else None
        if not _drawable(case) or (case.mask_mod is not None and stored is None):
            continue
        if _signature(case) not in seen:
            seen.add(_signature(case))
            out.append((mask_title(smallest[v]), case, stored))
    return out


def batch_elements(case: Case) -> list[int]:
    """Batch element 0 and each later one whose (query, key) lengths are new, up to MAX_BATCH."""
    q_lens, kv_lens = variants.lengths(case)
    out, seen = [], set()
    for b in range(case.batch):
        pair = (int(q_lens[b]), int(kv_lens[b]))
        if pair not in seen:
            seen.add(pair)
            out.append(b)
        if len(out) == MAX_BATCH:
            break
    return out


def _edges(n: int, most: int) -> np.ndarray:
    """Block boundaries splitting 0..n into at most `most` near-equal blocks."""
    return np.unique(np.linspace(0, n, min(n, most) + 1).round().astype(np.int64))


def picture(case: Case, b: int, most: int = MAX_PIXELS) -> np.ndarray:
    """(rows, cols) in [0, 1]: the fraction of visible pairs in each block of batch element b."""
    lo, hi = variants.key_ranges(case, b)
    rows, cols = _edges(case.seq_q, most), _edges(case.seq_kv, most)
    c0, c1 = cols[:-1][None, :], cols[1:][None, :] - 1
    out = np.empty((len(rows) - 1, len(cols) - 1))
    for i, (r0, r1) in enumerate(zip(rows[:-1], rows[1:], strict=True)):  # bounded memory
        seen = np.minimum(hi[r0:r1, None], c1) - np.maximum(lo[r0:r1, None], c0) + 1
        out[i] = (np.clip(seen, 0, None) / (c1 - c0 + 1)).mean(axis=0)
    return out


def mask_image(case: Case) -> tuple[str, np.ndarray]:
    """(which rows and columns, picture) of one mask: decode cases stack every batch element's
    rows; others put each batch element whose lengths differ side by side (NaN between)."""
    size = f"q{case.seq_q} k{case.seq_kv}"
    if case.seq_q <= STACK_QUERIES and case.batch > 1:
        n = min(case.batch, max(1, MAX_PIXELS // case.seq_q))
        return f"{size}; rows: batch 0..{n - 1}", np.vstack([picture(case, b) for b in range(n)])
    elements = batch_elements(case)
    if len(elements) == 1:
        return size, picture(case, 0)
    parts = [picture(case, b, max(8, MAX_PIXELS // len(elements))) for b in elements]
    gap = np.full((parts[0].shape[0], max(1, parts[0].shape[1] // 16)), np.nan)
    joined = [x for p in parts for x in (p, gap)][:-1]
    return f"{size}; " + " | ".join(f"b{b}" for b in elements), np.hstack(joined)


def panels(g: Group) -> list[tuple[str, str, np.ndarray]]:
    """(title, which rows and columns, picture) of each distinct mask, at most MAX_PANELS."""
    return [(title, f"q{case.seq_q} k{case.seq_kv}; b0, mask function", stored)
            if stored is not None else (title, *mask_image(case))
            for title, case, stored in _mask_entries(g)[:MAX_PANELS]]


def _drawable(case: Case) -> bool:
    """A case whose mask can be computed: sizes a run can have, consistent variant settings
    (a damaged or hand-edited record may hold anything)."""
    try:
        if not (0 < case.seq_q <= MAX_SEQ and 0 < case.seq_kv <= MAX_SEQ and case.batch > 0):
            return False
        variants.key_ranges(case, 0)
        return variant_problem(case) is None
    except (TypeError, ValueError, IndexError, OverflowError):
        return False


@plain_text
def mask_figure(g: Group) -> Figure | None:
    """The group's mask pictures in one small figure; None when no record names a case."""
    drawn, total = panels(g), len(mask_cases(g))
    if not drawn:
        return None
    cols = min(MAX_COLUMNS, len(drawn))
    rows = -(-len(drawn) // cols)
    fig = Figure(figsize=(1.9 * cols, 2.0 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(drawn):]:
        ax.set_visible(False)
    for ax, (title, which, img) in zip(axes, drawn, strict=False):
        cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#bbbbbb")  # NaN: a separator
        ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
        ax.set_title(f"{plain(title)}\n{plain(which)}", fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("keys", fontsize=6)
        ax.set_ylabel("queries", fontsize=6)
    more = f" (first {len(drawn)} of {total} masks)" if total > len(drawn) else ""
    fig.suptitle(plain(f"{g.scenario} on {g.device}: mask{more}"), fontsize=9)
    return fig


def save_mask(g: Group, out: Path) -> Plot | None:
    """Draw and save the group's mask figure (PNG and SVG) under out."""
    fig = mask_figure(g)
    if fig is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{g.slug}-mask.png", out / f"{g.slug}-mask.svg"
    with writing(png):
        fig.savefig(png, dpi=100)
    with writing(svg):
        fig.savefig(svg, metadata={"Date": None})
    return Plot("mask", png, svg)
