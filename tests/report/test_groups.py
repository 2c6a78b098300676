"""Report groups: variant fields never merge different cases into one row; short labels."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from attnbench.case import Case
from attnbench.report.groups import Run, make_groups
from attnbench.report.summary_csv import CSV_FIELDS, write_csv

BASE = Case(batch=3, heads_q=4, heads_kv=4, seq_q=512, seq_kv=512, head_dim=16, mask="causal")
VARIANTS = {  # case -> the label it must get in a group holding all of them
    BASE: "plain",
    replace(BASE, window_left=128, window_right=0): "win 128:0",
    replace(BASE, window_left=128): "win 128:inf",
    replace(BASE, kv_lens=(512, 300, 0)): "kv_lens 512,300,0",
    replace(BASE, q_lens=(512, 300, 1), kv_lens=(512, 300, 1)):
        "q_lens 512,300,1 kv_lens 512,300,1",
    replace(BASE, doc_lens=(100, 412)): "docs 100,412",
    replace(BASE, layout="packed"): "packed",
    replace(BASE, layout="paged", page_size=16): "paged 16",
    replace(BASE, alibi=True): "alibi",
    replace(BASE, bias="head"): "bias head",
    replace(BASE, softcap=30.0): "cap 30",
    replace(BASE, head_dim_v=8): "dv 8",
    replace(BASE, softcap=30.0, window_left=64, window_right=0): "win 64:0 cap 30",
}


def _record(case: Case, backend: str = "x") -> dict:
    rec = {"scenario": "v", "backend": backend, "case_id": case.id, "status": "ok",
           **case.to_dict()}
    for key in ("q_lens", "kv_lens", "doc_lens"):  # as read back from JSON: lists
        if rec[key] is not None:
            rec[key] = list(rec[key])
    return rec


def _group(cases) -> object:
    return make_groups([Run(Path("."), {"run_id": "r"}, [_record(c) for c in cases], "r")])[0]


def test_every_variant_gets_its_own_short_label():
    g = _group(VARIANTS)
    labels = {c: g.variant(_record(c)) for c in VARIANTS}
    assert labels == VARIANTS
    assert len(set(labels.values())) == len(VARIANTS)  # no two variants merge into one row
    assert len(g.variants()) == len(VARIANTS)


def test_plain_sorts_before_its_variants_and_windows_by_size():
    cases = [replace(BASE, window_left=w, window_right=0) for w in (256, 8, 64)] + [BASE]
    assert _group(cases).variants() == ["plain", "win 8:0", "win 64:0", "win 256:0"]


def test_long_length_lists_stay_distinct():
    a = replace(BASE, batch=16, kv_lens=tuple(range(16)))
    b = replace(BASE, batch=16, kv_lens=(*range(15), 99))
    g = _group([a, b])
    la, lb = g.variant(_record(a)), g.variant(_record(b))
    assert la != lb and la.startswith("kv_lens 0,1,2,…×16#") and len(la) < 30


def test_a_group_without_variants_labels_as_before():
    g = _group([BASE, replace(BASE, seq_q=256, seq_kv=256)])
    assert g.variant_fields == [] and g.variant(_record(BASE)) == ""


def test_csv_has_the_variant_fields(tmp_path):
    cases = [replace(BASE, kv_lens=(512, 300, 0)), replace(BASE, softcap=50.0, window_left=3)]
    path = tmp_path / "s.csv"
    write_csv(path, [_group(cases)], "x")
    rows = list(csv.DictReader(open(path)))
    assert set(CSV_FIELDS) == set(rows[0])
    assert rows[0]["kv_lens"] == "512 300 0" and rows[0]["variant"] == "kv_lens 512,300,0"
    assert (rows[1]["softcap"], rows[1]["window_left"]) == ("50.0", "3")


@pytest.mark.parametrize("field", ["window_left", "q_lens", "doc_lens", "layout", "bias"])
def test_csv_names_each_variant_field(field):
    assert field in CSV_FIELDS
