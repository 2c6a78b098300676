"""The keys a scenario file may hold and the values each takes, checked before any case is made."""

from __future__ import annotations

import math
from typing import Any

from attnbench.case import (
    BIAS_KINDS,
    DEVICES,
    DTYPES,
    INPUTS,
    KV_QUANTS,
    KV_SCALES,
    LAYOUTS,
    LIST_KEYS,
    MASKS,
    MAX_INT,
    MODES,
    STRIDES,
)
from attnbench.errors import ScenarioError
from attnbench.mask_mod import MaskModError, parse

INT_KEYS = ("batch", "heads", "heads_q", "heads_kv", "seq_len", "seq_q", "seq_kv", "head_dim",
            "head_dim_v", "page_size")
SIZE_KEYS = ("window_left", "window_right")  # integers >= 0
CHOICES = {"dtype": DTYPES, "mask": MASKS, "mode": MODES, "layout": LAYOUTS,
           "bias": BIAS_KINDS, "inputs": INPUTS, "strides": STRIDES, "kv_quant": KV_QUANTS,
           "kv_scale": KV_SCALES}
FLOAT_KEYS = ("scale", "softcap")  # positive finite numbers
BOOL_KEYS = ("alibi", "poison", "sinks", "lse")
FUNCTION_KEYS = ("mask_mod",)  # "module:function" or "file.py:function" (attnbench/mask_mod.py)
CASE_KEYS = (*INT_KEYS, *SIZE_KEYS, *LIST_KEYS, *CHOICES, *FLOAT_KEYS, *BOOL_KEYS,
             *FUNCTION_KEYS)
TOP_KEYS = ("name", "description", "base", "sweep", "device", "variant")


def check_spec(spec: dict[str, Any], path: str) -> None:
    """Check a scenario file's tables; raise ScenarioError naming the file, key and reason."""
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
    elif key in FUNCTION_KEYS:
        if not isinstance(x, str):
            raise ScenarioError(f"{path}: key {label!r}: expected \"module:function\", got {x!r}")
        try:
            parse(x)
        except MaskModError as e:
            raise ScenarioError(f"{path}: key {label!r}: {e}") from None
    elif key in BOOL_KEYS:
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
