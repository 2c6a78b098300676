"""What the parent reads from a worker: reply lines (linear time, size-capped) and a capped log."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

MAX_LINE_BYTES = 64 << 20  # a reply line longer than this is a broken worker, not a record
LOG_MAX_BYTES = 1 << 20  # a worker log is rotated to `.log.1` beyond this (2 MB kept at most)
LOG_TAIL_BYTES = 2000  # what a crashed/timeout record keeps of the log


class LineTooLong(Exception):
    """A reply line grew past the limit before its newline came."""


class LineReader:
    """Splits a byte stream into lines; each byte is looked at once, whatever the chunking."""

    def __init__(self, limit: int = MAX_LINE_BYTES):
        self.limit = limit
        self.lines: deque[bytes] = deque()
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        """Add bytes; complete lines go to `lines` (without their newline)."""
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._add(chunk[start:end])
            self.lines.append(b"".join(self._parts))
            self._parts, self._size = [], 0
            start = end + 1
        if start < len(chunk):
            self._add(chunk[start:])

    def _add(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self.limit:
            raise LineTooLong(f"a reply line over {self.limit >> 20} MiB")
        self._parts.append(piece)


class LogSink:
    """A worker's log file: capped at max_bytes, then rotated once to `.1`; keeps a short tail."""

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES,
                 tail_bytes: int = LOG_TAIL_BYTES):
        self.path, self.max_bytes, self.tail_bytes = path, max_bytes, tail_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "ab")  # noqa: SIM115 (held for the worker's life)
        self._size = self._fh.tell()
        self._tail = bytearray()

    def write(self, data: bytes) -> None:
        """Append what the worker wrote to its stderr; rotate when the file is full."""
        self._tail += data[-self.tail_bytes:]
        del self._tail[:-self.tail_bytes]
        view = memoryview(data)
        while view:
            if self._size >= self.max_bytes:
                self._rotate()
            room = self.max_bytes - self._size
            self._fh.write(view[:room])
            self._size += min(room, len(view))
            view = view[room:]
        self._fh.flush()

    def _rotate(self) -> None:
        self._fh.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._fh = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def mark(self) -> None:
        """A new task starts: the tail from now on is what its record gets."""
        self._tail.clear()

    def tail(self) -> str:
        return self._tail.decode(errors="replace").strip()

    def close(self) -> None:
        self._fh.close()
