#!/usr/bin/env bash
# Set up mlp-sweeps on a new machine: the Python package with its test extras and, from
# Debian's packages when apt is usable, the Fashion-MNIST files (dataset-fashion-mnist,
# installed under /usr/share/datasets/fashion-mnist; MNIST itself ships in data/mnist), and
# PostgreSQL (Debian's postgresql: the tests start a server of their own on 127.0.0.1 as the
# tracking server's production backend; they never use the system's own cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install -e ".[dev]"

# apt_install PACKAGE WHY: Debian's package (refreshing the index only if needed), or a
# note saying what is missing when apt is not available
apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get install -y --no-install-recommends "$1" \
      || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "$1"; }
  else
    echo "note: no apt-get; $2" >&2
  fi
}

fashion=/usr/share/datasets/fashion-mnist
if [[ ! -d $fashion ]]; then
  apt_install dataset-fashion-mnist \
    "for Fashion-MNIST put its four IDX files in $fashion or pass data.root"
fi

# PostgreSQL's server binaries (initdb, pg_ctl), for tests/test_distributed.py
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_install postgresql "install PostgreSQL's server for the PostgreSQL tracking test"
fi

# SLURM and munge (Debian's slurm-wlm, which depends on munge), for tests/test_slurm.py: the
# tests start a one-node cluster of their own on 127.0.0.1 (own munge key and socket, own
# slurm.conf in a temporary folder); the system's /etc/munge and /etc/slurm are not used
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  apt_install slurm-wlm "install SLURM (slurm-wlm, munge) for the SLURM launcher's tests"
fi

# Debian's chromium (headless), for tests/test_ui.py: it renders the MLflow UI's runs page
# over a store made by a real sweep
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium "install Chromium for the MLflow UI browser test"
fi
