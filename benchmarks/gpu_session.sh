#!/usr/bin/env bash
# The GPU session as one command (at most --total seconds, default 540 = 9 minutes): environment
# facts, set-up as the README says, `attnbench list`, the smoke check on every CUDA backend, the
# forward/backward check, the CUDA timer against triton's do_bench, SDPA's reported kernel against
# the profiler, a timed GPU sweep and its report, flex-attention, the variants check, and
# `make bench` with the time that is left. Each step runs under a time cap (`timeout`), is
# skipped when too little of the total is left, and its results are packed under $OUT right
# after it: summary.log plus one .tar.gz per step group (8 files at most, as a device call allows).
#
#   On a GPU box:    OUT=/where/to/put/results benchmarks/gpu_session.sh
#   Rehearsal here:  benchmarks/gpu_session.sh --device cpu --tiny    (a CPU, 1-3 minutes)
#
# Options: --device cuda|cpu (default cuda); --tiny (CPU backends and small caps: the rehearsal);
# --total SECONDS; --only STEP,STEP (run just these of: smoke backward crosscheck kernels sweep
# report flex variants bench twice; facts, setup and list always run, so a session can be two
# calls); --out DIR (default $OUT, else WORK/out); --work DIR (logs and runs, default
# results/gpu-session-<UTC time>; a call given the --work of an earlier call, on a machine that
# kept it, resumes each run that call stopped at its cap instead of starting it again). Exit 0 when every step that ran succeeded (a step stopped at
# its cap counts as run: what it wrote is packed), 1 otherwise, 2 on a bad option.
set -uo pipefail  # not -e: a failing step is recorded and the session goes on

DEVICE=cuda TINY=0 TOTAL=540 WORK="" DEST="${OUT:-}" ONLY=""
while (($#)); do
  case "$1" in
    --device) DEVICE="${2:-}"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --total) TOTAL="${2:-}"; shift 2 ;;
    --out) DEST="${2:-}"; shift 2 ;;
    --work) WORK="${2:-}"; shift 2 ;;
    --only) ONLY=",${2:-},"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_session.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$DEVICE" == cuda || "$DEVICE" == cpu ]] \
  || { echo "gpu_session.sh: --device must be cuda or cpu, got '$DEVICE'" >&2; exit 2; }
[[ "$TOTAL" =~ ^[0-9]+$ ]] && ((TOTAL >= 30)) \
  || { echo "gpu_session.sh: --total must be a whole number of seconds >= 30" >&2; exit 2; }
