# Sourced by sbatch/run.sh and tests/run.sh: create .venv and install the project into it, once, saying what
# it does. torch comes first and on its own: with no torch present, transformers would pull a multi-GB CUDA
# build (on a GPU cluster, the same line installs the CUDA build that matches the pin).
MOLGEN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOLGEN_VENV="${MOLGEN_VENV:-$MOLGEN_ROOT/.venv}"
MOLGEN_TORCH="${MOLGEN_TORCH:-torch==2.13.0}"
# MOLGEN_PYTHON: a Python that already has the project's dependencies (a GPU node without internet, set up from a
# wheelhouse: README). Set, nothing is installed and the project runs from this checkout (PYTHONPATH, which Slurm
# jobs inherit). MOLGEN_PY is the Python that runs the tool either way.
MOLGEN_PY="${MOLGEN_PYTHON:-$MOLGEN_VENV/bin/python}"

# install_step NAME COMMAND...: run one step into the log, saying its name and how long it took.
install_step() {
  local name="$1" started=$SECONDS; shift
  printf 'molgen-grid:   %s ... ' "$name" >&2
  if "$@" >>"$MOLGEN_INSTALL_LOG" 2>&1; then
    echo "done in $((SECONDS - started))s" >&2
    return 0
  fi
  echo "failed after $((SECONDS - started))s" >&2
  echo "molgen-grid: installing into $MOLGEN_VENV failed at: $name. The end of $MOLGEN_INSTALL_LOG:" >&2
  tail -n 20 "$MOLGEN_INSTALL_LOG" >&2
  echo "molgen-grid: fix the cause above, then retry with: bash sbatch/run.sh (from $MOLGEN_ROOT)" >&2
  return 1
}

ensure_venv() {
  local stamp="$MOLGEN_VENV/.installed" want started=$SECONDS
  if [ -n "${MOLGEN_PYTHON:-}" ]; then
    export PYTHONPATH="$MOLGEN_ROOT${PYTHONPATH:+:$PYTHONPATH}"
    return 0
  fi
  want="$(sha256sum <"$MOLGEN_ROOT/pyproject.toml" | cut -c1-16) $MOLGEN_TORCH"
  if [ -x "$MOLGEN_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  MOLGEN_INSTALL_LOG="$MOLGEN_VENV.install.log"
  : >"$MOLGEN_INSTALL_LOG"
  echo "molgen-grid: setting up $MOLGEN_VENV (first use, or pyproject.toml changed; log: $MOLGEN_INSTALL_LOG)" >&2
  install_step "creating the virtual environment" python3 -m venv "$MOLGEN_VENV" &&
  install_step "upgrading pip" "$MOLGEN_VENV/bin/python" -m pip install --upgrade pip &&
  install_step "installing $MOLGEN_TORCH (alone first: it decides CPU or CUDA)" \
    "$MOLGEN_VENV/bin/python" -m pip install "$MOLGEN_TORCH" &&
  install_step "installing molgen_grid and its dependencies (transformers, hydra, submitit, rdkit, ...)" \
    "$MOLGEN_VENV/bin/python" -m pip install -e "$MOLGEN_ROOT[test]" || return 1
  echo "$want" >"$stamp"
  echo "molgen-grid: $MOLGEN_VENV is ready ($((SECONDS - started))s)" >&2
}
