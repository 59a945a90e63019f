#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs TwinLens, its built-in plugins and the test
# tools. Re-running is cheap: pip is skipped while the pyproject files are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${TWINLENS_VENV:-.venv}
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "TwinLens needs Python >= 3.11"'
  "$PYTHON" -m venv "$VENV"
fi

plugins=()
for dir in plugins/*/; do
  [[ -f "$dir/pyproject.toml" ]] && plugins+=(-e "$dir")
done
stamp="$VENV/.twinlens-installed"
want=$(cat pyproject.toml plugins/*/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".[test]" "${plugins[@]}"
  echo "$want" > "$stamp"
fi
