"""Which cases make sense: variant settings that fit the shape, scores the dtype can carry."""

from __future__ import annotations

import math

from attnbench.case import MAX_INT, Case
from attnbench.variants import alibi_slopes

GRAD_VARIANTS = ("window", "lengths", "documents", "alibi", "bias", "softcap", "dv",
                 "mask_mod")  # bwd ok
MIN_SOFTCAP = 2.0**-126  # a softcap a float32 kernel can hold (0 means "off" to them)


def variant_problem(case: Case) -> str | None:
    """Why a case's variant settings contradict each other or its shape, or None."""
    for key, lens, top, seq in (("q_lens", case.q_lens, case.seq_q, "seq_q"),
                                ("kv_lens", case.kv_lens, case.seq_kv, "seq_kv")):
        if lens is not None and len(lens) != case.batch:
            return f"key {key!r}: {len(lens)} lengths for batch={case.batch}"
        if lens is not None and max(lens) > top:
            return f"key {key!r}: a length of {max(lens)} exceeds {seq}={top}"
    if case.doc_lens is not None:
        if case.seq_q != case.seq_kv or sum(case.doc_lens) != case.seq_q:
            return (f"key 'doc_lens': the documents must fill the sequence: they sum to "
                    f"{sum(case.doc_lens)}, seq_q={case.seq_q}, seq_kv={case.seq_kv}")
        if min(case.doc_lens) < 1:
            return "key 'doc_lens': a document has length 0"
        if case.q_lens is not None or case.kv_lens is not None:
            return "key 'doc_lens': documents do not combine with q_lens/kv_lens"
    if case.softcap is not None and case.softcap < MIN_SOFTCAP:
        return (f"key 'softcap': {case.softcap:g} is below 2**-126, the smallest normal "
                "float32; a float32 kernel would read it as 0 (no softcap)")
    if case.poison and case.mode != "fwd":
        return "key 'poison': forward only (a gradient of a NaN padding key is not defined)"
    if case.poison and not _has_padding(case):
        return ("key 'poison': the case has no padding to poison: set q_lens/kv_lens shorter "
                "than the sequences (padded or paged layout) or use the paged layout (its pool "
                "has free pages)")
    if case.strides != "contiguous" and case.layout != "padded":
        return (f"key 'strides': {case.strides!r} views exist for the padded layout only "
                f"(this case is {case.layout})")
    if case.lse and case.mode != "fwd":
        return "key 'lse': forward only (the log-sum-exp is compared on the forward pass only)"
    if case.lse and case.layout == "packed":
        return ("key 'lse': the padded and paged layouts only (an lse is checked as (batch, "
                "heads_q, seq_q), which a packed layout has no rows for)")
    problem = _kv_quant_problem(case)
    if problem:
        return problem
    no_grad = [v for v in case.variants if v not in GRAD_VARIANTS]
    if no_grad and case.mode != "fwd":
        return (f"mode {case.mode!r} with the {', '.join(no_grad)} variant: the gradient oracle "
                f"covers the padded layout only, without sinks; use mode = \"fwd\"")
    return _layout_problem(case)


def _kv_quant_problem(case: Case) -> str | None:
    """Why a case's kv_quant / kv_scale keys are unusable, or None."""
    if case.kv_quant == "none":
        return ("key 'kv_scale': set it only with kv_quant" if case.kv_scale != "tensor"
                else None)
    if case.mode != "fwd":
        return "key 'kv_quant': forward only (quantized k and v have no gradient here)"
    if case.layout != "padded" or case.strides != "contiguous" or case.poison:
        return ("key 'kv_quant': the padded layout only, contiguous, without poison (codes "
                "and scales of pages, packed sequences or NaN padding are not built)")
    return None


def _has_padding(case: Case) -> bool:
    """Whether a case's inputs hold positions no row may read (what poison fills with NaN)."""
    if case.layout == "packed":
        return False
    short = any(n < case.seq_q for n in case.q_lens or ()) or any(
        n < case.seq_kv for n in case.kv_lens or ())
    return short or case.layout == "paged"  # a pool has free pages (verify/layouts.py)


def _layout_problem(case: Case) -> str | None:
    """Why a case's layout keys are unusable, or None.

    A page may be larger than the sequence (FlashAttention's own tests put 239 keys in a page
    of 512): the pool then holds one page per sequence, mostly spare slots. Only a sequence
    whose pages hold more slots than a 32-bit index reaches is refused here; whether a pool
    fits in memory is the plan's check (measure/memory.check_fits), and a backend that cannot
    take a page size says so in its unsupported record.
    """
    if (case.layout == "paged") != (case.page_size is not None):
        return "key 'page_size': set it exactly when layout = \"paged\""
    if case.page_size is not None:
        slots = -(-case.seq_kv // case.page_size) * case.page_size
        if slots > MAX_INT:
            return (f"key 'page_size': pages of {case.page_size} hold {slots} slots for "
                    f"seq_kv={case.seq_kv}, beyond a 32-bit slot index ({MAX_INT})")
    if case.layout == "packed" and case.q_lens is None and case.kv_lens is None:
        return ("key 'layout': \"packed\" needs q_lens or kv_lens (the lengths of the "
                "sequences packed one after another); without them use the padded layout")
    return None


# The largest finite value of each dtype, and how large |q·k| gets for the harness's inputs
# (standard normal, rounded): 8 standard deviations of a D-term dot product, plus the tail of a
# product of two normals (√D ≤ 4.5 keeps it short of its ~6.5² worst).
DTYPE_MAX = {"float64": 1.7976931348623157e308, "float32": 3.4028234663852886e38,
             "float16": 65504.0, "bfloat16": 3.3895313892515355e38}


def score_reach(case: Case) -> float:
    """How large the scores a kernel computes get: scale·|q·k| (before a softcap), plus the
    ALiBi and bias terms."""
    reach = case.softmax_scale * (8 * math.sqrt(case.head_dim) + 36)
    if case.alibi:
        reach += float(alibi_slopes(case.heads_q).max()) * (case.seq_q + case.seq_kv)
    return reach + (8.0 if case.bias != "none" else 0.0)


def range_problem(case: Case) -> str | None:
    """Why the case's scale or softcap is more than its dtype (or the float64 oracle) can
    carry, or None. A kernel subtracts each row's largest score from every score, so a score
    may reach half the dtype's largest value, not more."""
    for dtype in dict.fromkeys((case.dtype, "float64")):
        top = DTYPE_MAX[dtype]
        if case.softcap is not None and case.softcap >= top:
            return (f"key 'softcap': {case.softcap:g} is not below {dtype}'s largest value "
                    f"({top:.4g}): a {dtype} kernel cannot hold it")
        reach = score_reach(case)
        if not reach < top / 2:
            return (f"key 'scale': {case.softmax_scale:g} makes scores up to ~{reach:.3g}, more "
                    f"than {dtype} can carry (half its largest value, {top / 2:.4g})")
    return None
