#!/usr/bin/env bash
# Set up mlp-sweeps on a new machine: the Python package with its test extras and, from
# Debian's packages when apt is usable, the Fashion-MNIST files (dataset-fashion-mnist,
# installed under /usr/share/datasets/fashion-mnist; MNIST itself ships in data/mnist), and
# PostgreSQL (Debian's postgresql: the tests start a server of their own on 127.0.0.1 as the
# tracking server's production backend; they never use the system's own cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install -e ".[dev]"

fashion=/usr/share/datasets/fashion-mnist
if [[ ! -d $fashion ]]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get install -y --no-install-recommends dataset-fashion-mnist \
      || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends dataset-fashion-mnist; }
  else
    echo "note: no apt-get; for Fashion-MNIST put its four IDX files in $fashion or pass data.root" >&2
  fi
fi

# PostgreSQL's server binaries (initdb, pg_ctl), for tests/test_distributed.py
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get install -y --no-install-recommends postgresql \
      || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends postgresql; }
  else
    echo "note: no apt-get; install PostgreSQL's server for the PostgreSQL tracking test" >&2
  fi
fi
