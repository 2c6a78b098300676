"""numpy-flash (backends/numpy_flash.py) against the float64 oracle: plain cases and every
declared variant, with the shipped tiles and with tiny tiles (every tile-boundary path)."""

from __future__ import annotations

import pytest
from attnbench.backends import numpy_flash
from cpu_cases import PLAIN, VARIANT, check, with_dtype

from attnbench.case import Case

BIAS = [  # and the other variants the shared VARIANT cases leave out
        Case(2, 4, 2, 30, 45, 16, mask="causal", bias="batch_head"),
        Case(1, 2, 1, 40, 70, 16, bias="shared", window_left=9),
        # sinks: the first key of the online softmax (rows with no key stay 0), with ALiBi
        Case(2, 4, 2, 30, 45, 16, mask="causal", sinks=True, kv_lens=(45, 3), alibi=True),
        Case(1, 2, 1, 40, 70, 16, sinks=True, window_left=9)]
LSE = [Case(2, 4, 2, 37, 53, 16, mask="causal", window_left=5, kv_lens=(53, 0), lse=True),
       Case(1, 2, 2, 300, 2100, 16, alibi=True, softcap=5.0, lse=True),  # several key tiles
       # with sinks: a row with no key (all of batch element 1) has lse = σ_h
       Case(2, 4, 2, 20, 30, 16, mask="causal", kv_lens=(30, 0), sinks=True, lse=True)]
CASES = (with_dtype(PLAIN + VARIANT + BIAS + LSE, "float32")
         + with_dtype(PLAIN[:3] + VARIANT + LSE, "float64"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_agrees_with_oracle(case: Case):
    check(numpy_flash.NumpyFlash(), case)


@pytest.mark.parametrize("case", with_dtype(PLAIN + VARIANT + BIAS + LSE, "float32"),
                         ids=lambda c: c.id)
def test_agrees_with_tiny_tiles(case: Case, monkeypatch):
    monkeypatch.setattr(numpy_flash, "TILE_Q", 8)
    monkeypatch.setattr(numpy_flash, "TILE_K", 16)
    monkeypatch.setattr(numpy_flash, "TILE_K_MASKED", 16)
    monkeypatch.setattr(numpy_flash, "SMALL", 0)  # the thread pool even on tiny cases
    check(numpy_flash.NumpyFlash(), case)


def test_declares_every_variant_it_runs():
    used = {v for c in VARIANT + BIAS + LSE for v in c.variants}
    assert used == set(numpy_flash.NumpyFlash.capabilities.variants)
