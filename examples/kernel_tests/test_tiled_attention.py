"""The sample kernel's own test suite, written with attnbench's testing API: every smoke case
it can run, judged against the float64 oracle within attnbench's bound."""

from __future__ import annotations

import pytest
from tiled_attention import tiled_attention

from attnbench import Capabilities
from attnbench.testing import assert_matches_oracle, cases, unsupported

WHAT_IT_RUNS = Capabilities(devices=("cpu",), dtypes=("float64", "float32"))


def my_attention(inputs):
    return tiled_attention(inputs.q, inputs.k, inputs.v, inputs.scale,
                           causal=inputs.case.mask == "causal")


@pytest.mark.parametrize("case", cases("smoke", dtype="float32"))
def test_matches_the_oracle(case):
    reasons = unsupported(case, WHAT_IT_RUNS, "tiled_attention")
    if reasons:
        pytest.skip("; ".join(reasons))
    assert_matches_oracle(my_attention, case)


def test_a_wrong_scale_is_caught_and_located():
    (case,) = [p.values[0] for p in cases("smoke", dtype="float32")][:1]

    def wrong(inputs):
        return tiled_attention(inputs.q, inputs.k, inputs.v, inputs.scale * 1.01)

    with pytest.raises(AssertionError, match="where: "):
        assert_matches_oracle(wrong, case)
