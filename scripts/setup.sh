#!/usr/bin/env bash
# Set up mlp-sweeps on a new machine: the Python package with its test extras and, from
# Debian's packages when apt is usable, the Fashion-MNIST files (dataset-fashion-mnist,
# installed under /usr/share/datasets/fashion-mnist; MNIST itself ships in data/mnist).
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
