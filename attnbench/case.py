"""Case (one attention problem), Scenario (a TOML file of cases) and their expansion."""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from attnbench import variants as var
from attnbench.errors import ScenarioError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DTYPES = ("float64", "float32", "float16", "bfloat16")
MASKS = ("none", "causal")
MODES = ("fwd", "bwd", "fwd_bwd")
DEVICES = ("cpu", "cuda")
INT_KEYS = ("batch", "heads", "heads_q", "heads_kv", "seq_len", "seq_q", "seq_kv", "head_dim",
            "head_dim_v", "page_size")
SIZE_KEYS = ("window_left", "window_right")  # integers >= 0
LIST_KEYS = ("q_lens", "kv_lens", "doc_lens")  # a list of integers, or "random" ("random:N")
CHOICES = {"dtype": DTYPES, "mask": MASKS, "mode": MODES, "layout": var.LAYOUTS,
           "bias": var.BIAS_KINDS}
GRAD_VARIANTS = ("window", "lengths", "documents", "alibi", "bias", "softcap", "dv")  # bwd ok
MAX_INT = 2**31 - 1  # sizes, windows and lengths beyond this overflow every kernel's indices
FLOAT_KEYS = ("scale", "softcap")  # positive finite numbers
MIN_SOFTCAP = 2.0**-126  # a softcap a float32 kernel can hold (0 means "off" to them)
CASE_KEYS = (*INT_KEYS, *SIZE_KEYS, *LIST_KEYS, *CHOICES, *FLOAT_KEYS, "alibi")
TOP_KEYS = ("name", "description", "base", "sweep", "device", "variant")


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
            f"-d{self.head_dim}{s}-{self.dtype}-{self.mask}{var.id_suffix(self)}-{self.mode}"
        )

    @property
    def dv(self) -> int:
        """The value (and output) head dim: head_dim_v when set, else head_dim."""
        return self.head_dim_v if self.head_dim_v is not None else self.head_dim

    @property
    def variants(self) -> tuple[str, ...]:
        """The names of the variants this case uses (attnbench.variants.VARIANTS)."""
        return var.case_variants(self)

    @property
    def softmax_scale(self) -> float:
        return self.scale if self.scale is not None else 1.0 / math.sqrt(self.head_dim)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Scenario:
    """A named set of cases read from a TOML file."""

    name: str
    description: str
    path: str
    spec: dict[str, Any]

    def cases(self, device: str) -> list[Case]:
        """Expand the scenario for a device (applying its [device.<name>] overrides)."""
        out: dict[Case, None] = {}  # a dict keeps the order and drops repeats in O(1)
        for variant in self.spec.get("variant") or [{}]:
            out.update(dict.fromkeys(_expand(self.spec, variant, device, self.path)))
        return list(out)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError naming file, key and reason."""
    p = Path(path)
    try:
        spec = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such scenario file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    except OSError as exc:  # a folder, no permission
        raise ScenarioError(f"{p}: cannot read the scenario file: {exc.strerror}") from None
    _validate(spec, str(p))
    name = spec.get("name", p.stem)
    scenario = Scenario(name, spec.get("description", ""), str(p), spec)
    for device in DEVICES:  # expand once per device so every bad value surfaces now
        scenario.cases(device)
    return scenario


def _validate(spec: dict[str, Any], path: str) -> None:
    for key in spec:
        if key not in TOP_KEYS:
            raise ScenarioError(f"{path}: unknown key {key!r} (allowed: {', '.join(TOP_KEYS)})")
    for key in ("name", "description"):
        if key in spec and not isinstance(spec[key], str):
            raise ScenarioError(f"{path}: key {key!r}: must be a string")
    for table in ("base", "sweep", "device"):
        if table in spec and not isinstance(spec[table], dict):
            raise ScenarioError(f"{path}: key {table!r}: must be a table")
    _check_table(spec.get("base", {}), path, "base", lists=False)
    _check_table(spec.get("sweep", {}), path, "sweep", lists=True)
    _check_devices(spec.get("device", {}), path, "device")
    variants = spec.get("variant", [])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ScenarioError(f"{path}: key 'variant': must be an array of tables ([[variant]])")
    for i, v in enumerate(variants):
        if "name" in v and not isinstance(v["name"], str):
            raise ScenarioError(f"{path}: key 'variant[{i}].name': must be a string")
        plain = {k: x for k, x in v.items() if k not in ("name", "device")}
        _check_table(plain, path, f"variant[{i}]", None)
        _check_devices(v.get("device", {}), path, f"variant[{i}].device")


def _check_devices(devices: Any, path: str, where: str) -> None:
    if not isinstance(devices, dict):
        raise ScenarioError(f"{path}: key {where!r}: must be a table")
    for dev, table in devices.items():
        if dev not in DEVICES:
            raise ScenarioError(f"{path}: key '{where}.{dev}': unknown device (use cpu or cuda)")
        if not isinstance(table, dict):
            raise ScenarioError(f"{path}: key '{where}.{dev}': must be a table")
        _check_table(table, path, f"{where}.{dev}", lists=None)


def _check_table(table: dict[str, Any], path: str, where: str, lists: bool | None) -> None:
    """Check keys and value types; lists=True needs lists, False forbids them, None allows both."""
    for key, value in table.items():
        label = f"{where}.{key}"
        if key not in CASE_KEYS:
            raise ScenarioError(f"{path}: unknown key {label!r} (allowed: {', '.join(CASE_KEYS)})")
        if lists is True and not is_sweep(key, value):
            raise ScenarioError(f"{path}: key {label!r}: a sweep value must be a list"
                                + (" of lists or strings" if key in LIST_KEYS else ""))
        if lists is False and is_sweep(key, value):
            raise ScenarioError(f"{path}: key {label!r}: a base value must not be a list")
        values = value if is_sweep(key, value) else [value]
        if isinstance(value, list) and not value:
            raise ScenarioError(f"{path}: key {label!r}: empty list")
        for x in values:
            _check_value(key, x, path, label)


def _check_value(key: str, x: Any, path: str, label: str) -> None:
    if key in SIZE_KEYS:
        if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x <= MAX_INT:
            raise ScenarioError(f"{path}: key {label!r}: expected an integer from 0 to "
                                f"{MAX_INT}, got {x!r}")
    elif key in LIST_KEYS:
        _check_lens(key, x, path, label)
    elif key == "alibi":
        if not isinstance(x, bool):
            raise ScenarioError(f"{path}: key {label!r}: expected true or false, got {x!r}")
    elif key in INT_KEYS:
        if not isinstance(x, int) or isinstance(x, bool):
            raise ScenarioError(f"{path}: key {label!r}: expected an integer, got {x!r}")
        if x <= 0:
            raise ScenarioError(f"{path}: key {label!r}: must be positive, got {x}")
        if x > MAX_INT:
            raise ScenarioError(f"{path}: key {label!r}: must be at most {MAX_INT}, got {x}")
    elif key in CHOICES:
        if x not in CHOICES[key]:
            allowed = ", ".join(CHOICES[key])
            raise ScenarioError(f"{path}: key {label!r}: unknown {key} {x!r} (use {allowed})")
    elif key in FLOAT_KEYS:
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not 0 < x < math.inf:
            raise ScenarioError(f"{path}: key {label!r}: expected a positive finite number, "
                                f"got {x!r}")


def _check_lens(key: str, x: Any, path: str, label: str) -> None:
    """A lengths value: a list of integers >= 0, or "random" ("random:N" for doc_lens)."""
    if isinstance(x, str):
        if key == "doc_lens":
            n = x.partition(":")[2]
            if not (x.startswith("random:") and n.isascii() and n.isdigit() and int(n) > 0):
                raise ScenarioError(f"{path}: key {label!r}: expected a list of lengths or "
                                    f"\"random:N\" (N documents), got {x!r}")
        elif x != "random":
            raise ScenarioError(f"{path}: key {label!r}: expected a list of lengths or "
                                f"\"random\", got {x!r}")
        return
    if not isinstance(x, list) or not x or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in x):
        raise ScenarioError(f"{path}: key {label!r}: expected a list of integers >= 0, got {x!r}")


def is_sweep(key: str, value: Any) -> bool:
    """True when a table value lists values to sweep (a lengths key's value is itself a list)."""
    if not isinstance(value, list):
        return False
    if key in LIST_KEYS:
        return all(isinstance(x, (list, str)) for x in value)
    return True


def _layer(base: dict, sweep: dict, table: dict) -> tuple[dict, dict]:
    """Overlay a table: scalars replace base and sweep values, lists replace sweep values."""
    base, sweep = dict(base), dict(sweep)
    for key, value in table.items():
        if key in ("name", "device"):
            continue
        _split_shorthand(key, base, sweep)
        for alias in _aliases(key):
            base.pop(alias, None)
            sweep.pop(alias, None)
        (sweep if is_sweep(key, value) else base)[key] = value
    return base, sweep


def _split_shorthand(key: str, base: dict, sweep: dict) -> None:
    """Setting seq_q (or heads_kv) over seq_len (heads) keeps the other half at its value."""
    for short, pair in (("heads", ("heads_q", "heads_kv")), ("seq_len", ("seq_q", "seq_kv"))):
        if key in pair:
            other = pair[1 - pair.index(key)]
            for table in (base, sweep):
                if short in table:
                    table.setdefault(other, table.pop(short))


def _aliases(key: str) -> tuple[str, ...]:
    groups = (("heads", "heads_q", "heads_kv"), ("seq_len", "seq_q", "seq_kv"))
    for group in groups:
        if key == group[0]:
            return group
        if key in group:
            return (group[0], key)
    return (key,)


def _expand(spec: dict, variant: dict, device: str, path: str) -> list[Case]:
    base, sweep = spec.get("base", {}), spec.get("sweep", {})
    base, sweep = _layer(base, sweep, spec.get("device", {}).get(device, {}))
    base, sweep = _layer(base, sweep, variant)
    base, sweep = _layer(base, sweep, variant.get("device", {}).get(device, {}))
    keys = list(sweep)
    out = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        out.append(_make_case({**base, **dict(zip(keys, combo, strict=True))}, device, path))
    return out


def _make_case(v: dict[str, Any], device: str, path: str) -> Case:
    for short, pair in (("heads", ("heads_q", "heads_kv")), ("seq_len", ("seq_q", "seq_kv"))):
        if short in v:
            for long in pair:
                v.setdefault(long, v[short])
    for key in ("batch", "heads_q", "heads_kv", "seq_q", "seq_kv", "head_dim"):
        if key not in v:
            raise ScenarioError(f"{path}: key {key!r}: missing (set it in [base] or [sweep])")
    if v["heads_q"] % v["heads_kv"]:
        raise ScenarioError(
            f"{path}: key 'heads_q': {v['heads_q']} is not a multiple of heads_kv={v['heads_kv']}"
        )
    case = Case(
        batch=v["batch"], heads_q=v["heads_q"], heads_kv=v["heads_kv"], seq_q=v["seq_q"],
        seq_kv=v["seq_kv"], head_dim=v["head_dim"], dtype=v.get("dtype", "float32"),
        device=device, mask=v.get("mask", "none"), mode=v.get("mode", "fwd"),
        scale=float(v["scale"]) if "scale" in v else None,
        window_left=v.get("window_left"), window_right=v.get("window_right"),
        q_lens=_lens(v, "q_lens", v["seq_q"]), kv_lens=_lens(v, "kv_lens", v["seq_kv"]),
        doc_lens=_docs(v, path), layout=v.get("layout", "padded"), page_size=v.get("page_size"),
        alibi=v.get("alibi", False), bias=v.get("bias", "none"),
        softcap=float(v["softcap"]) if "softcap" in v else None, head_dim_v=v.get("head_dim_v"),
    )
    problem = variant_problem(case) or range_problem(case)
    if problem:
        raise ScenarioError(f"{path}: {problem}")
    return case


def _lens(v: dict[str, Any], key: str, top: int) -> tuple[int, ...] | None:
    x = v.get(key)
    if x == "random":
        return var.random_lengths(key, v["batch"], top)
    return None if x is None else tuple(x)


def _docs(v: dict[str, Any], path: str) -> tuple[int, ...] | None:
    x = v.get("doc_lens")
    if isinstance(x, str):
        n = int(x.partition(":")[2])
        if n > v["seq_q"]:
            raise ScenarioError(f"{path}: key 'doc_lens': {n} documents do not fit "
                                f"seq_q={v['seq_q']}")
        return var.random_documents(n, v["seq_q"])
    return None if x is None else tuple(x)


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
    no_grad = [v for v in case.variants if v not in GRAD_VARIANTS]
    if no_grad and case.mode != "fwd":
        return (f"mode {case.mode!r} with the {', '.join(no_grad)} layout: the gradient oracle "
                f"covers the padded layout only; use mode = \"fwd\"")
    return _layout_problem(case)


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
        reach += float(var.alibi_slopes(case.heads_q).max()) * (case.seq_q + case.seq_kv)
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


def shipped_scenario_dir() -> Path:
    """The folder of the scenario files installed with attnbench."""
    import attnbench.scenarios

    return Path(attnbench.scenarios.__file__).parent


def scenario_names(extra_dirs: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Names of the shipped scenarios and of those in plugin-provided folders."""
    dirs = [shipped_scenario_dir(), *map(Path, extra_dirs)]
    return sorted({p.stem for d in dirs for p in d.glob("*.toml")})


def resolve_scenario(name_or_path: str, extra_dirs: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Load a scenario by shipped name, plugin folder name, or path to a .toml file."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return load_scenario(name_or_path)
    for d in [shipped_scenario_dir(), *map(Path, extra_dirs)]:
        candidate = d / f"{name_or_path}.toml"
        if candidate.is_file():
            return load_scenario(candidate)
    known = ", ".join(scenario_names(extra_dirs))
    raise ScenarioError(f"unknown scenario {name_or_path!r} (known: {known}; or give a .toml path)")
