#!/usr/bin/env bash
# Re-render results/REPORT.md (and the README's generated block) from the COMMITTED CSVs only: a running sweep rewrites
# tables under results/ that are not committed yet, so the report is rendered in a clean worktree of HEAD and copied back.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$PWD/.venv/bin/python}
git diff --quiet HEAD -- README.md || { echo "README.md has uncommitted changes: commit them first" >&2; exit 1; }
W=$(mktemp -d)/rep
git worktree add -q --detach "$W" HEAD
trap 'git worktree remove --force "$W"' EXIT
(cd "$W" && "$PY" -m benchmarks.report --root "$W")
cp "$W/results/REPORT.md" results/REPORT.md
cp "$W/README.md" README.md
