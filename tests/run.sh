#!/usr/bin/env bash
# Installs what the tests need (the venv, the local Slurm test cluster), then runs the whole suite, slow
# cases included, on three pytest-xdist workers (MOLGEN_TEST_WORKERS; the Slurm cluster's tests stay on one of
# them, see tests/conftest.py), and prints the 15 slowest tests at the end. Arguments go to pytest (e.g.
# `bash tests/run.sh -m "not slow"` for the quick half, `-n 0` for one process).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../sbatch/venv.sh"
ensure_venv
cd "$MOLGEN_ROOT"
bash sbatch/test-cluster.sh start
# Jobs left by an interrupted earlier run would hold the test cluster's fake GPUs.
scancel --user="$(id -un)" 2>/dev/null || true
exec "$MOLGEN_VENV/bin/python" -m pytest -ra --durations=15 -n "${MOLGEN_TEST_WORKERS:-3}" --dist loadgroup "$@"
