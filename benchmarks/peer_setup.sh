#!/usr/bin/env bash
# A virtualenv with blast and sheeprl side by side (the `peer` extra), for benchmarks/peer_dv2.py
# and benchmarks/sheeprl_dv2.py: `.venv-peer` beside blast's own `.venv`, which never has sheeprl.
# Idempotent. Usage: benchmarks/peer_setup.sh && .venv-peer/bin/python benchmarks/peer_dv2.py -h
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-peer/bin/python ] || "$PY" -m venv .venv-peer
if ! .venv-peer/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv-peer/bin/pip install -q "${BLAST_TORCH:-torch==2.13.0}"  # the CPU build first, as setup.sh
fi
.venv-peer/bin/pip install -q -e '.[peer]'
echo "peer venv ready: .venv-peer/bin/python benchmarks/peer_dv2.py -h"
