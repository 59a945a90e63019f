#!/usr/bin/env bash
# The main job: install, then `twinlens demo` (trains a small model on a generated sample
# set if none is registered, starts the service, sends sample jobs, keeps serving).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1
exec "${TWINLENS_VENV:-.venv}/bin/twinlens" demo "$@"
