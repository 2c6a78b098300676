"""The Backend base class, its Capabilities and the Inputs handed to prepare()."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from attnbench.case import Case


@dataclass(frozen=True)
class Capabilities:
    """What a backend can run: checked before a case is handed to it."""

    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float32",)
    masks: tuple[str, ...] = ("none", "causal")
    modes: tuple[str, ...] = ("fwd",)
    head_dim_min: int = 1
    head_dim_max: int | None = None
    head_dim_multiple: int = 1
    gqa: bool = True
    cross: bool = True


@dataclass
class Inputs:
    """One case's inputs in the backend's framework, dtype and device.

    q: (batch, heads_q, seq_q, head_dim); k, v: (batch, heads_kv, seq_kv, head_dim).
    """

    case: Case
    q: Any
    k: Any
    v: Any
    scale: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mask(self) -> str:
        return self.case.mask

    @property
    def causal_offset(self) -> int:
        """Query i sees key j iff j <= i + causal_offset (bottom-right alignment)."""
        return self.case.seq_kv - self.case.seq_q

    def visible(self) -> Any:
        """Boolean (seq_q, seq_kv) matrix, True where a query sees a key, in q's framework."""
        return visible_mask(self.case, like=self.q)

    def has_empty_rows(self) -> bool:
        """True when some query row sees no key (causal with seq_q > seq_kv)."""
        return self.case.mask == "causal" and self.case.seq_q > self.case.seq_kv

    def empty_rows(self) -> Any:
        """(seq_q, 1) bool, True for rows that see no key (they must output zeros), in q's
        framework; None when every row sees a key."""
        if not self.has_empty_rows():
            return None
        return _like(~visible_mask(self.case).any(axis=-1)[:, None], self.q)


def visible_mask(case: Case, like: Any = None) -> Any:
    """The visibility matrix of a case as NumPy, or as a torch tensor on like's device."""
    import numpy as np

    from attnbench.reference import row_visibility

    return _like(row_visibility(case, np.arange(case.seq_q)), like)


def _like(m: Any, like: Any) -> Any:
    """A NumPy array as a torch tensor on like's device when like is a tensor."""
    if like is not None and type(like).__module__.startswith("torch"):
        import torch

        return torch.from_numpy(m).to(like.device)
    return m


@cache
def import_failure(module: str) -> str | None:
    """The reason a module cannot be imported, or None when it imports."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # any failure (ImportError, OSError, RuntimeError) is a reason
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{module} not importable: {first}"
    return None


@cache
def device_failure(device: str) -> str | None:
    """The reason a device cannot be used here, or None."""
    if device == "cpu":
        return None
    if device == "cuda":
        if import_failure("torch"):
            return "CUDA needs torch, which is not importable"
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device: torch.cuda.is_available() is False"
        return None
    return f"unknown device {device!r}"


class Backend:
    """Base class of every attention backend; subclass it and override prepare()."""

    name: str = ""
    framework: str = "numpy"
    capabilities: Capabilities = Capabilities()
    description: str = ""
    requires: tuple[str, ...] = ()

    def availability(self) -> list[str]:
        """Reasons this backend cannot run at all here (missing libraries)."""
        reasons = [import_failure(m) for m in self.requires]
        if self.framework == "torch":
            reasons.insert(0, import_failure("torch"))
        return [r for r in dict.fromkeys(reasons) if r]

    def device_reasons(self, device: str) -> list[str]:
        """Reasons this backend cannot run on a device here."""
        caps = self.capabilities
        if device not in caps.devices:
            return [f"{self.name} runs only on {', '.join(caps.devices)}, not {device}"]
        failure = device_failure(device)
        return [failure] if failure else []

    def unsupported(self, case: Case) -> list[str]:
        """Why this case cannot run here, as sentences; [] means supported."""
        reasons = self.availability() + self.device_reasons(case.device)
        return reasons + capability_reasons(self.name, self.capabilities, case)

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        """Convert layouts and allocate now; return a zero-argument callable computing out."""
        raise NotImplementedError(f"{type(self).__name__} must implement prepare()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def capability_reasons(name: str, caps: Capabilities, case: Case) -> list[str]:
    """Sentences naming each capability a case exceeds."""
    out = []
    if case.dtype not in caps.dtypes:
        supported = ", ".join(caps.dtypes)
        out.append(f"{name} does not support dtype {case.dtype} (supports {supported})")
    if case.mask not in caps.masks:
        out.append(f"{name} does not support mask {case.mask!r}")
    if case.mode not in caps.modes:
        out.append(f"{name} has no {case.mode} mode (supports {', '.join(caps.modes)})")
    d = case.head_dim
    if d < caps.head_dim_min or (caps.head_dim_max is not None and d > caps.head_dim_max):
        out.append(f"{name} supports head_dim {caps.head_dim_min}..{caps.head_dim_max}, not {d}")
    elif d % caps.head_dim_multiple:
        out.append(f"{name} needs head_dim a multiple of {caps.head_dim_multiple}, not {d}")
    if not caps.gqa and case.heads_q != case.heads_kv:
        out.append(f"{name} does not support grouped heads (heads_q != heads_kv)")
    if not caps.cross and case.seq_q != case.seq_kv:
        out.append(f"{name} does not support seq_q != seq_kv")
    return out


class Unsupported(Exception):
    """Raised by a backend (in prepare or its callable) when it finds it cannot run a case.

    The runner records the case as `unsupported` with this message as the reason.
    """
