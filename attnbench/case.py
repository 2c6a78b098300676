"""Case: one attention problem, the values its fields take, its id and the variants it uses."""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, fields
from typing import Any

from attnbench.mask_mod import short_name

DTYPES = ("float64", "float32", "float16", "bfloat16")
MASKS = ("none", "causal", "causal_top_left")  # causal: bottom-right aligned (variants.py)
MODES = ("fwd", "bwd", "fwd_bwd")
DEVICES = ("cpu", "cuda")
VARIANTS = ("window", "lengths", "packed", "paged", "documents", "alibi", "bias", "softcap",
            "dv", "sinks", "lse", "mask_mod", "kv_quant")
LAYOUTS = ("padded", "packed", "paged")
# k and v stored quantized (verify/kv_quant.py): a format, and what one scale covers
KV_QUANTS = ("none", "float8_e4m3fn", "float8_e5m2", "int8")
KV_SCALES = ("tensor", "head", "block")
BIAS_KINDS = ("none", "shared", "head", "batch_head")
# the distribution of q, k and v (verify/inputs.py): standard normal, a few channels with large
# outliers (as real activations have), every key equal, a very peaked softmax
INPUTS = ("normal", "outliers", "equal_keys", "peaked")
# how q, k and v lie in memory (verify/inputs.py): contiguous (batch, heads, seq, dim), or views
# of a (batch, seq, heads, dim) buffer (a projection's output transposed), or of a wider one (a
# slice of a fused projection's output)
STRIDES = ("contiguous", "transposed", "sliced")
LIST_KEYS = ("q_lens", "kv_lens", "doc_lens")  # a list of integers, or "random" ("random:N")
MAX_INT = 2**31 - 1  # sizes, windows and lengths beyond this overflow every kernel's indices


@dataclass(frozen=True)
class Case:
    """One attention problem: shapes, dtype, device, mask and pass direction."""

    batch: int
    heads_q: int
    heads_kv: int
    seq_q: int
    seq_kv: int
    head_dim: int
    dtype: str = "float32"
    device: str = "cpu"
    mask: str = "none"
    mode: str = "fwd"
    scale: float | None = None
    # variants (attnbench/variants.py defines them exactly); all off by default
    window_left: int | None = None
    window_right: int | None = None
    q_lens: tuple[int, ...] | None = None
    kv_lens: tuple[int, ...] | None = None
    doc_lens: tuple[int, ...] | None = None
    layout: str = "padded"
    page_size: int | None = None
    alibi: bool = False
    bias: str = "none"
    softcap: float | None = None
    head_dim_v: int | None = None
    sinks: bool = False  # a learned logit per query head in every row's softmax denominator
    lse: bool = False  # the backend returns each row's log-sum-exp beside the output
    mask_mod: str | None = None  # a mask function, "module:function" (attnbench/mask_mod.py)
    kv_quant: str = "none"  # k and v as float8 or int8 codes with scales (KV_QUANTS)
    kv_scale: str = "tensor"  # one scale per tensor, kv head or block of keys (KV_SCALES)
    # inputs that expose bugs: their distribution, and NaN in every padding position a kernel
    # must not read (past q_lens/kv_lens, spare page slots)
    inputs: str = "normal"
    poison: bool = False
    strides: str = "contiguous"

    def __post_init__(self) -> None:
        for name in LIST_KEYS:  # from JSON a list: kept as a tuple so the case stays hashable
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    @property
    def id(self) -> str:
        s = f"-s{float(self.scale)!r}" if self.scale is not None else ""  # shortest round trip
        return (
            f"b{self.batch}-h{self.heads_q}:{self.heads_kv}-q{self.seq_q}-k{self.seq_kv}"
            f"-d{self.head_dim}{s}-{self.dtype}-{self.mask}{id_suffix(self)}-{self.mode}"
        )

    @property
    def dv(self) -> int:
        """The value (and output) head dim: head_dim_v when set, else head_dim."""
        return self.head_dim_v if self.head_dim_v is not None else self.head_dim

    @property
    def variants(self) -> tuple[str, ...]:
        """The names of the variants this case uses (VARIANTS)."""
        return case_variants(self)

    @property
    def softmax_scale(self) -> float:
        return self.scale if self.scale is not None else 1.0 / math.sqrt(self.head_dim)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def case_variants(case: Case) -> tuple[str, ...]:
    """The names (from VARIANTS) of the variants a case uses."""
    used = {
        "window": case.window_left is not None or case.window_right is not None,
        "lengths": case.q_lens is not None or case.kv_lens is not None,
        "packed": case.layout == "packed",
        "paged": case.layout == "paged",
        "documents": case.doc_lens is not None,
        "alibi": case.alibi,
        "bias": case.bias != "none",
        "softcap": case.softcap is not None,
        "dv": case.head_dim_v is not None and case.head_dim_v != case.head_dim,
        "sinks": case.sinks,
        "lse": case.lse,
        "mask_mod": case.mask_mod is not None,
        "kv_quant": case.kv_quant != "none",
    }
    return tuple(v for v in VARIANTS if used[v])


def id_suffix(case: Case) -> str:
    """The part of a case id that names its variants ('' for a plain case)."""
    parts = []
    if case.window_left is not None or case.window_right is not None:
        parts.append(f"w{_side(case.window_left)}:{_side(case.window_right)}")
    for tag, lens in (("ql", case.q_lens), ("kvl", case.kv_lens), ("docs", case.doc_lens)):
        if lens is not None:
            parts.append(tag + _lens_text(lens))
    if case.layout != "padded":
        parts.append(case.layout + (str(case.page_size) if case.layout == "paged" else ""))
    if case.alibi:
        parts.append("alibi")
    if case.bias != "none":
        parts.append(f"bias_{case.bias}")
    if case.softcap is not None:
        parts.append(f"cap{float(case.softcap)!r}")
    if case.head_dim_v is not None:
        parts.append(f"dv{case.head_dim_v}")
    if case.sinks:
        parts.append("sinks")
    if case.lse:
        parts.append("lse")
    if case.mask_mod is not None:
        parts.append(f"mm_{short_name(case.mask_mod)}")
    if case.kv_quant != "none":
        parts.append(f"kv_{case.kv_quant.removeprefix('float8_')}_{case.kv_scale}")
    if case.inputs != "normal":
        parts.append(f"in_{case.inputs}")
    if case.poison:
        parts.append("poison")
    if case.strides != "contiguous":
        parts.append(f"st_{case.strides}")
    return "".join(f"-{p}" for p in parts)


def _side(x: int | None) -> str:
    return "inf" if x is None else str(x)


def _lens_text(lens: tuple[int, ...]) -> str:
    if len(lens) <= 8:
        return ",".join(map(str, lens))
    return f"#{len(lens)}x{zlib.crc32(','.join(map(str, lens)).encode()):08x}"
