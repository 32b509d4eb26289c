#!/usr/bin/env bash
# Make the committed in-domain checkpoints: every encoder family pretrained on the same 5-task play frames
# for the same wall-clock budget, two families at a time (one torch thread each) on a 2-core CPU.
#   bash scripts/pretrain_weights.sh quick 15    -> weights/<family>_quick.pt  (the quick budget)
#   bash scripts/pretrain_weights.sh full 60     -> weights/<family>_full.pt   (the full budget)
# on the 5-task noisy-expert frames data/pretrain/*.hdf5 (collected first if missing), or on the multi-task play
# corpus in the varied visual setting (collected first if missing), optionally leaving the evaluation task out:
#   CORPUS=play bash scripts/pretrain_weights.sh play_quick 15                  -> weights/<family>_play_quick.pt
#   CORPUS=play EXCLUDE=push bash scripts/pretrain_weights.sh loto_push_quick 15 -> weights/<family>_loto_push_quick.pt
# Each checkpoint records its command, resolved config, data hashes, steps and loss curve; step counts depend on
# CPU load (wall-clock budget). LIKE=<name> gives each family instead the steps and schedule of its
# weights/<family>_<name>.pt, whatever the load (e.g. pick_place's leave-one-task-out weights with exactly the step
# budgets of push's; the minutes argument is then unused):
#   CORPUS=play EXCLUDE=pick_place LIKE=loto_push_quick bash scripts/pretrain_weights.sh loto_pick_place_quick 15
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:?usage: pretrain_weights.sh <name> <minutes> [families...]}
MINUTES=${2:?usage: pretrain_weights.sh <name> <minutes> [families...]}
shift 2
FAMILIES=${*:-mae dift voltron clip}
R=${R:-.venv/bin/robrep}
R_PY=${R_PY:-.venv/bin/python}
TASKS="reach push pick_place button push_color"
if [ "${CORPUS:-demos}" = play ]; then
  $R collect mode=play task.visuals=varied progress=false   # resumable: complete task files are skipped
  DATA="corpus.exclude=[${EXCLUDE:-}]"
else
  files=()
  for t in $TASKS; do
    [ -f data/pretrain/$t.hdf5 ] || $R collect task=$t num_demos=200 seed_start=100000 noise_std=0.1 \
        out=data/pretrain/$t.hdf5 subset_sizes=[] subset_seeds=[] progress=false
    files+=("data/pretrain/$t.hdf5")
  done
  DATA="data=[$(IFS=,; echo "${files[*]}")]"
fi
mkdir -p logs
set -- $FAMILIES
while [ $# -gt 0 ]; do
  pids=()
  for f in "$1" "${2:-}"; do
    [ -n "$f" ] || continue
    budget="budget_minutes=$MINUTES"
    if [ -n "${LIKE:-}" ]; then
      budget=$($R_PY -c "import sys; from robrep.encoders.checkpoint import read_checkpoint as r; m = r(sys.argv[1])['meta']
print(f\"steps={m['steps']} schedule_steps={m['schedule_steps']}\")" "weights/${f}_${LIKE}.pt")
    fi
    $R pretrain encoder=$f "$DATA" $budget threads=1 out=weights/${f}_${NAME}.pt progress=false \
      > logs/pretrain_${f}_${NAME}.log 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  shift; [ $# -gt 0 ] && shift
done
grep -h "^saved" logs/pretrain_*_${NAME}.log
