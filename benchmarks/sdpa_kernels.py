"""Which kernel torch-sdpa ran: its report (torch's own dispatch choice) against the profiler.

Usage: python benchmarks/sdpa_kernels.py [-s smoke] [--device cuda] [--max-cases 40]

For each case of the scenario on the device and each torch-sdpa backend that supports it, the
backend is prepared as a run prepares it (gradients on for bwd/fwd_bwd), its reported `kernel`
read, and one call run under torch's profiler, whose aten ops name the kernel that really ran.
Prints a Markdown table; exits 1 when a report and the profiler disagree.
"""

from __future__ import annotations

import argparse
import sys

from attnbench.backends.torch_sdpa import profiled_kernels, sdpa_backends

from attnbench.case import Case
from attnbench.scenario import resolve_scenario
from attnbench.verify.inputs import make_inputs, reference_arrays


def observed(backend, case: Case) -> tuple[str, str]:
    """(reported kernel, profiled kernels) of one case; an error's first line as both."""
    inputs = make_inputs(case, reference_arrays(case, 0), "torch")
    grad = case.mode != "fwd"
    for t in (inputs.q, inputs.k, inputs.v) if grad else ():
        t.requires_grad_(True)
    try:
        call = backend.prepare(inputs)
        ran = profiled_kernels(lambda: call().sum().backward() if grad else call())
    except Exception as exc:  # a refusal (Unsupported) or an error: shown, not judged
        text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:80]}"
        return text, text
    return str(inputs.reported.get("kernel")), ",".join(dict.fromkeys(ran)) or "none"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-s", "--scenario", default="smoke")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-cases", type=int, default=40)
    args = ap.parse_args()
    cases = resolve_scenario(args.scenario).cases(args.device)[:args.max_cases]
    print("| case | backend | reported | profiled | agree |\n| --- | --- | --- | --- | --- |")
    bad = 0
    for case in cases:
        for backend in sdpa_backends():
            if backend.unsupported(case):
                continue
            said, ran = observed(backend, case)
            agree = said == ran  # an error is shown as both
            bad += not agree
            print(f"| {case.id} | {backend.name} | {said} | {ran} | {'yes' if agree else 'NO'} |")
    print(f"{bad} disagreement(s)", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
