"""Runs read for reporting, split into (scenario, device, run) groups: x axis and variants."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.mask_mod import short_name
from attnbench.measure.roof import bandwidth_roof
from attnbench.results import read_run
from attnbench.sanitize import plain

# The x axis of a group is the first of these that varies; the others that vary make variants.
AXES = ("seq_kv", "seq_q", "heads_q", "heads_kv", "batch", "head_dim")
# "window" stands for (window_left, window_right) and "layout" for (layout, page_size): each
# varies, and is labelled, as one field
VARIANT_FIELDS = ("seq_q", "heads", "batch", "head_dim", "dtype", "mask", "mode", "scale",
                  "window", "q_lens", "kv_lens", "doc_lens", "layout", "alibi", "bias",
                  "softcap", "head_dim_v", "sinks", "lse", "mask_mod", "kv_quant", "inputs",
                  "poison", "strides")
PLAIN = "plain"  # the label of the case without any of the variants that vary in its group
LIST_SHOWN = 6  # lengths lists longer than this are shown by their head, count and a checksum
SHORT = {"seq_q": "q", "seq_kv": "k", "heads_q": "hq", "heads_kv": "hkv", "batch": "b",
         "head_dim": "d"}
AXIS_TITLE = {"seq_kv": "sequence length (keys)", "seq_q": "query length",
              "heads_q": "query heads", "heads_kv": "key/value heads", "batch": "batch",
              "head_dim": "head dim"}


@dataclass
class Run:
    """One run folder as read back: its metadata, its records and a short label."""

    path: Path
    meta: dict[str, Any]
    records: list[dict[str, Any]]
    label: str = ""

    @property
    def environment(self) -> dict[str, Any]:
        return self.meta.get("environment") or {}

    def roof(self, device: str, dtype: str) -> float | None:
        """The device's measured matmul roof in FLOP/s for a dtype, when the run has one."""
        value = ((self.meta.get("roofs") or {}).get(device) or {}).get(dtype)
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    def bandwidth(self, device: str) -> float | None:
        """The device's measured copy bandwidth in bytes/s, when the run has one."""
        return bandwidth_roof((self.meta.get("roofs") or {}).get(device))


@dataclass
class Group:
    """Records of one scenario on one device in one run, with the x axis and variants chosen."""

    scenario: str
    device: str
    run: Run
    records: list[dict[str, Any]]
    axis: str = "seq_kv"
    variant_fields: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return plain(f"{self.scenario} · {self.device} · {self.run.label}")

    @property
    def slug(self) -> str:
        """A file-name stem unique to the group: readable part plus a hash of the exact names
        (scenarios `x y` and `x_y` read alike but get different files)."""
        raw = f"{self.scenario}-{self.device}-{self.run.label}"
        safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in raw)
        digest = hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        return f"{safe[:80]}-{digest}"

    def variant(self, rec: dict[str, Any]) -> str:
        """A short label of the case fields, other than the axis, that vary in this group
        ('plain' when every one that varies is off in this case)."""
        parts = [variant_label(f, variant_value(f, rec, self.axis)) for f in self.variant_fields]
        return " ".join(p for p in parts if p) or (PLAIN if self.variant_fields else "")

    def variants(self) -> list[str]:
        """Variant labels in the natural order of their field values (hq2 before hq16)."""
        keys: dict[str, tuple[Any, ...]] = {}
        for r in self.records:
            key = tuple(_sortable(x) for f in self.variant_fields for x in _order(f, r, self.axis))
            keys.setdefault(self.variant(r), key)
        return sorted(keys, key=lambda v: keys[v])

    def backends(self) -> list[str]:
        return sorted({r["backend"] for r in self.records})


def field_label(name: str, value: Any) -> str:
    """'q1024', 'hq8', 'causal', 's=0.5': a case field as a short label."""
    if name == "scale":
        return "s=default" if value is None else f"s={value:g}"
    return f"{SHORT[name]}{value}" if name in SHORT else str(value)


def read_runs(paths: list[str | Path]) -> list[Run]:
    """Read each run folder; labels are run ids, made unique and short."""
    runs = []
    for p in paths:
        meta, records = read_run(p)
        runs.append(Run(Path(p), meta, records))
    for run in runs:
        host = run.environment.get("host") or "?"
        rid = str(run.meta.get("run_id") or run.path.name)
        run.label = rid if len(runs) == 1 else f"{host}/{rid}"
    labels = [r.label for r in runs]
    for i, run in enumerate(runs):
        if labels.count(run.label) > 1:
            run.label = f"{run.label}#{i + 1}"
    return runs


def device_type(rec: dict[str, Any]) -> str:
    """The record's device; for a record measured on a cluster node (executor ray) with the
    node's GPU (cuda) or CPU model, so that two device types never share a table or plot."""
    device = str(rec.get("device", "?"))
    node = rec.get("node") if isinstance(rec.get("node"), dict) else {}
    model = node.get("gpu") if device == "cuda" else node.get("cpu")
    return f"{device} ({model})" if isinstance(model, str) and model else device


