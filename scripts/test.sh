#!/usr/bin/env bash
# Install, then run the whole test suite (needs PostgreSQL and Redis on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1
exec "${TWINLENS_VENV:-.venv}/bin/python" -m pytest "$@"
