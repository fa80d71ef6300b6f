#!/usr/bin/env bash
# Set up mlp-sweeps on a new machine: the Python package with its test extras and, from
# Debian's packages when apt is usable, the Fashion-MNIST files (dataset-fashion-mnist,
# installed under /usr/share/datasets/fashion-mnist; MNIST itself ships in data/mnist), and
# PostgreSQL (Debian's postgresql: the tests start a server of their own on 127.0.0.1 as the
# tracking server's production backend; they never use the system's own cluster).
#
# Which Python: the active virtual or conda environment's (it installs there); else the
# first of python3, python on the PATH, unless its installation is managed by the system
# (PEP 668: Debian 12, Ubuntu 23.04+), in which case the project's own .venv is created with
# it (installing Debian's python3-venv if needed) and used. The choice is written to
# .python-path, which scripts/test.sh (the README's test command) reads.
set -euo pipefail
cd "$(dirname "$0")/.."

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

if [[ -n ${VIRTUAL_ENV:-} || -n ${CONDA_PREFIX:-} ]]; then
  py=$(command -v python || command -v python3)
else
  py=$(command -v python3 || command -v python || true)
  [[ -n $py ]] || { echo "error: no python3 on the PATH; install Python 3.10-3.13" >&2; exit 1; }
  managed=$("$py" -c 'import os, sysconfig
print(int(os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))))')
  if [[ $managed == 1 || -x .venv/bin/python ]]; then
    if [[ ! -x .venv/bin/python ]]; then
      echo "setup: $py is managed by the system (PEP 668): creating the project's .venv" >&2
      if ! "$py" -m venv .venv; then
        rm -rf .venv
        ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install "python$ver-venv" "install python3-venv to create .venv"
        "$py" -m venv .venv
      fi
    fi
    py=$PWD/.venv/bin/python
  fi
fi
"$py" -c 'import sys
if not (3, 10) <= sys.version_info[:2] <= (3, 13):
    sys.exit(f"error: Python {sys.version.split()[0]} ({sys.executable}); mlp-sweeps needs 3.10-3.13")'
echo "$py" > .python-path
echo "setup: installing into $("$py" -c 'import sys; print(sys.prefix)') ($("$py" --version))" >&2
"$py" -m pip install -e ".[dev]"

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

if [[ $py == "$PWD/.venv/bin/python" ]]; then
  echo "setup: done. Tests: bash scripts/test.sh; to run train.py: . .venv/bin/activate" >&2
fi
