#!/usr/bin/env bash
# Wheels that a lent GPU machine lacks (it has torch, numpy and pip, and no network), into .whl/
# (git-ignored; carry it to the machine: run(..., carry=[".whl"])), for the machine's CPython
# (3.12 on the lent machines so far; one version only: pip refuses two versions of a package).
# gpu_session.sh installs them. Usage: bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES="minigrid gymnasium pygame-ce sqlalchemy alembic mako farama-notifications"
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --dest .whl \
  --python-version "${1:-3.12}" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 $PACKAGES 2>&1 \
  | grep -v "is ignored: it is neither" || true
du -sh .whl && ls .whl
