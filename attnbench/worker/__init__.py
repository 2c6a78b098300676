"""Isolated execution: worker processes run plugin code for the parent, which alone judges and
writes records.

Why `python -m attnbench.worker.child` over a pipe, not multiprocessing: the worker is a fresh
interpreter (no fork of a parent that has loaded torch, OpenMP or CUDA, which is unsafe), the
protocol is JSON lines (the design forbids pickle), and the parent sees exactly how a worker died
(`Popen.returncode`: -11 is SIGSEGV) and can SIGKILL it on a timeout without any manager process
in between. pyperf does the same.

Roles (the hello's `role`): `backend` imports only the plugin that defines its backend (the
hello's `plugin`, an origin from the catalog) and runs cases; `roof` imports no plugin and
measures matmul roofs; `catalog` imports every plugin and describes them (plugin/catalog.py);
`observer` imports every plugin and calls their record hooks (run/observers.py). The parent
imports no plugin: no plugin code runs where verdicts are made.

Protocol, one JSON object a line. Parent -> worker: first a hello `{"role": r, "plugin":
origin | "plugins": [...], "autoload": bool, "options": {...}, "arrays_dir": d, "run_limit":
s, "token": t}` (t: random, chosen by the parent for this worker), then tasks `{"task": n,
"scenario": s, "backend": name, "case": {...}, "prefix": p}` (or `{"roof": device, ...}`,
`{"catalog": true}`, `{"observe": record}`), n counting up from 1. Worker -> parent:
`{"ready": true, "task": null, "token": t, "pid": ..., "process": {...}}`, then one reply a
task: `{"task": n, "token": t, "result": {...}, "worker_s": seconds}` (or `"missing": why`).
A result holds the worker's measurements and, under `arrays`, the files (in arrays_dir, named
from p) of the outputs and gradients it wrote for the parent to verify (worker/arrays.py): the
first call's, and those of two timed calls. Every text in a reply is capped (record.cap_text).

The parent takes a reply only when it is JSON, carries the token and answers the task just sent;
a line over 64 MiB, or anything else, makes the task `crashed` and the worker is killed, so a
line written by a plugin never becomes a record nor shifts later replies. Every measurement in
a result is checked for type and range before it enters a record (run/outcome.py). A worker
found dead between tasks makes the next task `crashed`. Worker start (plugin imports) is under
the task timeout when that is below 120 s. Between its tasks a worker's process group is
stopped (SIGSTOP), so nothing its plugin left running takes CPU from another backend's case.

In the worker, the protocol lives on private fds (non-inheritable, os.dup): fd 0 reads /dev/null
and fd 1 goes to stderr, so neither a backend's print nor a program it starts can touch the
protocol. stderr is a pipe the parent copies into `logs/<backend>.log`, capped at 1 MB and
rotated once to `.log.1`. The worker leads its own session; after every worker ends (stop,
crash, timeout, kill) the parent SIGKILLs the whole process group, so what a backend started
dies with it.
"""
