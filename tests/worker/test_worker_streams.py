"""The parent's view of a worker's streams: reply lines however chunked, the cap, the log cap."""

from __future__ import annotations

import pytest

from attnbench.worker.child import capped
from attnbench.worker.streams import LineReader, LineTooLong, LogSink


def test_lines_come_out_whole_however_the_bytes_are_chunked():
    data = b'{"a": 1}\n{"b": 2}\n\n{"c": "' + b"x" * 5000 + b'"}\n{"partial'
    for size in (1, 3, 7, 64, 4096, len(data)):
        reader = LineReader()
        for i in range(0, len(data), size):
            reader.feed(data[i:i + size])
        assert list(reader.lines) == data.split(b"\n")[:-1]


def test_a_line_over_the_cap_is_refused_before_it_ends():
    reader = LineReader(limit=1000)
    reader.feed(b"y" * 600)
    with pytest.raises(LineTooLong):
        reader.feed(b"y" * 600)
    ok = LineReader(limit=1000)
    ok.feed(b"z" * 1000 + b"\n" + b"z" * 1000 + b"\n")  # exactly at the cap: fine
    assert len(ok.lines) == 2


def test_the_log_is_capped_and_rotated_once(tmp_path):
    log = LogSink(tmp_path / "w.log", max_bytes=100, tail_bytes=30)
    log.write(b"a" * 150)
    log.mark()
    log.write(b"b" * 120 + b"END")
    log.close()
    assert (tmp_path / "w.log").stat().st_size <= 100
    assert (tmp_path / "w.log.1").read_bytes() == b"a" * 50 + b"b" * 50  # the newest 2x cap
    assert (tmp_path / "w.log").read_bytes() == b"b" * 70 + b"END"
    assert log.tail() == "b" * 27 + "END"  # since mark(), its last 30 bytes


def test_every_text_a_worker_sends_is_capped():
    big = "x" * 1_000_000
    reply = {"record": {"error": big, "reasons": [big], "agreement": {"problems": [big],
                        "outputs": [{"error": big, "max_abs_err": 1.0}]}}, "missing": big}
    out = capped(reply)
    assert len(str(out)) < 500_000
    assert out["record"]["agreement"]["outputs"][0]["max_abs_err"] == 1.0
    assert "characters cut" in out["record"]["agreement"]["problems"][0]


def test_a_long_line_in_small_chunks_is_read_in_linear_time():
    import time

    chunk, n = b"q" * 4096, 8192  # a 32 MiB line: rescanning the buffer per chunk takes minutes
    reader = LineReader()
    t0 = time.perf_counter()
    for _ in range(n):
        reader.feed(chunk)
    reader.feed(b"\n")
    assert time.perf_counter() - t0 < 5
    assert len(reader.lines.popleft()) == len(chunk) * n
