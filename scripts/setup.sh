#!/usr/bin/env bash
# Set up a fresh machine for blast: Debian packages for headless MuJoCo rendering (EGL and OSMesa),
# PostgreSQL (the team database, used by the tests) and a one-node SLURM (scripts/slurm-local.sh
# starts it; the tests submit to it), then a virtual environment in .venv with
# the CPU build of torch first so pip never pulls a multi-GB CUDA build.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# munge ... slurm-client: the one-node SLURM of scripts/slurm-local.sh (tests/test_slurm.py).
for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libosmesa6 postgresql \
           munge mariadb-server slurmctld slurmd slurmdbd slurm-client; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# CPU machines: the CPU build of torch, from the local wheel where there is one.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if [ -z "${BLAST_TORCH:-}" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/pip install -q "torch==2.13.0"
  else
    .venv/bin/pip install -q "${BLAST_TORCH:-torch==2.13.0}"
  fi
fi
.venv/bin/pip install -q -e '.[test]'
echo "blast is set up: activate with 'source .venv/bin/activate'"
