#!/usr/bin/env bash
# Compute-matched pretraining (issue 23 point 3): every family to the same budget in optimizer steps on the multi-task
# play corpus (varied visuals; collected first if missing), in chunks that resume one another, so a run can span
# sessions: re-running the script continues from the last finished chunk. The budget (8,000 steps) was chosen from the
# committed loss curves: `python -m benchmarks.pretrain_budget` (results/pretrain_budget.csv).
#   bash scripts/pretrain_matched.sh            -> runs/weights/matched/<family>_<step>.pt, one per chunk (the same
#                                                  cosine schedule over STEPS: bit-identical to one long run)
#   PUBLISH=1 bash scripts/pretrain_matched.sh  -> also copies each finished run to weights/<family>_matched.pt and
#                                                  its chunk at step EARLY (2,000) to weights/<family>_matched_2000.pt
# Two lanes side by side, one torch thread each: dift then mae, clip then voltron (balanced by recorded s/step).
#   LANE_A="" bash scripts/pretrain_matched.sh  -> the second lane only (the other core free for a sweep); LANE_A="mae"
#                                                  LANE_B="voltron" picks the families of each lane
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-8000}
CHUNK=${CHUNK:-100}   # a kill (a session's end) loses at most one chunk's steps
DIR=${DIR:-runs/weights/matched}
EARLY=${EARLY:-2000}  # the earlier chunk published beside the finished run (one per family, kept in KEEP too)
WEIGHTS=${WEIGHTS:-weights}
KEEP=${KEEP:-$EARLY 4000}  # earlier chunks kept for the what-did-more-compute-buy comparison (the last is kept too)
R=${R:-.venv/bin/robrep}
LANE_A=${LANE_A-dift mae}
LANE_B=${LANE_B-clip voltron}
LOGS=${LOGS:-logs}
mkdir -p "$DIR" "$LOGS"
$R collect mode=play task.visuals=varied progress=false   # resumable: complete task files are skipped

lane() {
  for f in "$@"; do
    local done=0 s p
    for p in "$DIR/${f}"_*.pt; do  # the furthest finished chunk, whatever chunk size made it
      s=${p##*_}; s=${s%.pt}
      case "$s" in ''|*[!0-9]*) ;; *) [ "$s" -gt "$done" ] && [ "$s" -le "$STEPS" ] && done=$s ;; esac
    done
    while [ "$done" -lt "$STEPS" ]; do
      local next=$((done + CHUNK > STEPS ? STEPS : done + CHUNK))
      if [ "$done" -eq 0 ]; then
        $R pretrain encoder=$f steps=$next schedule_steps=$STEPS threads=1 out=$DIR/${f}_$next.pt progress=false
      else
        $R pretrain encoder=$f resume=$DIR/${f}_$done.pt steps=+$((next - done)) threads=1 out=$DIR/${f}_$next.pt progress=false
      fi >> "$LOGS/pretrain_matched_$f.log" 2>&1
      case " $KEEP " in  # the previous chunk's weights and resume state go unless kept (its loss curve stays)
        *" $done "*) ;;
        *) [ "$done" -eq 0 ] || rm -f "$DIR/${f}_$done.pt" "$DIR/${f}_$done.state.pt" ;;
      esac
      done=$next
    done
    if [ -n "${PUBLISH:-}" ]; then  # the finished run and its earlier chunk EARLY (what the compute bought)
      for x in pt loss.csv loss.png; do
        cp "$DIR/${f}_$STEPS.$x" "$WEIGHTS/${f}_matched.$x"
        cp "$DIR/${f}_$EARLY.$x" "$WEIGHTS/${f}_matched_$EARLY.$x"
      done
    fi
  done
}
pids=()
for families in "$LANE_A" "$LANE_B"; do
  [ -z "$families" ] || { lane $families & pids+=($!); }
done
for p in "${pids[@]}"; do wait "$p"; done
grep -h "saved" "$LOGS"/pretrain_matched_*.log | tail -4 || true
