"""xformers: xformers.ops.memory_efficient_attention (layout B, S, H, D), CUDA only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attnbench import Backend, Capabilities, Case, Inputs, Unsupported, hookimpl


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


def to_xformers_layout(inputs: Inputs) -> tuple[Any, Any, Any]:
    """q, k, v in xformers' layout: BMHK, or BMGHK (k/v expanded, stride 0) for grouped heads.

    BMGHK: G = heads_kv groups of H = heads_q // heads_kv query heads; query head h is
    (g, i) = divmod(h, H), which reads kv head g = h // H, our grouping rule.
    """
    case = inputs.case
    b, hq, hk, d = case.batch, case.heads_q, case.heads_kv, case.head_dim
    q = inputs.q.transpose(1, 2).contiguous()  # (B, Sq, Hq, D)
    k = inputs.k.transpose(1, 2).contiguous()  # (B, Sk, Hkv, D)
    v = inputs.v.transpose(1, 2).contiguous()
    if hq == hk:
        return q, k, v
    group = hq // hk
    q = q.view(b, case.seq_q, hk, group, d)
    k = k.unsqueeze(3).expand(b, case.seq_kv, hk, group, d)
    v = v.unsqueeze(3).expand(b, case.seq_kv, hk, group, d)
    return q, k, v


class XformersMEA(Backend):
    name = "xformers"
    framework = "torch"
    requires = ("xformers",)
    description = "xformers.ops.memory_efficient_attention with xformers' own operator dispatch"
    capabilities = Capabilities(
        devices=("cuda",), dtypes=("float32", "float16", "bfloat16"),
        modes=("fwd", "bwd", "fwd_bwd"),
    )

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        from xformers.ops import memory_efficient_attention

        case = inputs.case
        q, k, v = to_xformers_layout(inputs)
        bias = causal_bias(case)
        scale = inputs.scale
        out_shape = (case.batch, case.seq_q, case.heads_q, case.head_dim)
        inputs.empty_rows()  # built now, not in the first call

        def run() -> Any:
            try:
                out = memory_efficient_attention(q, k, v, attn_bias=bias, scale=scale)
            except NotImplementedError as exc:  # "No operator found for ..." with the reasons
                raise Unsupported(f"{self.name}: xformers has no operator for this case: "
                                  f"{str(exc).strip().splitlines()[0]}") from exc
            out = out.reshape(out_shape).transpose(1, 2)  # (B, Hq, Sq, D), a view
            # rows that see no key must be zeros, whatever the kernel leaves there
            return inputs.zero_empty_rows(out)

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [XformersMEA()]
