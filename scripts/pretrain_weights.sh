#!/usr/bin/env bash
# Make the committed in-domain checkpoints: every encoder family pretrained on the same 5-task play frames
# for the same wall-clock budget, two families at a time (one torch thread each) on a 2-core CPU.
#   bash scripts/pretrain_weights.sh quick 15    -> weights/<family>_quick.pt  (the quick budget)
#   bash scripts/pretrain_weights.sh full 60     -> weights/<family>_full.pt   (the full budget)
# The pretraining frames (data/pretrain/*.hdf5) are collected first if missing. Each checkpoint records its
# command, resolved config, data hashes, steps and loss curve; step counts depend on CPU load (wall-clock budget).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:?usage: pretrain_weights.sh <name> <minutes> [families...]}
MINUTES=${2:?usage: pretrain_weights.sh <name> <minutes> [families...]}
shift 2
FAMILIES=${*:-mae dift voltron clip}
R=.venv/bin/robrep
for t in reach push pick_place button push_color; do
  [ -f data/pretrain/$t.hdf5 ] || $R collect task=$t num_demos=200 seed_start=100000 noise_std=0.1 \
      out=data/pretrain/$t.hdf5 subset_sizes=[] subset_seeds=[] progress=false
done
mkdir -p logs
set -- $FAMILIES
while [ $# -gt 0 ]; do
  pids=()
  for f in "$1" "${2:-}"; do
    [ -n "$f" ] || continue
    $R pretrain encoder=$f budget_minutes=$MINUTES threads=1 out=weights/${f}_${NAME}.pt progress=false \
      > logs/pretrain_${f}_${NAME}.log 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  shift; [ $# -gt 0 ] && shift
done
grep -h "^saved" logs/pretrain_*_${NAME}.log
