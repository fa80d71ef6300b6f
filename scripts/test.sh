#!/usr/bin/env bash
# The test suite (pytest's arguments pass through, e.g. -m "not slow"), on the Python that
# scripts/setup.sh installed into (.python-path), else the active environment's: on every
# core (pytest-xdist, one worker per core; the tests of one Ray or SLURM cluster stay on one
# worker, in turn: --dist loadgroup).
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(cat .python-path 2>/dev/null || command -v python3 || command -v python)
exec "$py" -m pytest -n auto --dist loadgroup "$@"
