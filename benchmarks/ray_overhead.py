"""Ray executor costs: scheduling overhead per task and a CPU sweep's speed-up over `local`.

Usage: python benchmarks/ray_overhead.py [--nodes 2] [--cpus 1] [--tasks 50] [--budget 0.2]

Starts a local Ray test cluster (ray.cluster_utils.Cluster: --nodes nodes of --cpus CPUs on this
machine), then measures:
  1. cluster start;
  2. an empty Ray task's round trip, one after another (the fixed cost of any task), and the
     latency of one message of a streaming generator (yield on the node -> ray.get here);
  3. one tiny case (check only) through each executor: the fixed cost of one share;
  4. the same timed CPU sweep (numpy-naive and numba-cpu, 1 thread each) with --executor local
     and with the Ray executor: wall time, records per second and the speed-up.
Prints a Markdown table. On a machine with fewer cores than nodes x CPUs the "nodes" share
cores, so the speed-up measures scheduling, not extra hardware.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

SCENARIO = """name = "ray-bench"
[base]
batch = 1
heads = 4
head_dim = 32
[sweep]
seq_len = [128, 256, 384, 512, 640, 768]
mask = ["none", "causal"]
"""


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1e3:.1f} ms (min {min(xs) * 1e3:.1f})"


def start_cluster(nodes: int, cpus: int):  # noqa: ANN201 (ray types)
    import ray
    from ray.cluster_utils import Cluster

    t0 = time.perf_counter()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "include_dashboard": False})
    for _ in range(nodes - 1):
        c.add_node(num_cpus=cpus)
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    return c, time.perf_counter() - t0


def task_overhead(n: int) -> tuple[list[float], list[float]]:
    """Round trips of n empty tasks, and n streamed messages' yield-to-get latencies."""
    import ray

    @ray.remote(num_cpus=1)
    def empty() -> None:
        return None

    @ray.remote(num_cpus=1)
    def stream(k: int):  # noqa: ANN202
        for _ in range(k):
            time.sleep(0.01)
            yield time.time()

    ray.get(empty.remote())  # a Ray worker started once
    trips = []
    for _ in range(n):
        t0 = time.perf_counter()
        ray.get(empty.remote())
        trips.append(time.perf_counter() - t0)
    lat = [time.time() - ray.get(ref) for ref in stream.remote(n)]
    return trips, lat


def sweep(out: Path, toml: Path, executor: object | None, backends: list[str] | None = None,
          timed: bool = True) -> tuple[float, int]:
    from attnbench.measure.timing import TimerConfig
    from attnbench.plugin.registry import build_registry
    from attnbench.run.execute import Options
    from attnbench.run.plan import make_plan
    from attnbench.run.progress import Progress
    from attnbench.run.runner import RunConfig, run_plan
    from attnbench.scenario import resolve_scenario

    reg = build_registry(autoload=False)
    plan = make_plan(reg, [resolve_scenario(str(toml), reg.scenario_dirs())],
                     backends or ["numpy-naive", "numba-cpu"], ["cpu"], [])
    opts = Options(time_it=timed, memory=timed, timer=TimerConfig(budget_s=BUDGET[0]), threads=1)
    t0 = time.perf_counter()
    res = run_plan(plan, RunConfig(out_dir=out, opts=opts, executor=executor,
                                   progress=Progress(io.StringIO())))
    return time.perf_counter() - t0, len(res.records)


BUDGET = [0.2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--budget", type=float, default=0.2)
    args = ap.parse_args()
    BUDGET[0] = args.budget
    os.environ.setdefault("ATTNBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    from attnbench.run.executors.ray_driver import RayExecutor

    cluster, start_s = start_cluster(args.nodes, args.cpus)
    try:
        trips, lat = task_overhead(args.tasks)
        with tempfile.TemporaryDirectory() as tmp:
            toml = Path(tmp) / "bench.toml"
            toml.write_text(SCENARIO)
            one = Path(tmp) / "one.toml"
            one.write_text(SCENARIO.replace("128, 256, 384, 512, 640, 768", "64")
                           .replace('"none", "causal"', '"none"'))
            def once(i: int, executor: object | None) -> float:
                return sweep(Path(tmp) / f"one{i}-{bool(executor)}", one, executor,
                             ["numpy-naive"], timed=False)[0]

            one_local = [once(i, None) for i in range(3)]
            one_ray = [once(i, RayExecutor()) for i in range(3)]
            local_s, n = sweep(Path(tmp) / "local", toml, None)
            ray_s, n_ray = sweep(Path(tmp) / "ray", toml, RayExecutor())
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    load = os.getloadavg()
    print(f"cluster: {args.nodes} nodes x {args.cpus} CPU on {os.cpu_count()} cores; "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| cluster start ({args.nodes} nodes) | {start_s:.1f} s |")
    print(f"| empty Ray task, round trip ({args.tasks}) | {ms(trips)} |")
    print(f"| streamed message, yield to ray.get ({args.tasks}) | {ms(lat)} |")
    print(f"| 1 tiny case, check only, local executor: worker start + case (3) | "
          f"{ms(one_local)} |")
    print(f"| the same, ray executor: + Ray task, registry and environment on the node (3) | "
          f"{ms(one_ray)} |")
    print(f"| sweep, local executor ({n} records, 2 backends) | {local_s:.1f} s |")
    print(f"| sweep, ray executor ({n_ray} records) | {ray_s:.1f} s |")
    print(f"| speed-up (local / ray) | {local_s / ray_s:.2f} x |")


if __name__ == "__main__":
    main()
