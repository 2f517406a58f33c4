#!/usr/bin/env bash
# The two-lane benchmark series of docs/benchmarks.md: blast at HEAD and sheeprl on core 0,
# blast at an earlier commit ("before") on core 1, at the same time, 1 thread each, CPU time.
#
#   benchmarks/series.sh BEFORE_COMMIT [OUT_DIR] [SHEEPRL_PYTHON]
#
# SHEEPRL_PYTHON "" skips the sheeprl cells; PRESET=tiny REPS=1 WARMUP=0 makes a smoke run.
#
# Needs `scripts/setup.sh` done (.venv) and, for the sheeprl cells, a throwaway venv with
# sheeprl (see benchmarks/sheeprl_dv2.py; default /tmp/sheeprl-venv/bin/python).
set -euo pipefail
before=${1:?usage: benchmarks/series.sh BEFORE_COMMIT [OUT_DIR] [SHEEPRL_PYTHON]}
out=$(realpath -m "${2:-results/bench-series}")
sheeprl=${3-/tmp/sheeprl-venv/bin/python}
root=$(git rev-parse --show-toplevel)
py="$root/.venv/bin/python"
bench=(bench --preset "${PRESET:-paper}" --threads 1 --clock cpu --reps "${REPS:-3}"
       --warmup "${WARMUP:-2}")
# blast's own allocator settings (blast_core.agent.perf.keep_freed_memory), for the sheeprl rerun.
keep="glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647"
mkdir -p "$out"
tree=$(mktemp -d)
git -C "$root" worktree add -q --detach "$tree" "$before"
trap 'git -C "$root" worktree remove --force "$tree"' EXIT

sheeprl_cells() {  # family
  [ -n "$sheeprl" ] || return 0
  taskset -c 0 "$sheeprl" "$root/benchmarks/sheeprl_dv2.py" --family "$1" --reps 3 --warmup 2 \
    --threads 1 --clock cpu > "$out/sheeprl_$1.log" 2>&1
  GLIBC_TUNABLES=$keep taskset -c 0 "$sheeprl" "$root/benchmarks/sheeprl_dv2.py" --family "$1" \
    --reps 3 --warmup 2 --threads 1 --clock cpu > "$out/sheeprl_$1_keep.log" 2>&1
}
lane_after() {
  cd "$root"
  taskset -c 0 "$py" -m blast_cli "${bench[@]}" --env-family minigrid --rung dv2 --rung bn \
    --rung ar_prior --json "$out/after_minigrid.json" > "$out/after_minigrid.log" 2>&1
  sheeprl_cells minigrid
  taskset -c 0 "$py" -m blast_cli "${bench[@]}" --env-family dmc --rung dv2 --rung ar_prior \
    --json "$out/after_dmc.json" > "$out/after_dmc.log" 2>&1
  sheeprl_cells dmc
}
lane_before() {
  cd "$tree"  # the earlier commit's code first on the path
  for family in minigrid dmc; do
    rungs=(--rung dv2 --rung ar_prior)
    [ "$family" = minigrid ] && rungs=(--rung dv2 --rung bn --rung ar_prior)
    PYTHONPATH="$tree" taskset -c 1 "$py" -m blast_cli "${bench[@]}" --env-family "$family" \
      "${rungs[@]}" --json "$out/before_$family.json" > "$out/before_$family.log" 2>&1
  done
}
lane_after & lane_before & wait
tail -n +1 "$out"/*.log
