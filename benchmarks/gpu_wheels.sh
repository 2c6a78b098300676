#!/usr/bin/env bash
# Wheels a GPU box without network lacks, brought in parts small enough for one command each:
# flash-attn-4 and its CuTe DSL (nvidia-cutlass-dsl + libs, apache-tvm-ffi, quack-kernels,
# torch-c-dlpack-ext), xformers and the CUDA 12 runtime its _C.so needs (docs/gpu.md).
#
#   here:  benchmarks/gpu_wheels.sh pack [DIR]             download for the box, cut into parts
#   there: benchmarks/gpu_wheels.sh install [DIR] [SITE]   in every command that carries a part
#
# pack writes DIR/part-00, part-01, ... (PART_MIB MiB each at most, default 60) and DIR/MANIFEST
# (their sha256), and has git ignore DIR, so that nothing travels unless a command carries it.
# Command k carries DIR/MANIFEST and DIR/part-0k. install keeps each part it is given under
# STASH (default /tmp/attnbench-wheels, kept while the box stays up); once every part is there
# and its checksum holds, it installs the wheels with `pip --target SITE` (default
# /tmp/attnbench-site) and adds SITE to the interpreter as a site directory (a .pth running
# site.addsitedir), so the wheels' own .pth files run too: nvidia-cutlass-dsl's puts `cutlass`
# on sys.path, which PYTHONPATH=SITE alone skips. It ends by importing cutlass,
# flash_attn.cute and xformers. PYTHON (default python3) is the interpreter installed into;
# PYVER (default 3.12, the box's) the Python the wheels are for; EXTRA more requirements (a
# rehearsal on another machine may need triton, which the box has).
set -euo pipefail

PYTHON=${PYTHON:-python3}
PYVER=${PYVER:-3.12}
PART_MIB=${PART_MIB:-60}
STASH=${STASH:-/tmp/attnbench-wheels}
WHEELS=(  # Python 3.12, x86-64 manylinux; the box's torch 2.11 (CUDA 13) already has the rest
  flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1
  nvidia-cutlass-dsl-libs-core==4.8.1 nvidia-cutlass-dsl-libs-cu13==4.8.1
  apache-tvm-ffi==0.1.15.post2 quack-kernels==0.6.5 torch-c-dlpack-ext==0.1.5
  xformers==0.0.35 nvidia-cuda-runtime-cu12==12.9.79
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
           manylinux_2_17_x86_64 manylinux2014_x86_64)

die() { echo "gpu_wheels: $*" >&2; exit 2; }

pack() {
  local dir=${1:-.gpuwheels}
  mkdir -p "$dir/wheels"
  local plats=()
  for p in "${PLATFORMS[@]}"; do plats+=(--platform "$p"); done
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp "${plats[@]}" -d "$dir/wheels" "${WHEELS[@]}" ${EXTRA:-}
  rm -f "$dir"/part-* "$dir/MANIFEST"
  tar -cf - -C "$dir/wheels" . | split -b "${PART_MIB}M" -d -a 2 - "$dir/part-"
  (cd "$dir" && sha256sum part-* > MANIFEST)
  if git rev-parse --git-dir >/dev/null 2>&1 && ! git check-ignore -q "$dir"; then
    echo "/${dir#./}/" >> "$(git rev-parse --git-path info/exclude)"
    echo "gpu_wheels: $dir added to .git/info/exclude (it travels only when carried)"
  fi
  echo "gpu_wheels: $(ls "$dir/wheels" | wc -l) wheels, $(du -sm "$dir/wheels" | cut -f1) MiB," \
       "in $(ls "$dir"/part-* | wc -l) parts of at most $PART_MIB MiB:"
  ls -l "$dir"/part-* | awk '{print "  " $NF ": " int($5 / 1048576 + 0.5) " MiB"}'
  echo "each GPU command carries $dir/MANIFEST and one part, and starts with:" \
       "benchmarks/gpu_wheels.sh install $dir"
  rm -rf "$dir/wheels"
}

install() {
  local dir=${1:-.gpuwheels} site=${2:-/tmp/attnbench-site}
  mkdir -p "$STASH"
  [ -f "$dir/MANIFEST" ] && cp "$dir/MANIFEST" "$STASH/"
  [ -f "$STASH/MANIFEST" ] || die "no MANIFEST in $dir or $STASH: carry $dir/MANIFEST"
  for part in "$dir"/part-*; do [ -f "$part" ] && cp "$part" "$STASH/"; done
  local missing
  missing=$(cd "$STASH" && awk '{print $2}' MANIFEST | while read -r p; do
    [ -f "$p" ] || echo "$p"; done)
  if [ -n "$missing" ]; then
    echo "gpu_wheels: still missing $(echo $missing): carry them in the next command" \
         "(this box keeps $STASH while it stays up)"
    return 0
  fi
  (cd "$STASH" && sha256sum -c --quiet MANIFEST) || die "a part is damaged: carry it again"
  rm -rf "$STASH/wheels" && mkdir -p "$STASH/wheels"
  cat "$STASH"/part-* | tar -xf - -C "$STASH/wheels"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$STASH"/wheels/*.whl
  local purelib
  purelib=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "import site; site.addsitedir('$site')" > "$purelib/attnbench-gpu-wheels.pth"
  "$PYTHON" - <<'EOF'
import importlib
for name in ("cutlass", "flash_attn.cute", "xformers"):
    try:
        mod = importlib.import_module(name)
        print(f"gpu_wheels: import {name}: ok ({getattr(mod, '__file__', None)})")
    except Exception as exc:
        print(f"gpu_wheels: import {name} FAILED: {type(exc).__name__}: {exc}")
EOF
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  install) shift; install "$@" ;;
  *) die "usage: $0 pack [DIR] | install [DIR] [SITE]" ;;
esac
