#!/usr/bin/env bash
# One GPU session's checks, in the order of their worth (a lent machine's time is short):
#   1. benchmarks/gpu_graphs_check.py: graphed == eager, and the bench cells with/without graphs;
#   2. a real paper-size MiniGrid run with cuda_graphs (prefill, updates, an evaluation, the
#      final checkpoint), then its speed and memory metrics (host_mem_mb, peak_mem_mb) read
#      back from its database;
#   3. with PACK_CELLS="true:1 false:1 ...", benchmarks/gpu_packing.sh on those cells.
# Usage: [CHECK_S=..] [RUN_S=..] [PACK_CELLS=..] bash benchmarks/gpu_session.sh OUT_DIR
# (wheels of packages the machine lacks in .whl/, made by benchmarks/gpu_wheels.sh: carry .whl)
set -uo pipefail
out=${1:?OUT_DIR}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L
timeout "${CHECK_S:-330}" python3 benchmarks/gpu_graphs_check.py "$out" 2>&1 | tee "$out/check.log"
res=/tmp/gpu_session_results
rm -rf "$res"
start=$(date +%s)
# The whole behaviour step graphed too (BLAST_GRAPH_BEHAVIOR, until it is the default);
# RUN_BEHAVIOR=0 for the default graphs only.
BLAST_GRAPH_BEHAVIOR=${RUN_BEHAVIOR:-1} \
timeout "${RUN_S:-150}" python3 -m blast_cli run --env minigrid:unmodified --rung ar_prior \
  --seed 0 --steps 1500 --set schedule.prefill=1000 --set schedule.eval_every=1500 \
  --set schedule.log_every=250 --set cuda_graphs=true --no-progress --results "$res" \
  2>&1 | tail -25 | tee "$out/run.log"
echo "run wall: $(( $(date +%s) - start )) s" | tee -a "$out/run.log"
python3 - "$res/blast.db" <<'PY' 2>&1 | tee -a "$out/run.log"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
names = ("steps_per_s", "updates_per_s", "peak_mem_mb", "host_mem_mb", "host_anon_mb",
         "model_loss", "kl", "eval_return", "eval_score")
for step, name, value in db.execute(
        f"select step, name, value from metrics where name in {names} order by step, name"):
    print(step, name, value)
PY
if [ -n "${PACK_CELLS:-}" ]; then
  CELLS="$PACK_CELLS" timeout "${PACK_S:-300}" bash benchmarks/gpu_packing.sh "$out"
fi
