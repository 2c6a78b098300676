"""flex-attention: torch.nn.attention.flex_attention under torch.compile; variants as mods."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from attnbench import Backend, Capabilities, Case, Inputs, hookimpl, variants
from attnbench.case import VARIANTS

MODULE = "torch.nn.attention.flex_attention"
LSE_VARIANTS = ("sinks", "lse")  # built on flex's own log-sum-exp, which only CUDA returns
LSE_WHY = {v: "torch.compile's CPU flex_attention kernel returns no log-sum-exp (torch 2.13's "
              "flex_cpu: \"return_lse is not supported yet\"), which this variant is built on"
           for v in LSE_VARIANTS}
RECOMPILE_LIMIT = 256  # one graph per dtype/mask/heads family: never fall back to eager


@cache
def compiled_flex(dynamic: bool | None = True) -> Callable[..., Any]:
    """flex_attention wrapped in torch.compile once per process; graphs compile on first call.

    dynamic=True: one graph serves every sequence length of a (dtype, mask, grouping) family,
    so a sweep pays a few compiles, not one per shape (False: one graph per shape; None:
    torch's default, static until a shape changes). Each compile lands in the first call of
    the case that triggers it (the harness's first_call_ms), never in the timed median.
    """
    import torch
    import torch._dynamo
    import torch.fx.experimental._config as fx_config
    from torch.nn.attention.flex_attention import flex_attention

    fx_config.use_duck_shape = False  # seq_q == seq_kv in one case must not force a recompile later
    cfg = torch._dynamo.config
    for knob in ("recompile_limit", "cache_size_limit"):  # renamed across torch versions
        if hasattr(cfg, knob) and getattr(cfg, knob) < RECOMPILE_LIMIT:
            setattr(cfg, knob, RECOMPILE_LIMIT)
    compile_log()  # counting from the first compile on
    return torch.compile(flex_attention, dynamic=dynamic)


@dataclass
class CompileLog:
    """Every torch.compile compilation in this process, counted and timed, and the facts of
    the case being run kept current: a compile in any of its calls, a lazily compiled backward
    included, updates them at once (Inputs.report)."""

    count: int = 0
    ms: float = 0.0
    started: float = 0.0
    case: tuple[weakref.ref, int, float] | None = None  # (its inputs, count and ms before it)

    def start(self, *_: Any) -> None:
        self.started = time.perf_counter()

    def end(self, *_: Any) -> None:
        self.count += 1
        self.ms += (time.perf_counter() - self.started) * 1e3
        self.tell()

    def follow(self, inputs: Inputs) -> None:
        """From now on, compiles are this case's (reported as none until one happens)."""
        self.case = (weakref.ref(inputs), self.count, self.ms)
        self.tell()

    def tell(self) -> None:
        """Report compiles, recompiled (it compiled although this process had compiled before:
        no earlier graph served the case) and compile_ms to the case being followed."""
        inputs = self.case[0]() if self.case else None
        if inputs is None:
            return
        new = self.count - self.case[1]
        inputs.report(compiles=new, recompiled=new > 0 and self.case[1] > 0,
                      compile_ms=round(self.ms - self.case[2], 3))


@cache
def compile_log() -> CompileLog | None:
    """The process's CompileLog, fed by dynamo's compile start/end callbacks (one window covers
    the tracing, AOT and inductor's code generation of a compile); None where torch has none."""
    import torch._dynamo

    handler = getattr(torch._dynamo, "callback_handler", None)
    if handler is None or not hasattr(handler, "register_end_callback"):
        return None
    log = CompileLog()
    handler.register_start_callback(log.start)
    handler.register_end_callback(log.end)
    return log


def synchronize(device: Any) -> None:
    """Wait for the device's queued work (CUDA), so that a host clock times it."""
    if getattr(device, "type", device) == "cuda":
        import torch

        torch.cuda.synchronize(device)


def causal_block_mask(case: Case, device: str) -> Any:
    """A BlockMask for bottom-right causal: query i sees key j iff j <= i + (seq_kv - seq_q)."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask

    # a tensor, not a Python int, so that a new offset does not force a recompile
    offset = torch.tensor(case.seq_kv - case.seq_q, device=device)

    def bottom_right(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return kv_idx <= q_idx + offset

    return create_block_mask(bottom_right, None, None, case.seq_q, case.seq_kv, device=device)


VISIBILITY = ("window", "lengths", "packed", "paged", "documents", "mask_mod")  # through mask_mod


def scalar(x: int | float, device: Any) -> Any:
    """A 0-d tensor (int32 for an int, as flex's indices): a captured tensor is a graph input,
    so a new value forces no recompile."""
    import torch

    return torch.tensor(x, device=device, dtype=torch.int32 if isinstance(x, int) else None)


def index(x: Any, device: Any) -> Any:
    """A NumPy int array as an int32 tensor on a device, flex's index dtype, of static size.

    torch 2.13's CPU inductor emits C++ that does not compile for a mod reading an int64
    tensor, or one whose size is a symbol (its name gets mangled into `cur_kvSplitSize4`)."""
    import torch

    return static(torch.from_numpy(np.ascontiguousarray(x)).to(device=device,
                                                                dtype=torch.int32))


def static(t: Any) -> Any:
    """t with its sizes marked static for torch.compile (see index)."""
    import torch._dynamo

    torch._dynamo.mark_static(t)
    return t


def packed_positions(inputs: Inputs, device: Any) -> Callable[..., Any]:
    """For the packed layout, run as one sequence of sequences: (b, q_idx, kv_idx) → (seq,
    qpos, kpos, same), each query and key located in its own sequence."""
    cu_q, cu_k = inputs.cu_seqlens_q, inputs.cu_seqlens_k
    sid_q = index(np.repeat(np.arange(len(cu_q) - 1), np.diff(cu_q)), device)
    sid_k = index(np.repeat(np.arange(len(cu_k) - 1), np.diff(cu_k)), device)
    start_q, start_k = index(cu_q[:-1], device), index(cu_k[:-1], device)

    def where(b: Any, q_idx: Any, kv_idx: Any) -> tuple[Any, Any, Any, Any]:
        sq, sk = sid_q[q_idx], sid_k[kv_idx]
        return sq, q_idx - start_q[sq], kv_idx - start_k[sk], sq == sk

    return where


def padded_positions(b: Any, q_idx: Any, kv_idx: Any) -> tuple[Any, Any, Any, Any]:
    """Padded (and paged, once gathered): batch element b, positions as they are."""
    return b, q_idx, kv_idx, None


def visibility_mod(inputs: Inputs, where: Callable[..., Any], device: Any) -> Callable[..., Any]:
    """mask_mod: query i of sequence s sees key j iff both are within its lengths and
    diag − left <= j <= diag + right, diag = i + (Lk − Lq) (causal: right <= 0), with
    documents both lie in one document, and with a mask function (a NumPy function, evaluated
    once here) its table says so: table[s, i, j], a (batch, seq_q, seq_kv) boolean tensor."""
    case = inputs.case
    big = case.seq_q + case.seq_kv + 1  # an unbounded side
    left, right = (big if w < 0 else w for w in inputs.window)
    if case.mask == "causal":
        right = min(right, 0)
    lq, lk = index(inputs.q_lens, device), index(inputs.kv_lens, device)
    off = index(inputs.kv_lens - inputs.q_lens, device)
    lo, hi = scalar(left, device), scalar(right, device)
    doc = index(inputs.doc_ids, device) if inputs.doc_ids is not None else None
    table = mask_table(inputs, device) if case.mask_mod is not None else None

    def visible(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        s, qp, kp, same = where(b, q_idx, kv_idx)
        diag = qp + off[s]
        ok = (qp < lq[s]) & (kp < lk[s]) & (kp >= diag - lo) & (kp <= diag + hi)
        if same is not None:
            ok = ok & same
        if doc is not None:
            ok = ok & (doc[qp] == doc[kp])
        if table is not None:
            ok = ok & table[s, qp, kp]
        return ok

    return visible


def mask_table(inputs: Inputs, device: Any) -> Any:
    """The case's visibility, (batch, seq_q, seq_kv) booleans on the device (static sizes)."""
    import torch

    case = inputs.case
    vis = np.stack([variants.visibility(case, b) for b in range(case.batch)])
    return static(torch.from_numpy(np.ascontiguousarray(vis)).to(device=device))


def score_mod(inputs: Inputs, where: Callable[..., Any], device: Any) -> Callable[..., Any] | None:
    """score_mod: s → cap·tanh(s / cap), − slope_h·|i + off − j| (ALiBi), + bias[b, h, i, j];
    only the terms the case has (None without any). flex hands it the scaled score."""
    import torch

    case = inputs.case
    if not (case.softcap or case.alibi or inputs.bias is not None):
        return None
    cap = scalar(float(case.softcap), device) if case.softcap else None
    slopes = (static(torch.from_numpy(inputs.alibi_slopes).to(device=device,
                                                              dtype=torch.float32))
              if case.alibi else None)
    off = index(inputs.kv_lens - inputs.q_lens, device)
    bias = inputs.bias
    if bias is not None:  # broadcast over batch/heads as a view: bias[s, h, i, j] everywhere
        bias = static(bias.expand(case.batch, case.heads_q, case.seq_q, case.seq_kv))

    def modified(score: Any, b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        if cap is not None:
            score = cap * torch.tanh(score / cap)
        if slopes is None and bias is None:
            return score
        s, qp, kp, _ = where(b, q_idx, kv_idx)
        if slopes is not None:
            score = score - slopes[h] * (qp + off[s] - kp).abs()
        if bias is not None:
            score = score + bias[s, h, qp, kp]
        return score

    return modified


def block_mask_for(inputs: Inputs, where: Callable[..., Any], q_len: int, kv_len: int,
                   device: Any) -> Any:
    """The BlockMask of a case: None (no mask), bottom-right causal, or the visibility mod."""
    from torch.nn.attention.flex_attention import create_block_mask

    case = inputs.case
    if not set(case.variants) & set(VISIBILITY):
        return causal_block_mask(case, device) if case.mask == "causal" else None
    batch = case.batch if case.layout != "packed" else None
    return create_block_mask(visibility_mod(inputs, where, device), batch, None, q_len, kv_len,
                             device=device)


def to_bhsd(x: Any) -> Any:
    """Packed (total, heads, d) → one sequence (1, heads, total, d), a view."""
    return x.transpose(0, 1).unsqueeze(0)


def paged_gather(inputs: Inputs) -> Callable[[Any], Any]:
    """A function pool → (batch, heads_kv, seq_kv, d): each sequence's pages read through the
    block table (in the timed call: that read is what paged attention costs)."""
    import torch

    case = inputs.case
    table = torch.from_numpy(inputs.block_table).to(device=inputs.q.device, dtype=torch.int64)
    rows = table.shape[1] * case.page_size

    def gather(pool: Any) -> Any:
        x = pool[table].reshape(case.batch, rows, *pool.shape[2:])
        return x[:, :case.seq_kv].transpose(1, 2)

    return gather


def lse_request() -> dict[str, Any]:
    """The argument asking this torch's flex_attention for the log-sum-exp (natural log)."""
    try:
        from torch.nn.attention.flex_attention import AuxRequest
    except ImportError:  # before AuxRequest: the older flag
        return {"return_lse": True}
    return {"return_aux": AuxRequest(lse=True)}


def split_lse(result: tuple[Any, Any]) -> tuple[Any, Any]:
    """(out, lse) of a flex_attention call that asked for the lse (natural log, float32)."""
    out, aux = result
    return out, getattr(aux, "lse", aux)  # AuxOutput, or the bare tensor of return_lse


def with_sinks(out: Any, lse: Any, sink: Any) -> Any:
    """Sinks from flex's own output and log-sum-exp, exactly: a sink σ_h adds e^σ_h to the
    row's denominator e^lse, so the output scales by e^lse / (e^lse + e^σ_h) = sigmoid(lse − σ_h)
    (0 for a row that sees no key, lse = −inf). In float32, rounded once to the output dtype."""
    import torch

    return (out.float() * torch.sigmoid(lse - sink)[..., None]).to(out.dtype)


def full_lse(lse: Any, sink: Any, empty: Any) -> Any:
    """The case's lse from flex's: −inf on the rows that see no key (empty: Inputs.empty_rows,
    or None), whatever the kernel leaves there; with sinks ln(e^lse + e^σ_h)."""
    import torch

    if empty is not None:
        lse = lse.masked_fill(empty[..., 0], float("-inf"))
    return lse if sink is None else torch.logaddexp(lse, sink)


class FlexAttention(Backend):
    name = "flex-attention"
    framework = "torch"
    requires = (MODULE,)
    description = ("flex_attention compiled with torch.compile; masks as BlockMasks, ALiBi, bias "
                   "and soft-capping as a score_mod, packed as one sequence, paged gathered, "
                   "sinks and the lse from its log-sum-exp")
    capabilities = Capabilities(
        devices=("cpu", "cuda"), dtypes=("float32", "float16", "bfloat16"),
        modes=("fwd", "bwd", "fwd_bwd"), variants=VARIANTS, why_not=LSE_WHY,
        # no backward on the CPU (NotImplementedError), nor a log-sum-exp
        per_device={"cpu": {"modes": ("fwd",),
                            "variants": tuple(v for v in VARIANTS if v not in LSE_VARIANTS)}},
    )

    dynamic: bool | None = True  # torch.compile's dynamic: see compiled_flex

    def prepare(self, inputs: Inputs) -> Callable[[], Any]:
        case = inputs.case
        flex, log = compiled_flex(self.dynamic), compile_log()
        if log is not None:
            log.follow(inputs)
        device = inputs.q.device
        packed = case.layout == "packed"
        if packed and (inputs.q.shape[0] == 0 or inputs.k.shape[0] == 0):
            # no query, or no key in any sequence: flex cannot index an empty sequence
            shape = (inputs.q.shape[0], case.heads_q, case.dv)
            inputs.report(setup_ms=0.0)
            return lambda: inputs.q.new_zeros(shape)
        where = packed_positions(inputs, device) if packed else padded_positions
        q, k, v = (to_bhsd(x) for x in (inputs.q, inputs.k, inputs.v)) if packed else (
            inputs.q, inputs.k, inputs.v)
        t0 = time.perf_counter()
        kwargs = {"block_mask": block_mask_for(inputs, where, q.shape[2],
                                               case.seq_kv if not packed else k.shape[2], device),
                  "score_mod": score_mod(inputs, where, device), "scale": inputs.scale,
                  "enable_gqa": case.heads_q != case.heads_kv}
        synchronize(device)
        inputs.report(setup_ms=round((time.perf_counter() - t0) * 1e3, 3))
        gather = paged_gather(inputs) if case.layout == "paged" else None
        inputs.empty_rows()  # built now, not in the first call

        sink = None if inputs.sinks is None else inputs.sinks.float()[None, :, None]
        if sink is not None or case.lse:
            kwargs.update(lse_request())
        if sink is not None:
            inputs.report(sinks="output × sigmoid(lse − σ_h), lse from flex_attention")

        quantized = inputs.k_scale is not None  # kv_quant (padded): dequantized in the call

        def run() -> Any:
            kk, vv = (gather(k), gather(v)) if gather else (k, v)
            if quantized:
                kk, vv = inputs.dequantized_kv()
            out = flex(q, kk, vv, **kwargs)
            lse = None
            if sink is not None or case.lse:
                out, lse = split_lse(out)
            if sink is not None:
                out = with_sinks(out, lse, sink)
            if packed:
                out = out[0].transpose(0, 1)  # (total_q, heads_q, dv), a view
            # rows that see no key must be zeros, whatever the kernel leaves there
            out = inputs.zero_empty_rows(out)
            if case.lse:  # padded and paged only (case_checks)
                return out, full_lse(lse, sink, inputs.empty_rows())
            return out

        return run


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [FlexAttention()]
