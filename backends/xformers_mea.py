"""xformers: xformers.ops.memory_efficient_attention (layout B, S, H, D), CUDA only.

Each variant maps to xformers' own attn_bias classes where one exists: causal and window as
bottom-right masks, per-sequence key lengths and the paged cache as block-diagonal padded-keys
masks (made paged through the block table), packed sequences and documents as block-diagonal
masks. ALiBi, a bias tensor and combinations no class expresses go as a dense additive tensor
in the padded layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attnbench.backends.xformers_load import cuda12_runtime, one_line, xformers_failure

from attnbench import Backend, Capabilities, Case, Inputs, Unsupported, hookimpl

VARIANTS = ("window", "lengths", "packed", "paged", "documents", "alibi", "bias", "dv")
WHY_NOT = {"softcap": "xformers' memory_efficient_attention has no soft-capping",
           "sinks": "xformers' memory_efficient_attention has no sink term (its log-sum-exp "
                    "could rescale the output, as flex-attention's does: not done here)",
           "lse": "not wired yet: memory_efficient_attention returns the output only (its "
                  "lse needs xformers' private fmha ops; untested without a GPU)",
           "kv_quant": "not wired yet: memory_efficient_attention takes one dtype for q, k and "
                       "v (dequantizing first is what torch-sdpa-efficient does)",
           "mask_mod": "not wired yet: a mask function would go in as a dense tensor bias "
                       "(untested without a GPU)"}
ALIGN = 8  # xformers wants a tensor bias's rows aligned: its last dim padded to a multiple
def causal_bias(case: Case) -> Any:
    """The attn_bias for a case: None, or a causal mask aligned to the bottom-right.

    xformers' LowerTriangularMask is top-left aligned; it equals bottom-right only when
    seq_q == seq_kv, so any other shape gets LowerTriangularFromBottomRightMask.
    """
    if case.mask == "none":
        return None
    from xformers.ops.fmha import attn_bias

    if case.seq_q == case.seq_kv:
        return attn_bias.LowerTriangularMask()
    return attn_bias.LowerTriangularFromBottomRightMask()


def window_bias(inputs: Inputs) -> Any:
    """LocalAttentionFromBottomRightMask: i + off − left <= j <= i + off + right (an unbounded
    side as seq_q + seq_kv; causal caps right at 0)."""
    from xformers.ops.fmha import attn_bias

    case = inputs.case
    big = case.seq_q + case.seq_kv
    left, right = (big if w < 0 else w for w in inputs.window)
    if case.mask == "causal":
        right = min(right, 0)
    return attn_bias.LocalAttentionFromBottomRightMask(window_left=left, window_right=right)


def to_xformers_layout(inputs: Inputs) -> tuple[Any, Any, Any]:
    """q, k, v in xformers' layout: BMHK, or BMGHK (k/v expanded, stride 0) for grouped heads.

    BMGHK: G = heads_kv groups of H = heads_q // heads_kv query heads; query head h is
    (g, i) = divmod(h, H), which reads kv head g = h // H, our grouping rule. Packed inputs
    are one batch element (1, total, ...); paged k/v are their pools, one row per slot.
    """
    case = inputs.case
    if case.layout == "packed":
        q, k, v = (x.unsqueeze(0) for x in (inputs.q, inputs.k, inputs.v))
    elif case.layout == "paged":
        q = inputs.q.transpose(1, 2).contiguous()
        k, v = (x.flatten(0, 1).unsqueeze(0) for x in (inputs.k, inputs.v))
    else:
        q, k, v = (x.transpose(1, 2).contiguous() for x in (inputs.q, inputs.k, inputs.v))
    return grouped(q, case), grouped(k, case), grouped(v, case)


def grouped(x: Any, case: Case) -> Any:
    """(B, M, Hx, K) as BMGHK when heads are grouped: q split, k/v broadcast over H."""
    hq, hk = case.heads_q, case.heads_kv
    if hq == hk:
        return x
    if x.shape[2] == hq:
        return x.unflatten(2, (hk, hq // hk))
    return x.unsqueeze(3).expand(*x.shape[:3], hq // hk, x.shape[-1])


def one_sequence(x: Any) -> Any:
    """(B, M, ...) → (1, B·M, ...): the batch as one run of sequences (block-diagonal)."""
    return x.flatten(0, 1).unsqueeze(0)


def block_diagonal(inputs: Inputs) -> tuple[Any, bool] | None:
    """A block-diagonal attn_bias for the case, and whether q/k/v must become one sequence;
    None when no class expresses the case (see dense_bias)."""
    from xformers.ops.fmha import attn_bias as ab

    case = inputs.case
    v = set(case.variants) - {"dv"}
    causal = case.mask == "causal"
    if case.layout == "packed" and not v - {"packed", "lengths"}:
        cls = ab.BlockDiagonalCausalFromBottomRightMask if causal else ab.BlockDiagonalMask
        return cls.from_seqlens(q_seqlen=list(map(int, inputs.q_lens)),
                                kv_seqlen=list(map(int, inputs.kv_lens))), False
    if v == {"documents"}:  # each document of each sequence is a block (square: causal fits)
        cls = ab.BlockDiagonalCausalMask if causal else ab.BlockDiagonalMask
        return cls.from_seqlens(list(case.doc_lens) * case.batch), True
    if (v in ({"lengths"}, {"paged"}, {"paged", "lengths"})) and case.q_lens is None:
        return padded_keys(inputs, ab, causal), True  # paged k/v: already one pool
    return None


def padded_keys(inputs: Inputs, ab: Any, causal: bool) -> Any:
    """Per-sequence key lengths: BlockDiagonal(Causal)WithOffset...PaddedKeysMask, made paged
    through the block table for the paged layout (its causal mask is bottom-right per block)."""
    case = inputs.case
    paged = case.layout == "paged"
    pad = inputs.block_table.shape[1] * case.page_size if paged else case.seq_kv
    cls = (ab.BlockDiagonalCausalWithOffsetPaddedKeysMask if causal
           else ab.BlockDiagonalPaddedKeysMask)
    bias = cls.from_seqlens(q_seqlen=[case.seq_q] * case.batch, kv_padding=pad,
                            kv_seqlen=list(map(int, inputs.kv_lens)))
    if not paged:
        return bias
    import torch

    kind = (ab.PagedBlockDiagonalCausalWithOffsetPaddedKeysMask if causal
            else ab.PagedBlockDiagonalPaddedKeysMask)
    table = torch.from_numpy(inputs.block_table).to(device=inputs.q.device, dtype=torch.int32)
    return bias.make_paged(block_tables=table, page_size=case.page_size, paged_type=kind)


def dense_bias(inputs: Inputs) -> Any:
    """inputs.additive_mask() (−inf where masked, + ALiBi + bias) as xformers' tensor bias:
    full (B, Hq, Sq, Skv) (BMGHK: (B, G, H, Sq, Skv)), rows padded to a multiple of 8."""
    case = inputs.case
    full = (case.batch, case.heads_q, case.seq_q, case.seq_kv)
    padded = -(-case.seq_kv // ALIGN) * ALIGN
    store = inputs.q.new_zeros(*full[:3], padded)
    store[..., :case.seq_kv] = inputs.additive_mask().expand(full)
    bias = store[..., :case.seq_kv]
    if case.heads_q != case.heads_kv:
        bias = bias.unflatten(1, (case.heads_kv, case.heads_q // case.heads_kv))
    return bias


def plan(inputs: Inputs) -> tuple[Any, bool]:
    """The attn_bias of a case and whether q/k/v go as one sequence (block-diagonal)."""
    case = inputs.case
    found = block_diagonal(inputs)
    if found is not None:
        return found
    if case.layout != "padded":
        raise Unsupported(f"xformers: its {case.layout} layout takes block-diagonal masks only "
                          f"(no tensor bias, no window): {', '.join(case.variants)} not mapped")
    if set(case.variants) & {"lengths", "documents", "alibi", "bias"}:
        return dense_bias(inputs), False
    return (window_bias(inputs) if "window" in case.variants else causal_bias(case)), False


def forward_op(q: Any, k: Any, v: Any, bias: Any, scale: float, grad: bool) -> Any:
    """The forward operator xformers' own dispatch picks for these inputs (what
    memory_efficient_attention would run), or None where this xformers lacks that dispatch;
    Unsupported with all of xformers' reasons, on one line, when no operator takes them."""
    from xformers.ops import fmha

    dispatch = getattr(getattr(fmha, "dispatch", None), "_dispatch_fw", None)
    if dispatch is None or not hasattr(fmha, "Inputs"):
        return None
    inp = fmha.Inputs(query=q, key=k, value=v, attn_bias=bias, p=0.0, scale=scale)
    try:
        inp.validate_inputs()
        return dispatch(inp, grad)
    except NotImplementedError as exc:  # "No operator found for ...": every operator's reasons
        raise Unsupported(f"xformers has no operator for this case: {one_line(exc)}") from exc


