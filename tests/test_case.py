"""Case ids and scenario files: validation (one-line errors naming file and key) and expansion."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from attnbench.case import Case
from attnbench.errors import ScenarioError, UsageError
from attnbench.scenario import load_scenario, resolve_scenario, scenario_names

GOOD_BASE = 'name = "t"\n[base]\nbatch = 1\nheads = 2\nhead_dim = 8\nseq_len = 4\n'

# (label, file text, the key the message must name, words the reason must contain)
BAD_FILES = [
    ("unknown top key", "colour = 1\n" + GOOD_BASE, "colour", "unknown key"),
    ("unknown case key", GOOD_BASE.replace("batch", "batches"), "base.batches", "unknown key"),
    ("wrong type", GOOD_BASE.replace("batch = 1", 'batch = "one"'), "base.batch",
     "expected an integer"),
    ("bool is not an int", GOOD_BASE.replace("batch = 1", "batch = true"), "base.batch",
     "expected an integer"),
    ("negative size", GOOD_BASE.replace("head_dim = 8", "head_dim = -8"), "base.head_dim",
     "must be positive"),
    ("zero size", GOOD_BASE + "[sweep]\nbatch = [1, 0]\n", "sweep.batch", "must be positive"),
    ("heads not a multiple", GOOD_BASE.replace("heads = 2", "heads_q = 6\nheads_kv = 4"),
     "heads_q", "not a multiple"),
    ("unknown dtype", GOOD_BASE + 'dtype = "float8"\n', "base.dtype", "unknown dtype"),
    ("unknown mask", GOOD_BASE + 'mask = "sliding"\n', "base.mask", "unknown mask"),
    ("bad toml", GOOD_BASE + "[sweep\n", "", "not valid TOML"),
    ("list in base", GOOD_BASE.replace("seq_len = 4", "seq_len = [4, 8]"), "base.seq_len",
     "must not be a list"),
    ("scalar in sweep", GOOD_BASE + "[sweep]\nseq_len = 4\n", "sweep.seq_len", "must be a list"),
    ("empty sweep list", GOOD_BASE + "[sweep]\nseq_len = []\n", "sweep.seq_len", "empty list"),
    ("unknown device table", GOOD_BASE + "[device.tpu]\nbatch = 2\n", "device.tpu",
     "unknown device"),
    ("unknown key in device table", GOOD_BASE + "[device.cuda]\nbatchsize = 2\n",
     "device.cuda.batchsize", "unknown key"),
    ("bad variant value", GOOD_BASE + '[[variant]]\ndtype = "int8"\n', "variant[0].dtype",
     "unknown dtype"),
    ("missing size", GOOD_BASE.replace("head_dim = 8\n", ""), "head_dim", "missing"),
    ("negative scale", GOOD_BASE + "scale = -1.0\n", "base.scale", "positive finite number"),
    ("nan scale", GOOD_BASE + "scale = nan\n", "base.scale", "positive finite number"),
    ("inf scale", GOOD_BASE + "scale = inf\n", "base.scale", "positive finite number"),
    ("inf scale in a sweep", GOOD_BASE + "[sweep]\nscale = [0.5, +inf]\n", "sweep.scale",
     "got inf"),
]


@pytest.mark.parametrize(
    "text,key,words", [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_bad_file_one_line_error(tmp_path: Path, text: str, key: str, words: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and words in msg
    assert f"'{key}'" in msg or not key


def test_missing_file(tmp_path: Path):
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.toml")


def test_unknown_scenario_name_lists_the_known_ones():
    with pytest.raises(UsageError) as info:
        resolve_scenario("no-such-scenario")
    assert "no-such-scenario" in str(info.value) and "smoke" in str(info.value)


@pytest.mark.process  # variants' mask functions are checked in a child process
def test_every_shipped_scenario_loads():
    names = scenario_names()
    assert {"smoke", "self", "causal", "cross", "multihead", "gqa", "default"} <= set(names)
    for name in names:
        scenario = resolve_scenario(name)
        assert scenario.cases("cpu") and scenario.cases("cuda")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_shorthand_keys_and_sweep(tmp_path: Path):
    s = load_scenario(write(tmp_path, GOOD_BASE.replace("seq_len = 4\n", "")
                            + "[sweep]\nseq_len = [4, 8]\ndtype = ['float32', 'bfloat16']\n"))
    got = [(c.heads_q, c.heads_kv, c.seq_q, c.seq_kv, c.dtype) for c in s.cases("cpu")]
    assert got == [(2, 2, 4, 4, "float32"), (2, 2, 4, 4, "bfloat16"),
                   (2, 2, 8, 8, "float32"), (2, 2, 8, 8, "bfloat16")]
    assert s.name == "t"


def test_device_overrides(tmp_path: Path):
    text = GOOD_BASE + "[sweep]\nbatch = [1, 2]\n"
    text += "[device.cuda]\ndtype = 'bfloat16'\nseq_len = [16, 32]\n"
    s = load_scenario(write(tmp_path, text))
    cpu, cuda = s.cases("cpu"), s.cases("cuda")
    assert [(c.batch, c.seq_q, c.dtype, c.device) for c in cpu] == [
        (1, 4, "float32", "cpu"), (2, 4, "float32", "cpu")]
    assert [(c.batch, c.seq_kv, c.dtype, c.device) for c in cuda] == [
        (1, 16, "bfloat16", "cuda"), (1, 32, "bfloat16", "cuda"),
        (2, 16, "bfloat16", "cuda"), (2, 32, "bfloat16", "cuda")]


def test_variants(tmp_path: Path):
    text = GOOD_BASE + (
        "[[variant]]\nname = 'plain'\n"
        "[[variant]]\nname = 'cross'\nseq_q = 1\nmask = ['none', 'causal']\n"
        "[[variant]]\nname = 'grouped'\nheads_q = 8\nheads_kv = [2, 1]\n"
        "[[variant]]\nname = 'scaled'\nscale = 0.5\n[variant.device.cuda]\nhead_dim = 64\n"
    )
    s = load_scenario(write(tmp_path, text))
    ids = [c.id for c in s.cases("cpu")]
    assert ids == [
        "b1-h2:2-q4-k4-d8-float32-none-fwd",
        "b1-h2:2-q1-k4-d8-float32-none-fwd",  # seq_q overrides half of the seq_len shorthand
        "b1-h2:2-q1-k4-d8-float32-causal-fwd",
        "b1-h8:2-q4-k4-d8-float32-none-fwd",
        "b1-h8:1-q4-k4-d8-float32-none-fwd",
        "b1-h2:2-q4-k4-d8-s0.5-float32-none-fwd",
    ]
    assert s.cases("cuda")[-1].head_dim == 64 and s.cases("cuda")[0].head_dim == 8


def test_heads_kv_over_heads_shorthand_keeps_heads_q(tmp_path: Path):
    s = load_scenario(write(tmp_path, GOOD_BASE.replace("heads = 2", "heads = 8")
                            + "[[variant]]\nheads_kv = 2\n"))
    assert [(c.heads_q, c.heads_kv) for c in s.cases("cpu")] == [(8, 2)]


def test_duplicate_cases_are_expanded_once(tmp_path: Path):
    s = load_scenario(write(tmp_path, GOOD_BASE + "[[variant]]\n[[variant]]\nbatch = 1\n"))
    assert len(s.cases("cpu")) == 1


def test_case_id_scale_and_round_trip():
    c = Case(2, 8, 2, 1024, 512, 64, dtype="bfloat16", mask="causal")
    assert c.id == "b2-h8:2-q1024-k512-d64-bfloat16-causal-fwd"
    assert c.softmax_scale == 1 / math.sqrt(64)
    assert Case.from_dict({**c.to_dict(), "extra": 1}) == c
    assert hash(c) == hash(Case.from_dict(c.to_dict()))
    assert Case(1, 1, 1, 2, 2, 4, scale=0.3).softmax_scale == 0.3


def test_backward_scenario_asks_for_every_mode():
    cases = resolve_scenario("backward").cases("cpu")
    assert {c.mode for c in cases} == {"fwd", "bwd", "fwd_bwd"}
    assert len(cases) == 9 and all(c.mask == "causal" for c in cases)


def test_a_folder_is_not_a_scenario_file(tmp_path: Path):
    with pytest.raises(ScenarioError, match="cannot read the scenario file"):
        load_scenario(tmp_path)


def test_a_sweep_of_more_cases_than_a_run_takes_is_refused_before_it_is_made(tmp_path: Path):
    """100 x 100 x 100 values: a million cases (their plan alone took 3.7 GB) is one line."""
    values = ", ".join(map(str, range(1, 101)))
    text = (f'name = "big"\n[base]\nhead_dim = 8\n[sweep]\nbatch = [{values}]\n'
            f"heads = [{values}]\nseq_len = [{values}]\n")
    with pytest.raises(ScenarioError, match=r"makes 1,000,000 cases on cpu, more than the "
                                            r"100,000 one run takes") as info:
        load_scenario(write(tmp_path, text))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("order", [("seq_len = 4", "seq_q = 8", "seq_kv = 16"),
                                   ("seq_q = 8", "seq_kv = 16", "seq_len = 4")])
def test_in_one_table_the_halves_win_over_the_shorthand_in_any_order(tmp_path: Path, order):
    """seq_len written after seq_q and seq_kv was dropping them (the order decided)."""
    text = 'name = "t"\n[base]\nbatch = 1\nheads = 2\nhead_dim = 8\n' + "\n".join(order) + "\n"
    (case,) = load_scenario(write(tmp_path, text)).cases("cpu")
    assert (case.seq_q, case.seq_kv) == (8, 16)
