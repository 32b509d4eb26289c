#!/usr/bin/env bash
# The cross-task benchmark (issue 23): the committed fair sweeps of every task, one `robrep sweep` per (sweep, N) stage,
# each resumable (cells with a record are skipped; tuning choices are read back from the sweep directory), so the
# whole campaign spans sessions and machines: re-run the same command and it continues where the cells stop.
#   bash scripts/cross_task_sweeps.sh                              -> every sweep, every stage, in the order below
#   SWEEPS="pick_place_fair mw_push_fair" STAGES="10 500" bash scripts/cross_task_sweeps.sh
#   ARMS=voltron,voltron_nolang,clip,clip_text,cnn SWEEPS=push_color_fair STAGES=500 bash scripts/cross_task_sweeps.sh
#                                                                  -> those arms' cells first (the same cells a full run
#                                                                     makes: tuning is per arm and N; the rest later)
#   bash scripts/cross_task_sweeps.sh status                       -> cells recorded so far, per sweep and N
#   bash scripts/cross_task_sweeps.sh lanes                        -> the sweeps in two lanes side by side (LANES:
#       lanes split by '|'), so one lane's single-process phases (encoding a feature cache) overlap the other's cells
# Stage order: N = 10 and N = 500 first (the two ends the closing table reports), then 50 and 100. Cells land in
# results/sweeps/<sweep>/cells as they finish; policies and caches go under runs/ and data/ (rebuilt when missing).
# Each stage's invocation is one row of the sweep's runs.csv; the tables are rewritten after every stage.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-.venv/bin/robrep}
SWEEPS=${SWEEPS:-push_color_fair pick_place_fair mw_push_fair pick_place_varied_heldout_fair}
STAGES=${STAGES:-10 500 50 100}
JOBS=${JOBS:-2}
ARMS=${ARMS:-}  # comma-separated subset of the sweep's arms (empty: all, or the sweep's own list below)

own_arms() {  # the arms a sweep runs when ARMS is empty (empty: sweep.yaml's default arms)
  case "$1" in
    push_matched|push_matched_2000) echo "mae,dift,voltron,clip_spatial" ;;  # the families with matched weights
  esac
}

args() {  # the sweep's own settings: task, preset or name (every other setting is sweep.yaml's default)
  case "$1" in
    push_color_fair) echo "task=push_color preset=language_fair" ;;
    pick_place_fair) echo "task=pick_place name=pick_place_fair" ;;
    mw_push_fair) echo "task=mw_push name=mw_push_fair" ;;
    pick_place_varied_heldout_fair) echo "task=pick_place preset=visual_heldout_fair" ;;
    push_matched) echo "task=push name=push_matched weights_budget=matched" ;;
    push_matched_2000) echo "task=push name=push_matched_2000 weights_budget=matched_2000" ;;  # its step-2,000 chunk
    *) echo "unknown sweep $1" >&2; return 2 ;;
  esac
}

sizes() {  # the demo counts a sweep's protocol has (its file is collected for all of them; stages outside are skipped)
  case "$1" in
    pick_place_varied_heldout_fair) echo "10 50" ;;  # the varied -> heldout protocol, as push's
    *) echo "10 50 100 500" ;;
  esac
}

if [ "${1:-}" = status ]; then  # cells recorded per sweep and N (the expected count is arms × seeds, 55 by default)
  for s in $SWEEPS; do
    line="$s:"
    for n in $STAGES; do
      case " $(sizes "$s") " in *" $n "*) ;; *) continue ;; esac
      c=$( (find "results/sweeps/$s/cells" -name "*_n${n}_s*.json" 2>/dev/null || true) | wc -l)
      line="$line N=$n $c"
    done
    echo "$line"
  done
  exit 0
fi

if [ "${1:-}" = lanes ]; then
  LANES=${LANES:-pick_place_fair push_color_fair pick_place_varied_heldout_fair | mw_push_fair}
  pids=()
  IFS='|' read -ra lanes <<< "$LANES"
  for lane in "${lanes[@]}"; do
    SWEEPS="$lane" bash "$0" & pids+=($!)
  done
  rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  exit $rc
fi

for s in $SWEEPS; do
  a=$(args "$s")
  own=$(sizes "$s")
  arms=${ARMS:-$(own_arms "$s")}
  for n in $STAGES; do
    case " $own " in *" $n "*) ;; *) continue ;; esac
    echo "== $(date -u +%FT%TZ) $s N=$n"
    # the demo file is collected once for every N of the protocol (collect.demos): each stage reads the same bytes
    eval "$R sweep $a sweep_dir=results/sweeps/$s 'demos=[$n]' 'collect.demos=[${own// /,}]' ${arms:+'arms=[$arms]'} \
      jobs=$JOBS progress=false"
  done
done
