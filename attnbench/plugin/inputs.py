"""Inputs: one case's arrays as handed to prepare(), and the mask math a kernel may need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attnbench import variants
from attnbench.case import Case
from attnbench.plugin.facts import MAX_FACTS, Fact, check_fact


@dataclass
class Inputs:
    """One case's inputs in the backend's framework, dtype and device.

    Layout "padded" (the default) and "paged": q is (batch, heads_q, seq_q, head_dim).
    Padded: k is (batch, heads_kv, seq_kv, head_dim) and v (batch, heads_kv, seq_kv, dv).
    Paged: k and v are page pools (num_pages, page_size, heads_kv, head_dim | dv) and
    block_table (batch, pages_per_seq) says which page holds each sequence's keys.
    Packed: q, k, v are (total, heads, d), sequences one after another as cu_seqlens_q/k
    say, and the output must be (total_q, heads_q, dv). Every other layout outputs
    (batch, heads_q, seq_q, dv). attnbench/variants.py defines what each variant computes.
    With case.lse the callable returns (out, lse) instead (plugin/outputs.py, LSE_CONTRACT).
    """

    case: Case
    q: Any
    k: Any
    v: Any
    scale: float
    bias: Any = None  # (1|batch, 1|heads_q, seq_q, seq_kv) in the framework and dtype, or None
    sinks: Any = None  # (heads_q,) sink logits in the framework and dtype, or None
    cu_seqlens_q: Any = None  # packed: int32 (batch + 1,) offsets of each sequence (NumPy)
    cu_seqlens_k: Any = None
    block_table: Any = None  # paged: int32 (batch, pages_per_seq) page indices (NumPy)
    # kv_quant: k and v hold codes (torch float8_e4m3fn / float8_e5m2 / int8, NumPy int8) and
    # these float32 scales broadcast to them, (1|batch, 1|heads_kv, 1|seq_kv, 1): k ≈ k * k_scale
    k_scale: Any = None
    v_scale: Any = None
    reported: dict[str, Fact] = field(default_factory=dict, init=False, compare=False)
    _empty: Any = field(default=None, init=False, repr=False, compare=False)

    def report(self, **facts: Any) -> None:
        """Say what ran, for the record's `ran` field: `inputs.report(kernel="cudnn")`.

        Call it in prepare() or in the callable (a later value replaces an earlier one). Each
        fact is a name ([a-z][a-z0-9_]*, at most 32 characters) and a JSON scalar: a bool, an
        int, a finite float, None or a string (cut to MAX_FACT_TEXT characters); at most
        MAX_FACTS names per case. Anything else raises ValueError naming the fact.
        """
        for name, value in facts.items():
            checked = check_fact(name, value)
            if name not in self.reported and len(self.reported) >= MAX_FACTS:
                raise ValueError(f"Inputs.report: more than {MAX_FACTS} facts (at {name!r})")
            self.reported[name] = checked

    @property
    def mask(self) -> str:
        return self.case.mask

    @property
    def causal_offset(self) -> int:
        """Query i sees key j iff j <= i + causal_offset (bottom-right alignment), for full
        lengths; with q_lens/kv_lens each batch element has its own (kv_lens - q_lens)."""
        return self.case.seq_kv - self.case.seq_q

    @property
    def q_lens(self) -> Any:
        """int32 (batch,) query lengths (seq_q each when the case sets none)."""
        import numpy as np

        return variants.lengths(self.case)[0].astype(np.int32)

    @property
    def kv_lens(self) -> Any:
        """int32 (batch,) key lengths (seq_kv each when unset; the cache lengths when paged)."""
        import numpy as np

        return variants.lengths(self.case)[1].astype(np.int32)

    @property
    def max_seqlen_q(self) -> int:
        return int(self.q_lens.max(initial=0))

    @property
    def max_seqlen_k(self) -> int:
        return int(self.kv_lens.max(initial=0))

    @property
    def window(self) -> tuple[int, int]:
        """(left, right) window sizes, -1 where a side is unbounded (causal not folded in). A
        side of seq_q + seq_kv or more bounds nothing and is -1 too, so that no kernel has to
        add it to an index (2**31 - 1 would overflow an int32 one)."""
        c = self.case
        reach = c.seq_q + c.seq_kv  # |j - (i + off)| is always below this
        return tuple(-1 if w is None or w >= reach else w  # type: ignore[return-value]
                     for w in (c.window_left, c.window_right))

    @property
    def softcap(self) -> float | None:
        return self.case.softcap

    @property
    def alibi_slopes(self) -> Any:
        """float64 NumPy (heads_q,) ALiBi slopes, or None."""
        return variants.alibi_slopes(self.case.heads_q) if self.case.alibi else None

    @property
    def doc_ids(self) -> Any:
        """int32 NumPy (seq,) document of each position, or None."""
        return variants.doc_ids(self.case)

    def visible(self, b: int | None = None) -> Any:
        """Boolean visibility in q's framework: (seq_q, seq_kv) for batch element b; with
        b None, (seq_q, seq_kv) when every batch element is alike, else (batch, 1, seq_q,
        seq_kv)."""
        return _like(visibility_matrix(self.case, b), self.q)

    def additive_mask(self, dtype: Any = None) -> Any:
        """(1|batch, 1|heads_q, seq_q, seq_kv) float tensor in the framework, in q's dtype (or
        dtype): −inf where masked, plus ALiBi and bias (what an `attn_mask` takes); softcap is
        not in it. Each row's ALiBi terms are shifted so that its largest visible one is 0
        (softmax ignores a shift), so a half dtype keeps them exact where weights are large."""
        import numpy as np

        vis = visibility_matrix(self.case)
        m = np.where(vis, 0.0, -np.inf)
        if self.case.alibi:
            terms = alibi_matrix(self.case)
            top = np.where(vis, terms, -np.inf).max(axis=-1, keepdims=True)
            m = m + terms - np.where(np.isfinite(top), top, 0.0)
        while m.ndim < 4:
            m = m[None]
        if _is_torch(self.q):
            import torch

            out: Any = torch.from_numpy(m).to(device=self.q.device, dtype=dtype or self.q.dtype)
        else:
            out = m.astype(dtype or self.q.dtype)
        return out if self.bias is None else out + self.bias

    def dequantized_kv(self) -> tuple[Any, Any]:
        """(k, v) in q's dtype: codes times scales with kv_quant (exact: the scales are powers
        of two), else k and v themselves. Call it in the timed callable, so the time counts
        the dequantization."""
        if self.k_scale is None:
            return self.k, self.v
        dtype = self.q.dtype
        if _is_torch(self.q):
            return (self.k.to(dtype) * self.k_scale.to(dtype),
                    self.v.to(dtype) * self.v_scale.to(dtype))
        return (self.k.astype(dtype) * self.k_scale.astype(dtype),
                self.v.astype(dtype) * self.v_scale.astype(dtype))

    def has_empty_rows(self) -> bool:
        """True when some query row sees no key."""
        return bool(variants.empty_rows(self.case).any())

    def empty_rows(self) -> Any:
        """Boolean, True for the rows that see no key (they must output zeros), shaped to
        broadcast against the output: (seq_q, 1) when every batch element is alike, else
        (batch, 1, seq_q, 1); packed (total_q, 1, 1). In q's framework and on its device;
        None when every row sees a key. Built once, then reused."""
        if self._empty is None and self.has_empty_rows():
            self._empty = _like(empty_row_mask(self.case), self.q)
        return self._empty

    def zero_empty_rows(self, out: Any) -> Any:
        """out with the rows that see no key set to 0; out itself when there are none.
        Call it in the timed callable: `return inputs.zero_empty_rows(kernel(q, k, v))`."""
        empty = self.empty_rows()
        if empty is None:
            return out
        if _is_torch(out):
            return out.masked_fill(empty, 0.0)
        import numpy as np

        return np.where(empty, out.dtype.type(0), out)


def _uniform(case: Case) -> bool:
    """True when every batch element has the same mask (no per-sequence lengths, no mask
    function: it is given the batch element)."""
    return case.q_lens is None and case.kv_lens is None and case.mask_mod is None


def visibility_matrix(case: Case, b: int | None = None) -> Any:
    """NumPy visibility: (seq_q, seq_kv) for batch element b (or all, when alike), else
    (batch, 1, seq_q, seq_kv)."""
    import numpy as np

    if b is not None or _uniform(case):
        return variants.visibility(case, b or 0)
    return np.stack([variants.visibility(case, i) for i in range(case.batch)])[:, None]


def alibi_matrix(case: Case) -> Any:
    """float64 ALiBi terms, (1|batch, heads_q, seq_q, seq_kv)."""
    import numpy as np

    rows, heads = np.arange(case.seq_q), np.arange(case.heads_q)
    n = 1 if _uniform(case) else case.batch
    terms = [variants.score_terms(case, b, heads, rows, None) for b in range(n)]
    return np.stack([t for t in terms if t is not None])  # ALiBi's terms are never None


def empty_row_mask(case: Case) -> Any:
    """Boolean empty-row mask shaped to broadcast against the output (see Inputs.empty_rows)."""
    empty = variants.empty_rows(case)  # (batch, seq_q)
    if case.layout == "packed":
        import numpy as np

        q_lens = variants.lengths(case)[0]
        return np.concatenate([empty[b, :q_lens[b]] for b in range(case.batch)])[:, None, None]
    if _uniform(case):
        return empty[0][:, None]
    return empty[:, None, :, None]


def visible_mask(case: Case, like: Any = None) -> Any:
    """The visibility matrix of a case as NumPy, or as a torch tensor on like's device."""
    return _like(visibility_matrix(case), like)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _like(m: Any, like: Any) -> Any:
    """A NumPy array as a torch tensor on like's device when like is a tensor."""
    if like is not None and _is_torch(like):
        import torch

        return torch.from_numpy(m).to(like.device)
    return m
