"""The record's fields, typed: Record (one line of records.jsonl) and its nested parts."""

from __future__ import annotations

from typing import Any, TypedDict


class Timing(TypedDict, total=False):
    """A record's `timing`: the timed calls' statistics and every raw sample (measure/)."""

    n: int
    median_ms: float
    iqr_ms: float
    p20_ms: float
    p80_ms: float
    min_ms: float
    mean_ms: float
    std_ms: float
    iqr_over_median: float
    noisy: bool
    samples_ms: list[float]
    loops: int  # calls per sample (CPU: short calls looped inside one sample)
    warmup_calls: int
    clock: str  # "perf_counter" or "cuda-events"
    l2: str  # CUDA: "cold" (flushed before each call) or "warm"
    estimate_ms: float
    capped_by_budget: bool


class Memory(TypedDict, total=False):
    """A record's `memory`: the peak of one untimed call above what was held before it."""

    peak_bytes: int
    base_bytes: int
    method: str


class WorkerInfo(TypedDict, total=False):
    """A record's `worker`: which process ran it and what the exchange cost."""

    pid: int
    overhead_ms: float
    restarted_after: bool


class MaskPicture(TypedDict):
    """A mask drawn as shades 0..255 (fraction of visible pairs per block), base64, row-major."""

    rows: int
    cols: int
    shades: str


class Record(TypedDict, total=False):
    """The fields of a record (records.jsonl, one a line). Case fields are flattened in."""

    scenario: str
    case_id: str
    backend: str
    framework: str
    batch: int
    heads_q: int
    heads_kv: int
    seq_q: int
    seq_kv: int
    head_dim: int
    dtype: str
    device: str
    mask: str
    mode: str
    scale: float | None
    window_left: int | None
    window_right: int | None
    q_lens: list[int] | None
    kv_lens: list[int] | None
    doc_lens: list[int] | None
    layout: str
    page_size: int | None
    alibi: bool
    bias: str
    softcap: float | None
    head_dim_v: int | None
    sinks: bool
    lse: bool
    mask_mod: str | None
    kv_quant: str
    kv_scale: str
    mask_picture: MaskPicture  # with a mask function: its picture (attnbench/mask_mod.py)
    inputs: str
    poison: bool
    strides: str
    softmax_scale: float
    flops: float
    io_bytes: int
    score_bytes: int
    status: str
    reasons: list[str]
    error: str | None
    traceback: str
    log_tail: str
    agreement: dict[str, Any]  # the verdict: outputs, gradients, timed calls (verify/judge.py)
    first_call_ms: float
    prepare_ms: float  # the backend's prepare() (its set-up), apart from its calls
    setup_ms: float  # the set-up the backend itself reports (ran.setup_ms), where it does
    timing: Timing
    timed_calls_offered: int
    memory: Memory
    gflops_per_s: float
    roof_flops_per_s: float
    roof_fraction: float
    gbytes_per_s: float  # io_bytes over the median: the bandwidth the case achieved
    arithmetic_intensity: float  # flops / io_bytes
    roof_bytes_per_s: float  # the device's stream-copy bandwidth (measure/roof.py)
    bandwidth_fraction: float
    roofline_flops_per_s: float  # min(matmul roof, intensity x bandwidth)
    roofline_fraction: float
    bound_by: str  # "memory" or "compute": which side of the roofline's ridge the case sits
    worker: WorkerInfo
    ran: dict[str, bool | int | float | str | None]  # what the backend says ran (Inputs.report)
    determinism: dict[str, Any]  # --repeat: bitwise equality across calls
    contention: dict[str, Any]  # the machine's readings where they changed (run/watch.py)
    flags: list[str]
    notes: list[str]
    timeout_s: float
    node: dict[str, Any]  # the Ray node that ran it
    frontier_stop: str  # run --frontier: why this backend's doubling stopped here