((TINY == 0)) || [[ "$DEVICE" == cpu ]] \
  || { echo "gpu_session.sh: --tiny is the CPU rehearsal: use it with --device cpu" >&2; exit 2; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
START=$(date +%s)
DEADLINE=$((START + TOTAL))
RESERVE=15  # seconds kept back at the end for the last packing
WORK="${WORK:-results/gpu-session-$(date -u +%Y%m%d-%H%M%S)}"
DEST="${DEST:-$WORK/out}"
mkdir -p "$WORK" "$DEST" || exit 2
WORK="$(cd "$WORK" && pwd)" DEST="$(cd "$DEST" && pwd)"
SUMMARY="$WORK/summary.log"
BIN="${VENV:-.venv}/bin"
FAILED=0

# Backends per step, in the order they run (a step stopped at its cap keeps the first ones).
# CUDA: every CUDA backend (xformers and the flash-attn ones say why when absent, in a second);
# flex-attention compiles per shape (10-30 s each) and so has a step of its own.
CUDA_FUSED=(torch-sdpa torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient flash-attn-4
            xformers flash-attn)
CUDA_TORCH=(torch-naive torch-sdpa torch-sdpa-math torch-sdpa-flash torch-sdpa-efficient
            torch-sdpa-cudnn)
if ((TINY)); then
  SMOKE=(torch-sdpa) GRADS=(torch-sdpa) SWEEP=(torch-sdpa) VARIANTS=(torch-sdpa) TWICE=(torch-sdpa)
  BUDGET=(--budget 0.05) CROSS=(--rehearse --repeats 1 --budget 0.1)
  # caps short enough that every step starts (a typo fails in seconds) and the whole
  # rehearsal stays near a minute and a half; flex compiles and is stopped at its cap on a CPU
  #     facts setup list smoke grads cross kernels sweep report flex variants bench twice
  CAPS=(10    30    15   25    20    20    15      25    20     10   20       20    45)
  BENCH=(BENCH_ARGS="-b torch-sdpa -b numpy-naive --budget 0.05")
elif [[ "$DEVICE" == cpu ]]; then
  SMOKE=() GRADS=() SWEEP=() VARIANTS=() BUDGET=() CROSS=(--rehearse) BENCH=() TWICE=(torch-sdpa)
  CAPS=(30    300   30   300   300   120   120     600   60     300  300      600   600)
else
  SMOKE=("${CUDA_FUSED[@]}" torch-naive torch-sdpa-math) GRADS=("${CUDA_TORCH[@]}")
  SWEEP=("${CUDA_FUSED[@]}" torch-naive torch-sdpa-math) VARIANTS=("${CUDA_TORCH[@]}")
  BUDGET=() CROSS=(--repeats 5) BENCH=() TWICE=(torch-sdpa-cudnn torch-sdpa-flash)
  CAPS=(30    120   30   90    90    60    40      200   40     60   100      420   150)
fi

say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$SUMMARY"; }
flags() { local b; for b in "$@"; do printf -- '-b\n%s\n' "$b"; done; }  # -b per backend

pack() {  # pack GROUP: $DEST/GROUP.tar.gz of $WORK/GROUP (SVG plots left out), and the summary
  local tarball="$DEST/$1.tar.gz"
  tar -czf "$tarball" -C "$WORK" --exclude='*.svg' "$1" 2>>"$SUMMARY"
  if (($(stat -c %s "$tarball") > 15 * 1024 * 1024)); then  # a file that comes back: <= 16 MiB
    tar -czf "$tarball" -C "$WORK" --exclude='*.svg' --exclude='*.png' --exclude='*.html' "$1"
    say "  $1.tar.gz was over 15 MiB: packed again without plots and HTML"
  fi
  cp "$SUMMARY" "$DEST/summary.log"
}

survivors() {  # attnbench workers started from this folder that outlived their run (none, 2 s on)
  local pid
  sleep 2
  for pid in $(pgrep -f 'attnbench[.]worker[.]child' 2>/dev/null); do
    [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$ROOT" ]] && printf '%s ' "$pid"
  done
}

step() {  # step NAME GROUP CAP MIN COMMAND...: run under min(CAP, time left), or skip
  local name="$1" group="$2" cap="$3" min="$4" left rc t0
  shift 4
  if [[ -n "$ONLY" && "$ONLY" != *",${name%%-*},"* && "$group" != env ]]; then
    say "step $name: not asked for (--only${ONLY//,/ })"
    return
  fi
  left=$((DEADLINE - $(date +%s) - RESERVE))
  if ((left < min)); then
    say "step $name: SKIPPED, ${left}s of the total left (it needs ${min}s)"
    return
  fi
  ((cap > left)) && cap=$left
  mkdir -p "$WORK/$group"
  t0=$(date +%s)
  # SIGTERM at the cap (attnbench then stops its workers and keeps its records), SIGKILL 30 s on
  timeout -k 30 "$cap" "$@" >"$WORK/$group/$name.log" 2>&1
  rc=$?
  local took=$(($(date +%s) - t0)) verdict
  case $rc in
    0) verdict="ok" ;;
    124|137) verdict="STOPPED at its cap of ${cap}s (what it wrote is packed)"
      left=$(survivors)
      [[ -z "$left" ]] || say "  attnbench workers of this folder alive after the stop: $left" ;;
    *) verdict="FAILED, exit $rc"; FAILED=$((FAILED + 1)) ;;
  esac
  say "step $name: $verdict in ${took}s (cap ${cap}s): $*"
  grep -v '^\s*$' "$WORK/$group/$name.log" | tail -n 3 | sed 's/^/    /' | tee -a "$SUMMARY"
  pack "$group"
}

