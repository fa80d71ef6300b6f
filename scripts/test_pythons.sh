#!/usr/bin/env bash
# The suite's fast part (-m "not slow") on every other Python the project declares
# (requires-python: 3.10 to 3.13), each in a virtual environment of its own made here (under
# a temporary folder), with the project and its test extras installed from this checkout.
# An interpreter is found as python3.X on the PATH, else pyenv's newest 3.X. CI runs this
# after the whole suite on the set-up's Python; a version with no interpreter fails it.
set -euo pipefail
cd "$(dirname "$0")/.."
main=$("$(cat .python-path 2>/dev/null || command -v python3)" -c \
  'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for v in 3.10 3.11 3.12 3.13; do
  [[ $v == "$main" ]] && continue
  py=$(command -v "python$v" || true)
  # (a pyenv shim of a version not selected is on the PATH but refuses to run)
  [[ -n $py ]] && ! "$py" -c 'import sys' >/dev/null 2>&1 && py=""
  if [[ -z $py ]] && command -v pyenv >/dev/null 2>&1; then
    pyv=$(pyenv versions --bare 2>/dev/null | grep -E "^$v\.[0-9]+$" | sort -V | tail -1 || true)
    [[ -n $pyv ]] && py=$(pyenv root)/versions/$pyv/bin/python
  fi
  if [[ -z $py ]]; then
    echo "test_pythons: no Python $v found (python$v or pyenv)" >&2; status=1; continue
  fi
  echo "test_pythons: Python $v ($py)" >&2
  "$py" -m venv "$work/$v"
  "$work/$v/bin/python" -m pip install -q -e ".[dev]"
  "$work/$v/bin/python" -m pytest -n auto --dist loadgroup -m "not slow" -q -p no:cacheprovider || status=1
done
exit $status
