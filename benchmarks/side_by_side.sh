#!/usr/bin/env bash
# Paper-size update timings of blast (plain and fast paths) and sheeprl's DreamerV2, run at the
# same time on separate pairs of CPU cores (2 threads each), so all of them see the same machine
# load. Results: one JSON file per job in $RESULTS (default /tmp/blast-bench).
#
#   PY_BLAST=.venv/bin/python PY_SHEEPRL=/tmp/sheeprl-venv/bin/python benchmarks/side_by_side.sh
#
# Needs 2 cores per job (7 jobs: 14 cores); on a smaller machine set JOBS to a subset, e.g.
# JOBS="mg_dv2 sheeprl_mg", which then run one after another on cores 0-1.
set -u
PY_BLAST=${PY_BLAST:-python3}
PY_SHEEPRL=${PY_SHEEPRL:-python3}
RESULTS=${RESULTS:-/tmp/blast-bench}
REPS=${REPS:-2}
PRESET=${PRESET:-paper}
LIMIT=${LIMIT:-540}
JOBS=${JOBS:-"mg_dv2 mg_bn mg_ar_prior dmc_dv2 dmc_ar_prior sheeprl_mg sheeprl_dmc"}
PARALLEL=${PARALLEL:-1}
mkdir -p "$RESULTS"

blast_job() {  # family rung
  "$PY_BLAST" -c "
import json, sys, torch
torch.set_num_threads(2)
from blast_core.bench.models import bench_models
doc = bench_models('$PRESET', '$1', ['$2'], 'cpu', reps=$REPS, warmup=1, path='both')
json.dump(doc, open('$RESULTS/blast_$1_$2.json', 'w'), indent=1)
"
}

sheeprl_job() {  # family
  "$PY_SHEEPRL" benchmarks/sheeprl_dv2.py --family "$1" --reps "$REPS" --warmup 1 --threads 2 \
    > "$RESULTS/sheeprl_$1.json"
}

run() {  # job
  case $1 in
    mg_*) blast_job minigrid "${1#mg_}" ;;
    dmc_*) blast_job dmc "${1#dmc_}" ;;
    sheeprl_mg) sheeprl_job minigrid ;;
    sheeprl_dmc) sheeprl_job dmc ;;
  esac
}

export PY_BLAST PY_SHEEPRL RESULTS REPS PRESET
export -f run blast_job sheeprl_job
core=0
for job in $JOBS; do
  if [ "$PARALLEL" = 1 ]; then
    pin=""
    command -v taskset > /dev/null && pin="taskset -c $core,$((core + 1))"
    (timeout "$LIMIT" $pin bash -c "run $job" \
      > "$RESULTS/$job.log" 2>&1; echo "$job exit $?") &
    core=$((core + 2))
  else
    run "$job" > "$RESULTS/$job.log" 2>&1; echo "$job exit $?"
  fi
done
wait
