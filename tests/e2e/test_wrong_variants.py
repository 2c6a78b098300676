"""A deliberately wrong plugin per variant is caught by `attnbench check -s variants` (exit 1).

Each plugin under tests/plugins/wrong_*.py is numpy-naive given a wrong view of one variant
(a window one key wider, the padding ignored, the ALiBi sign flipped, the softcap omitted or
taken over the ALiBi/bias terms too, two documents merged, the block table ignored, the packed
key offsets off by one, the sink logits scaled like scores, the lse in base 2, the mask
function dropped, v's dequantization scales forgotten). It declares only the variants it
needs, so it also runs the plain cases, which must pass.
"""

from __future__ import annotations

import json

import pytest

WRONG = {  # plugin file -> (backend name, the variant it gets wrong: "a+b|c" = a and b or c)
    "wrong_window.py": ("wrong-window", "window"),
    "wrong_padding.py": ("wrong-padding", "lengths"),
    "wrong_alibi.py": ("wrong-alibi", "alibi"),
    "wrong_softcap.py": ("wrong-softcap", "softcap"),
    "wrong_softcap_order.py": ("wrong-softcap-order", "softcap+alibi|bias"),
    "wrong_documents.py": ("wrong-documents", "documents"),
    "wrong_block_table.py": ("wrong-block-table", "paged"),
    "wrong_offsets.py": ("wrong-offsets", "packed"),
    "wrong_sinks.py": ("wrong-sinks", "sinks"),
    "wrong_lse.py": ("wrong-lse", "lse"),
    "wrong_mask_mod.py": ("wrong-mask-mod", "mask_mod"),
    "wrong_kv_scale.py": ("wrong-kv-scale", "kv_quant"),
}


@pytest.mark.process
def test_check_catches_each_wrong_variant_plugin(cli, plugin_path, tmp_path):
    out = tmp_path / "run"
    args = ["check", "-s", "variants", "--device", "cpu", "--out", str(out)]
    for file, (name, _) in WRONG.items():
        args += ["--plugin", plugin_path(file), "-b", name]
    proc = cli(*args)
    assert proc.returncode == 1, proc.stderr
    assert "mismatch" in proc.stdout and "check failed" in proc.stderr
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    for name, variant in WRONG.values():
        ran = [r for r in recs if r["backend"] == name and r["status"] != "unsupported"]
        botched = [r for r in ran if _uses(r, variant)]
        assert botched, f"{name} ran no case with the {variant} variant"
        # in float32 the bound is far below what each mistake changes: every such case fails
        assert all(r["status"] == "mismatch" for r in botched if r["dtype"] == "float32"), name
        assert any(r["status"] == "mismatch" for r in botched), name
        assert {r["status"] for r in ran if not _uses(r, variant)} <= {"ok"}, name


def _uses(rec: dict, variant: str) -> bool:
    """Whether a record's case uses a variant (from the case fields the record carries);
    "a+b|c" asks for a and for one of b or c."""
    from attnbench.case import Case

    used = Case.from_dict({k: rec[k] for k in Case.__dataclass_fields__}).variants
    return all(any(v in used for v in part.split("|")) for part in variant.split("+"))
