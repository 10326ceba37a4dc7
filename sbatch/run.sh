#!/usr/bin/env bash
# The front door: run, resume and inspect a grid of conformer-generation benchmarks.
# First use creates .venv and installs the project; every argument goes to `molgen-grid` (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
ensure_venv
cd "$MOLGEN_ROOT"
exec "$MOLGEN_PY" -m molgen_grid.cli "$@"