def make_groups(runs: list[Run]) -> list[Group]:
    """Groups in order of scenario, then device, then run."""
    out: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for i, run in enumerate(runs):
        for r in run.records:
            if "scenario" in r and "backend" in r:
                out.setdefault((str(r["scenario"]), device_type(r), i), []).append(r)
    groups = []
    for (scenario, device, i), recs in sorted(out.items(), key=lambda kv: kv[0]):
        axis, variants = choose_axis(recs)
        groups.append(Group(scenario, device, runs[i], recs, axis, variants))
    return groups


def choose_axis(records: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The x axis (first varying size) and the other varying fields (the variants)."""
    def varies(f: str, axis: str = "") -> bool:
        values = {_hashable(variant_value(f, r, axis) if axis else r.get(f)) for r in records}
        return len(values) > 1

    axis = next((a for a in AXES if varies(a)), "seq_kv")
    return axis, [f for f in VARIANT_FIELDS if varies(f, axis)]


def variant_value(name: str, rec: dict[str, Any], axis: str) -> Any:
    """A variant field's value relative to the axis: q=k for self-attention, heads as a pair."""
    hq, hkv = rec.get("heads_q"), rec.get("heads_kv")
    if name == "seq_q":
        if axis == "seq_q":
            return None
        return "=k" if axis == "seq_kv" and rec.get("seq_q") == rec.get("seq_kv") else rec.get(
            "seq_q")
    if name == "heads":
        if axis == "heads_q":
            return "hkv=hq" if hq == hkv else f"hkv{hkv}"
        if axis == "heads_kv":
            return f"hq{hq}"
        return f"h{hq}" if hq == hkv else f"h{hq}:{hkv}"
    if name == "window":
        left, right = rec.get("window_left"), rec.get("window_right")
        return None if left is None and right is None else (left, right)
    if name == "layout":
        layout = rec.get("layout") or "padded"
        return None if layout == "padded" else (layout, rec.get("page_size"))
    if name == "bias":
        return None if rec.get("bias") in (None, "none") else rec.get("bias")
    if name in ("alibi", "poison", "sinks", "lse"):
        return bool(rec.get(name))
    if name in ("inputs", "strides"):
        return None if rec.get(name) in (None, "normal", "contiguous") else rec.get(name)
    if name == "mask_mod":
        return mask_name(rec.get(name))
    if name == "kv_quant":
        fmt = rec.get("kv_quant")
        return None if fmt in (None, "none") else (str(fmt), str(rec.get("kv_scale")))
    return _hashable(rec.get(name))


def mask_name(ref: Any) -> str | None:
    """A record's mask function by its short name ('prefix_lm_8'); None without one."""
    if ref is None:
        return None
    try:
        return short_name(str(ref))
    except ValueError:  # a damaged or hand-edited record
        return f"unparsed#{zlib.crc32(str(ref).encode()) & 0xFFFF:04x}"


def variant_label(name: str, value: Any) -> str:
    """A variant field's value as a short label; '' for a variant that is off."""
    if name == "seq_q":
        return f"q{value}"
    if name == "heads":
        return str(value)
    if name in VARIANT_LABELS:
        return "" if value is None or value is False else VARIANT_LABELS[name](value)
    return field_label(name, value)


def _side(x: Any) -> str:
    return "inf" if x is None else str(x)


def lens_text(lens: Any) -> str:
    """'512,300,0'; a long list as its head, its count and a checksum (distinct lists stay
    distinct)."""
    values = [str(x) for x in lens]
    if len(values) <= LIST_SHOWN:
        return ",".join(values)
    crc = zlib.crc32(",".join(values).encode()) & 0xFFFF
    return f"{','.join(values[:3])},…×{len(values)}#{crc:04x}"


VARIANT_LABELS = {
    "window": lambda v: f"win {_side(v[0])}:{_side(v[1])}",
    "q_lens": lambda v: f"q_lens {lens_text(v)}",
    "kv_lens": lambda v: f"kv_lens {lens_text(v)}",
    "doc_lens": lambda v: f"docs {lens_text(v)}",
    "layout": lambda v: f"{v[0]} {v[1]}" if v[1] is not None else str(v[0]),
    "alibi": lambda v: "alibi",
    "bias": lambda v: f"bias {v}",
    "softcap": lambda v: f"cap {v:g}",
    "head_dim_v": lambda v: f"dv {v}",
    "inputs": lambda v: f"inputs {v}",
    "poison": lambda v: "NaN padding",
    "sinks": lambda v: "sinks",
    "lse": lambda v: "log-sum-exp",
    "mask_mod": lambda v: f"mask {v}",
    "kv_quant": lambda v: f"kv {v[0].removeprefix('float8_')} per {v[1]}",
    "strides": lambda v: f"{v} q k v",
}


def _order(name: str, rec: dict[str, Any], axis: str) -> tuple[Any, ...]:
    """Raw values that sort a variant naturally: heads by (q, kv), q=k before fixed lengths."""
    if name == "heads":
        return (rec.get("heads_q"), rec.get("heads_kv"))
    value = variant_value(name, rec, axis)
    if value is None or value is False:  # an unset variant before its settings
        return (-1,)
    if isinstance(value, tuple):  # window sides, lengths, (layout, page size)
        return (len(value), *value)
    return (-1,) if value == "=k" else (value,)


def _sortable(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
