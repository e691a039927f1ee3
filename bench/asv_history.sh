#!/usr/bin/env bash
# Run the asv suite over the last N commits of main (default 5) in the
# current Python environment, then build the HTML dashboard.
#
#   pip install ".[bench]" && bash bench/asv_history.sh 5
#   python -m asv preview        # serves .asv/html (or open .asv/html/index.html)
#
# asv's "existing" environment benchmarks whatever fastnn is installed, so
# each commit is checked out into a temporary worktree, installed there
# (pip install --no-deps), and benchmarked with its own bench/ suite and
# --set-commit-hash; results are collected in .asv/results. The working
# tree's version is reinstalled at the end. Nothing here is committed
# (.asv/ is git-ignored).
set -euo pipefail
N=${1:-5}
root=$(git rev-parse --show-toplevel)
cd "$root"
py=$(command -v python)
tmp=$(mktemp -d)
cleanup() {
    git worktree remove --force "$tmp/wt" 2>/dev/null || true
    rm -rf "$tmp"
    pip install -q --no-deps "$root" >/dev/null
}
trap cleanup EXIT
mkdir -p .asv/results
for sha in $(git rev-list --first-parent -n "$N" main | tac); do
    git worktree remove --force "$tmp/wt" 2>/dev/null || true
    git worktree add -q --detach "$tmp/wt" "$sha"
    if [ ! -f "$tmp/wt/asv.conf.json" ]; then
        echo "skip ${sha:0:8}: no asv suite at that commit"
        continue
    fi
    echo "== ${sha:0:8} $(git log -1 --format=%s "$sha")"
    pip install -q --no-deps "$tmp/wt"
    (cd "$tmp/wt" && python -m asv machine --yes >/dev/null &&
        python -m asv run --environment "existing:$py" --set-commit-hash "$sha" ${ASV_ARGS:-})
    cp -r "$tmp/wt/.asv/results/." .asv/results/
done
python -m asv publish
echo "dashboard: $root/.asv/html/index.html"
