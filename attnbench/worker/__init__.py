"""Isolated execution: a worker process runs cases for the parent, which alone writes records.

Why `python -m attnbench.worker.child` over a pipe, not multiprocessing: the worker is a fresh
interpreter (no fork of a parent that has loaded torch, OpenMP or CUDA, which is unsafe), the
protocol is JSON lines (the design forbids pickle), and the parent sees exactly how a worker died
(`Popen.returncode`: -11 is SIGSEGV) and can SIGKILL it on a timeout without any manager process
in between. pyperf does the same.

Protocol, one JSON object a line. Parent -> worker: first a hello
`{"plugins": [...], "autoload": bool, "options": {...}, "token": t}` (t: random, chosen by the
parent for this worker), then tasks `{"task": n, "scenario": s, "backend": name, "case": {...}}`
or `{"task": n, "roof": device, "dtypes": [...]}`, n counting up from 1. Worker -> parent:
`{"ready": true, "task": null, "token": t, "pid": ..., "process": {...}}`, then one reply a task:
`{"task": n, "token": t, "record": {...}, "worker_s": seconds}` (or `"missing": why`). Every text
in a reply is capped (record.cap_text) before it is sent.

The parent takes a reply only when it is JSON, carries the token and answers the task just sent,
and its record is a valid record of that (case, backend); a line over 64 MiB, or anything else,
makes the task `crashed` and the worker is killed, so a line written by a plugin never becomes a
record nor shifts later replies. A worker found dead between tasks makes the next task `crashed`.
Worker start (plugin imports) is under the task timeout when that is below 120 s.

In the worker, the protocol lives on private fds (non-inheritable, os.dup): fd 0 reads /dev/null
and fd 1 goes to stderr, so neither a backend's print nor a program it starts can touch the
protocol. stderr is a pipe the parent copies into `logs/<backend>.log`, capped at 1 MB and
rotated once to `.log.1`. The worker leads its own session; after every worker ends (stop,
crash, timeout, kill) the parent SIGKILLs the whole process group, so what a backend started
dies with it.
"""