facts() {  # what the box is: GPU, driver, Python, torch, CUDA, cuDNN, triton, key packages
  date -u; uname -a; nproc; free -g 2>/dev/null | head -2
  command -v nvidia-smi >/dev/null && { nvidia-smi; nvidia-smi -q -d CLOCK | head -40; } \
    || echo "nvidia-smi: not found"
  command -v python3; python3 --version
  python3 - <<'PY'
import importlib, sys
print("python3 prefix", sys.prefix, "base", sys.base_prefix)
for name in ("torch", "triton", "numpy", "numba", "scipy", "pandas", "xformers", "flash_attn"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"), mod.__file__)
    except Exception as exc:
        print(name, "not importable:", type(exc).__name__, exc)
try:
    import torch
    print("cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
          "available", torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print("device", p.name, "sm", p.multi_processor_count, "memory GiB",
              round(p.total_memory / 2**30, 1), "capability", torch.cuda.get_device_capability(0))
except Exception as exc:
    print("torch probe failed:", type(exc).__name__, exc)
PY
}
export -f facts

attn() {  # attn VERB DIR ARGS...: `attnbench VERB ARGS --out DIR`, or `--resume DIR` where an
  # earlier call of this session (the same --work) left a run in DIR
  local verb="$1" dir="$2"
  shift 2
  if [[ -s "$dir/run.json" ]]; then
    echo "gpu_session.sh: resuming the run an earlier call left in $dir"
    "$BIN/attnbench" "$verb" --resume "$dir"
  else
    "$BIN/attnbench" "$verb" "$@" --out "$dir"
  fi
}

twice() {  # twice ARGS...: the same sweep twice back to back, then compared (run-to-run noise)
  attn run "$WORK/sweep/twice-a" "$@" && attn run "$WORK/sweep/twice-b" "$@" || return
  "$BIN/attnbench" compare "$WORK/sweep/twice-a" "$WORK/sweep/twice-b" --all
  local rc=$?  # 1: the same code's two runs differed past the gate, the noise measured here
  ((rc <= 1))
}
export -f attn twice
export BIN WORK

say "gpu_session.sh: device $DEVICE, tiny $TINY, total ${TOTAL}s, work $WORK, out $DEST," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
export PYTHONUNBUFFERED=1
C=("${CAPS[@]}")
step facts env "${C[0]}" 5 bash -c facts
if command -v make >/dev/null; then
  step setup env "${C[1]}" 20 make setup
else  # what `make setup` runs, where make itself is missing
  step setup env "${C[1]}" 20 bash -c "python3 tools/setup_venv.py --venv '${BIN%/bin}' \
    && touch '${BIN%/bin}/.attnbench-installed'"
fi
if [[ ! -x "$BIN/attnbench" ]]; then  # set-up failed: run from the source tree, say so
  say "  set-up left no $BIN/attnbench: the steps run python3 -m attnbench from the source tree"
  BIN="$WORK/bin"
  mkdir -p "$BIN"
  printf '#!/bin/sh\nPYTHONPATH="%s${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m attnbench "$@"\n' \
    "$ROOT" >"$BIN/attnbench"
  printf '#!/bin/sh\nPYTHONPATH="%s${PYTHONPATH:+:$PYTHONPATH}" exec python3 "$@"\n' \
    "$ROOT" >"$BIN/python"
  chmod +x "$BIN/attnbench" "$BIN/python"
fi
step list env "${C[2]}" 5 "$BIN/attnbench" list
A=(bash -c 'attn "$@"' attn)  # a step's attnbench run: fresh, or resumed (attn above)
step smoke checks "${C[3]}" 20 "${A[@]}" check "$WORK/checks/smoke" -s smoke --device "$DEVICE" \
  $(flags "${SMOKE[@]}") --junit-xml "$WORK/checks/smoke.xml"
step backward checks "${C[4]}" 20 "${A[@]}" check "$WORK/checks/backward" \
  -s benchmarks/gpu_backward.toml --device "$DEVICE" $(flags "${GRADS[@]}")
step crosscheck timer "${C[5]}" 20 "$BIN/python" benchmarks/crosscheck.py "${CROSS[@]}"
step kernels timer "${C[6]}" 15 "$BIN/python" benchmarks/sdpa_kernels.py -s smoke \
  --device "$DEVICE"
step sweep sweep "${C[7]}" 30 "${A[@]}" run "$WORK/sweep/run" -s gpu --device "$DEVICE" \
  $(flags "${SWEEP[@]}") "${BUDGET[@]}"
if [[ -s "$WORK/sweep/run/records.jsonl" ]]; then
  step report sweep "${C[8]}" 10 "$BIN/attnbench" report "$WORK/sweep/run" \
    -o "$WORK/sweep/report"
else
  say "step report: SKIPPED, the sweep wrote no record"
fi
step flex flex "${C[9]}" 15 "${A[@]}" run "$WORK/flex/run" -s gpu --device "$DEVICE" \
  -b flex-attention "${BUDGET[@]}"
step variants variants "${C[10]}" 15 "${A[@]}" check "$WORK/variants/run" -s variants \
  --device "$DEVICE" $(flags "${VARIANTS[@]}")
# `make bench` as the README says (the default sweep and its report), with the time left; a run
# stopped at its cap keeps its records, and the report is then made from them
RESUMED=0
if [[ -s "$WORK/bench/run/run.json" ]]; then  # an earlier call's bench, stopped at its cap
  RESUMED=1
  step bench bench "${C[11]}" 30 "${A[@]}" run "$WORK/bench/run"
else
  step bench bench "${C[11]}" 30 make bench BENCH_OUT="$WORK/bench/run" "${BENCH[@]}"
fi
if [[ -s "$WORK/bench/run/records.jsonl" ]] && { ((RESUMED)) || [[ ! -s "$WORK/bench/run/report.md" ]]; }; then
  step bench-report bench 30 5 "$BIN/attnbench" report "$WORK/bench/run"
fi
# the same small sweep twice back to back and compared: the noise of this machine, run to run
step twice sweep "${C[12]}" 30 bash -c 'twice "$@"' twice -s gpu --device "$DEVICE" \
  $(flags "${TWICE[@]}") "${BUDGET[@]}"
say "gpu_session.sh: done in $(($(date +%s) - START))s of ${TOTAL}s; $FAILED step(s) failed;" \
    "$(find "$DEST" -maxdepth 1 -type f | wc -l) file(s) in $DEST"
cp "$SUMMARY" "$DEST/summary.log"
((FAILED == 0))
