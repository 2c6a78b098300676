"""Capabilities: what a backend can run, and the sentences naming what a case exceeds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from attnbench.case import Case

DEVICE_FIELDS = ("dtypes", "masks", "modes", "head_dim_min", "head_dim_max", "head_dim_multiple",
                 "gqa", "cross", "variants")  # the fields a per_device entry may override


@dataclass(frozen=True)
class Capabilities:
    """What a backend can run: checked before a case is handed to it.

    per_device narrows the fields of DEVICE_FIELDS on one device, e.g.
    `per_device={"cuda": {"dtypes": ("float16", "bfloat16")}}` or `{"cpu": {"modes": ("fwd",)}}`.
    min_versions maps a module to the lowest version the backend needs (`{"flash_attn": "2.1"}`).
    why_not maps a variant the backend lacks to the reason, said with the unsupported record
    (`{"softcap": "attn_mask cannot rewrite the scores"}`).
    """

    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float32",)
    masks: tuple[str, ...] = ("none", "causal")
    modes: tuple[str, ...] = ("fwd",)
    head_dim_min: int = 1
    head_dim_max: int | None = None
    head_dim_multiple: int = 1
    gqa: bool = True
    cross: bool = True
    variants: tuple[str, ...] = ()  # names from attnbench.case.VARIANTS
    why_not: Mapping[str, str] = field(default_factory=dict, hash=False)  # variant -> reason
    per_device: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)
    min_versions: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("devices", "dtypes", "masks", "modes", "variants"):  # a list: a tuple
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def on(self, device: str) -> Capabilities:
        """The capabilities on one device: the per_device entry applied, no per_device left."""
        return replace(self, **dict(self.per_device.get(device) or {}), per_device={})

    def limited_on(self, device: str) -> list[str]:
        """The fields that per_device narrows on a device."""
        return [f for f in DEVICE_FIELDS if f in (self.per_device.get(device) or {})]



def capability_reasons(name: str, caps: Capabilities, case: Case) -> list[str]:
    """Sentences naming each capability a case exceeds (on the case's device)."""
    limited = caps.limited_on(case.device)
    caps = caps.on(case.device)

    def on(*fields_: str) -> str:
        return f" on {case.device}" if any(f in limited for f in fields_) else ""

    out = []
    if case.dtype not in caps.dtypes:
        out.append(f"{name} does not support dtype {case.dtype}{on('dtypes')} "
                   f"(supports {', '.join(caps.dtypes)})")
    if case.mask not in caps.masks:
        out.append(f"{name} does not support mask {case.mask!r}{on('masks')}")
    if case.mode not in caps.modes:
        out.append(f"{name} has no {case.mode} mode{on('modes')} "
                   f"(supports {', '.join(caps.modes)})")
    d, hd = case.head_dim, on("head_dim_min", "head_dim_max", "head_dim_multiple")
    if d < caps.head_dim_min or (caps.head_dim_max is not None and d > caps.head_dim_max):
        out.append(f"{name} supports head_dim {caps.head_dim_min}..{caps.head_dim_max}{hd}, "
                   f"not {d}")
    elif d % caps.head_dim_multiple:
        out.append(f"{name} needs head_dim a multiple of {caps.head_dim_multiple}{hd}, not {d}")
    if not caps.gqa and case.heads_q != case.heads_kv:
        out.append(f"{name} does not support grouped heads (heads_q != heads_kv){on('gqa')}")
    if not caps.cross and case.seq_q != case.seq_kv:
        out.append(f"{name} does not support seq_q != seq_kv{on('cross')}")
    missing = [v for v in case.variants if v not in caps.variants]
    if missing:
        why = "; ".join(caps.why_not[v] for v in missing if caps.why_not.get(v))
        out.append(f"{name} does not support the {', '.join(missing)} variant"
                   f"{'s' if len(missing) > 1 else ''}{on('variants')}"
                   + (f": {why}" if why else ""))
    return out


def framework_reasons(name: str, framework: str, case: Case) -> list[str]:
    """Sentences naming what a case needs that the backend's framework lacks: NumPy has no
    float8 dtype, so a NumPy backend takes int8 codes only (kv_quant)."""
    if framework == "numpy" and case.kv_quant.startswith("float8"):
        return [f"{name} is a NumPy backend and NumPy has no {case.kv_quant} dtype (it takes "
                "kv_quant = \"int8\" only)"]
    return []
