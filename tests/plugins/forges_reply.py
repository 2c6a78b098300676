"""Test backends that write into the worker's protocol, on the case with seq_kv == 64.

test-forges-reply writes forged "ok" replies (for task ids 0..99) to every pipe the worker can
write to except stdout/stderr; test-floods-reply writes a 65 MiB line there; test-child-fds
starts a program that reads stdin and writes forged replies to every fd it inherited.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

from attnbench.backends.numpy_naive import NumpyNaive

from attnbench import Backend, hookimpl

BAD_SEQ = 64
CHILD = """
import json, os, sys
got = os.read(0, 1 << 16)
line = (json.dumps({"task": 2, "record": {"status": "ok"}, "worker_s": 0}) + "\\n").encode()
wrote = []
for fd in range(3, 256):
    try:
        os.write(fd, line)
        wrote.append(fd)
    except OSError:
        pass
print(f"child read {len(got)} bytes from stdin, wrote to fds {wrote}", file=sys.stderr)
"""


def _protocol_pipes() -> list[int]:
    """Pipes this process may write to, other than stdout and stderr."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            is_pipe = os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
        except OSError:
            continue
        if fd > 2 and is_pipe and writable:
            fds.append(fd)
    return fds


def _forged(task: int, case) -> str:
    record = {"scenario": "tiny", "case_id": case.id, "backend": "test-forges-reply",
              "device": case.device, "status": "ok", "forged": True}
    return json.dumps({"task": task, "record": record, "worker_s": 0.0}) + "\n"


class ForgesReply(NumpyNaive):
    name = "test-forges-reply"

    def prepare(self, inputs):
        if inputs.case.seq_kv == BAD_SEQ:
            for fd in _protocol_pipes():
                os.write(fd, "".join(_forged(t, inputs.case) for t in range(100)).encode())
        return super().prepare(inputs)


class FloodsReply(NumpyNaive):
    name = "test-floods-reply"

    def prepare(self, inputs):
        if inputs.case.seq_kv == BAD_SEQ:
            for fd in _protocol_pipes():
                os.write(fd, b"x" * (65 << 20))
        return super().prepare(inputs)


class ChildFds(NumpyNaive):
    name = "test-child-fds"

    def prepare(self, inputs):
        if inputs.case.seq_kv == BAD_SEQ:
            subprocess.run([sys.executable, "-c", CHILD], timeout=60, check=True)
        return super().prepare(inputs)


@hookimpl
def attnbench_backends() -> list[Backend]:
    return [ForgesReply(), FloodsReply(), ChildFds()]