def backward_op(out: Any) -> str | None:
    """The backward operator xformers chose in the forward (kept on its autograd node)."""
    node = getattr(out, "grad_fn", None)
    for _ in range(4):  # the output is a view of the node's result
        if node is None:
            return None
        op = getattr(node, "op_bw", None)
        if op is not None:
            return str(getattr(op, "NAME", op))
        node = node.next_functions[0][0] if node.next_functions else None
    return None


class XformersMEA(Backend):
    name = "xformers"
    framework = "torch"
    requires = ("attnbench.backends.xformers_ready", "xformers")  # first: readies xformers
    description = ("xformers.ops.memory_efficient_attention with xformers' own operator "
                   "dispatch; variants as its attn_bias classes or a dense tensor bias")
    capabilities = Capabilities(
        devices=("cuda",), dtypes=("float32", "float16", "bfloat16"),
        modes=("fwd", "bwd", "fwd_bwd"), variants=VARIANTS, why_not=WHY_NOT,
    )

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        failure = xformers_failure()
        if failure:
            raise Unsupported(failure)
        from xformers.ops import memory_efficient_attention

        case = inputs.case
        bias, flat = plan(inputs)
        q, k, v = to_xformers_layout(inputs)
        if flat:
            q, k, v = one_sequence(q), one_sequence(k), one_sequence(v)
        scale = inputs.scale
        grad = case.mode != "fwd"
        op = forward_op(q, k, v, bias, scale, grad)  # run exactly the one reported
        inputs.report(op=getattr(op, "NAME", None), cuda12_runtime=cuda12_runtime())
        extra = {"op": (op, None)} if op is not None else {}  # backward: xformers' choice
        out_shape = (case.batch, case.seq_q, case.heads_q, case.dv)
        if case.layout == "packed":
            out_shape = (q.shape[1], case.heads_q, case.dv)
        inputs.empty_rows()  # built now, not in the first call

        def run() -> Any:
            try:
                out = memory_efficient_attention(q, k, v, attn_bias=bias, scale=scale, **extra)
            except NotImplementedError as exc:  # "No operator found" (no dispatch to ask first)
                raise Unsupported(f"{self.name}: xformers has no operator for this case: "
                                  f"{one_line(exc)}") from exc
            if grad and "op_bw" not in inputs.reported:
                inputs.report(op_bw=backward_op(out))
            out = out.reshape(out_shape)
            if case.layout != "packed":
                out = out.transpose(1, 2)  # (B, Hq, Sq, Dv), a view
            # rows that see no key must be zeros, whatever the kernel leaves there
            return inputs.zero_empty_rows(out)

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [XformersMEA()]
