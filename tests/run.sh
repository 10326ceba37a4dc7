#!/usr/bin/env bash
# Installs what the tests need (the venv), then runs the whole suite, slow cases included.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../sbatch/venv.sh"
ensure_venv
cd "$MOLGEN_ROOT"
exec "$MOLGEN_VENV/bin/python" -m pytest -ra "$@"
