#!/usr/bin/env bash
# Run the asv suite over the last N first-parent commits of main (default 20)
# in the current Python environment, then publish the dashboard.
#
#   pip install ".[bench]" && bash bench/asv_history.sh 20
#   ASV_ARGS="-b TimeEpoch.time_epoch\('classic',.'float32'\) -b TimeMatmul.time_nn" \
#       bash bench/asv_history.sh 20     # a subset: minutes per commit, not tens
#   python -m asv preview                # serves .asv/html
#
# asv's "existing" environment benchmarks whatever fastnn is installed, so
# each commit is checked out into a temporary worktree, installed there
# (pip install --no-deps) and benchmarked with its own bench/ suite and
# --set-commit-hash; commits already measured on this machine are skipped,
# so running it after each commit adds one point (with ASV_ARGS, a subset of
# the suite, measured commits are measured again and the subset's results
# added to theirs). Results go to bench/results/<machine>/, which is checked
# in: the machine is named after the CPU LLVM compiles for and the core
# count (e.g. znver3-2cpu), so hosts of one kind share a history and hosts of
# another kind get their own series. Use a virtual environment made for this:
# the installed fastnn is replaced for each commit and the working tree's
# version is reinstalled (not editable) at the end.
set -euo pipefail
N=${1:-20}
root=$(git rev-parse --show-toplevel)
cd "$root"
py=$(command -v python)
machine=${ASV_MACHINE:-$("$py" -c "import os, llvmlite.binding as b; print(f'{b.get_host_cpu_name()}-{os.cpu_count()}cpu')")}
# Time the compiled kernels: a cold cache would otherwise train on NumPy
# while a helper compiles.
export FASTNN_BACKGROUND_COMPILE=0 FASTNN_BACKEND=compiled
tmp=$(mktemp -d)
cleanup() {
    git worktree remove --force "$tmp/wt" 2>/dev/null || true
    rm -rf "$tmp"
    pip install -q --no-deps "$root" >/dev/null
}
trap cleanup EXIT
mkdir -p bench/results
for sha in $(git rev-list --first-parent -n "$N" main | tac); do
    git worktree remove --force "$tmp/wt" 2>/dev/null || true
    git worktree add -q --detach "$tmp/wt" "$sha"
    if [ -z "${ASV_ARGS:-}" ] && compgen -G "bench/results/$machine/${sha:0:8}-*.json" >/dev/null; then
        echo "skip ${sha:0:8}: already measured on $machine"
        continue
    fi
    if [ ! -f "$tmp/wt/asv.conf.json" ]; then
        echo "skip ${sha:0:8}: no asv suite at that commit"
        continue
    fi
    echo "== ${sha:0:8} $(git log -1 --format=%s "$sha")"
    pip install -q --no-deps "$tmp/wt"
    # A subset (ASV_ARGS) adds to the commit's results measured so far: asv
    # merges into the results it finds. Older commits keep results in
    # .asv/results; send them to bench/results.
    mkdir -p "$tmp/wt/bench/results/$machine"
    cp -r "bench/results/$machine/." "$tmp/wt/bench/results/$machine/" 2>/dev/null || true
    (cd "$tmp/wt" && export PYTHONPATH="$tmp/wt" && python -m asv machine --yes --machine "$machine" >/dev/null &&
        python -m asv run --environment "existing:$py" --machine "$machine" \
            --set-commit-hash "$sha" --show-stderr ${ASV_ARGS:-} &&
        for d in .asv/results bench/results; do
            [ -d "$d" ] && cp -r "$d/." "$root/bench/results/"
        done; true)
done
python bench/publish_dashboard.py
