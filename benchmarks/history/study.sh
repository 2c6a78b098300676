#!/usr/bin/env bash
# The history study: N runs of a small sweep, one after another on this machine, each stored in
# a history database under its label; from run SLOW_FROM on the `planted` backend is 15 % slower.
# Each run is added to OUT_DIR/history.sqlite as it finishes; then `attnbench history show`
# must find that step at its label and none elsewhere:
#   benchmarks/history/study.sh OUT_DIR [N=24] [SLOW_FROM=13]
#   .venv/bin/attnbench history show --db OUT_DIR/history.sqlite
set -euo pipefail
out=${1:?usage: study.sh OUT_DIR [N] [SLOW_FROM]}
n=${2:-24}
slow_from=${3:-13}
here=$(cd "$(dirname "$0")" && pwd)
bin=${ATTNBENCH:-.venv/bin/attnbench}
mkdir -p "$out"
for i in $(seq 1 "$n"); do
  label=$(printf "commit-%02d" "$i")
  slow=0
  [ "$i" -ge "$slow_from" ] && slow=0.15
  ATTNBENCH_PLANTED_SLOWDOWN=$slow "$bin" run -s "$here/study.toml" --plugin "$here/planted.py" \
    -b planted -b numpy-naive -b numpy-flash -b numba-cpu -b torch-naive -b torch-sdpa --budget 0.5 \
    --out "$out/$label" --overwrite > "$out/$label.log" 2>&1
  "$bin" history add "$out/$label" --label "$label" --db "$out/history.sqlite"
  echo "$(date +%T) $label slowdown $slow done"
done
