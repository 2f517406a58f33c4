#!/usr/bin/env bash
# Several paper-size runs on one GPU at once: aggregate updates/s with and without cuda_graphs.
# Each run: MiniGrid, bn, 1000 prefill steps, then one update per step; the rate is the mean
# updates/s of the log rows after the first 100 updates (capture and warm-up excluded).
# Usage: [CELLS="true:1 false:4 ..."] bash benchmarks/gpu_packing.sh OUT_DIR [STEPS]
# (a cell is cuda_graphs:runs at once; PYTHONPATH as gpu_session.sh sets it)
set -uo pipefail
out=${1:?OUT_DIR}; steps=${2:-1300}
mkdir -p "$out"
for cell in ${CELLS:-true:1 true:4 false:4 false:1}; do
  graphs=${cell%:*}; k=${cell#*:}
  res=/tmp/packing_${graphs}_$k; rm -rf "$res"
  start=$(date +%s.%N)
  for seed in $(seq 0 $((k - 1))); do
    python3 -m blast_cli run --env minigrid:unmodified --rung bn --seed "$seed" \
      --steps "$steps" --set schedule.prefill=1000 --set schedule.log_every=100 \
      --set schedule.eval_every=0 --set cuda_graphs="$graphs" --threads 2 --no-progress \
      --results "$res" > "$res.$seed.log" 2>&1 &
  done
  wait
  wall=$(python3 -c "import time; print(round(time.time() - $start, 1))")
  python3 - "$res/blast.db" "$graphs" "$k" "$wall" <<'PY' | tee -a "$out/packing.log"
import sqlite3, statistics, sys
db, graphs, k, wall = sys.argv[1:]
rows = sqlite3.connect(db).execute(
    "select run_id, value from metrics where name = 'updates_per_s' and step > 1100").fetchall()
per_run = {}
for run, value in rows:
    per_run.setdefault(run, []).append(value)
rates = [statistics.mean(v) for v in per_run.values()]
print(f"cuda_graphs={graphs} runs={k}: {len(rates)} runs done, wall {wall} s, per run "
      f"{statistics.mean(rates):.2f} updates/s, together {sum(rates):.2f} updates/s")
PY
  tail -3 "$res".0.log
done
