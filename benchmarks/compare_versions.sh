#!/bin/bash
# Side-by-side timing of this checkout against an earlier commit, one after the other (never at once):
#   bash benchmarks/compare_versions.sh BASE_COMMIT [OUTDIR]
# The earlier commit is checked out in a temporary worktree and imported through PYTHONPATH, with this
# checkout's venv, ../shared data and benchmarks/.data. Writes phase1_{new,base}.txt and scale_{new,base}.txt.
set -euo pipefail
base=${1:?usage: compare_versions.sh BASE_COMMIT [OUTDIR]}
here=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$here/benchmarks/.compare}
py=$here/.venv/bin/python
tree=$(mktemp -d)/base
mkdir -p "$out"
git -C "$here" worktree add -f -q "$tree" "$base"
trap 'git -C "$here" worktree remove --force "$tree"' EXIT
ln -sfn "$here/../shared" "$(dirname "$tree")/shared"
ln -sfn "$here/benchmarks/.data" "$tree/benchmarks/.data"
run() {   # version, script, args...
    local v=$1; shift
    if [ "$v" = base ]; then PYTHONPATH=$tree "$py" "$tree/benchmarks/$@"; else "$py" "$here/benchmarks/$@"; fi
}
for v in new base; do run $v bench_phase1.py --repeat 3 --first-calls 3 --random 0 --no-scale > "$out/phase1_$v.txt" 2>&1; done
for v in base new; do run $v bench_xpcs_scale.py --runs 1e8:2,1e7:1 > "$out/scale_$v.txt" 2>&1; done
echo "results in $out"
