"""Isolated execution: a worker process runs cases for the parent, which alone writes records.

Why `python -m attnbench.worker.child` over a pipe, not multiprocessing: the worker is a fresh
interpreter (no fork of a parent that has loaded torch, OpenMP or CUDA, which is unsafe), the
protocol is JSON lines (the design forbids pickle), and the parent sees exactly how a worker died
(`Popen.returncode`: -11 is SIGSEGV) and can SIGKILL it on a timeout without any manager process
in between. pyperf does the same.

Protocol, one JSON object a line. Parent -> worker: first a hello
`{"plugins": [...], "autoload": bool, "options": {...}}`, then tasks
`{"task": n, "scenario": s, "backend": name, "case": {...}}` or `{"roof": device, "dtypes": [...]}`.
Worker -> parent: `{"ready": true, "pid": ..., "process": {...}}`, then one reply a task:
`{"task": n, "record": {...}, "worker_s": seconds}`. Anything a backend prints goes to the
worker's stderr (a log file the parent chose), never into the protocol.
"""
